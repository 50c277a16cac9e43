//! The adversarial request table: reviews shaped to hurt (huge, deep, odd characters, wrong
//! types, inconsistent envelopes) posted over real TLS to the spawned `serve` binary, on HTTP/1.1
//! and HTTP/2. Each row has its expected answer: a correct decision whose patch applies (and
//! escapes `~` and `/`), or a clear 4xx with a JSON error. The process must not panic, and its
//! memory must stay bounded: its RSS after the table has run five times is compared with its peak
//! over the first two runs. The plain bad-input rows (not JSON, wrong apiVersion, 10 MiB, ...) live
//! in `server_bad_input.rs`; none is repeated here.

mod server_support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_support::*;

/// What a row must get back.
#[derive(Debug, Clone)]
enum Expect {
    /// HTTP 200, `allowed` as given; the patch (if any) applies; `check` looks at the patched object.
    Decided {
        allowed: bool,
        check: fn(&Value, &Value) -> Result<(), String>,
    },
    /// This HTTP status with a JSON error that contains the text.
    Refused { status: u16, says: &'static str },
}

struct Row {
    /// The rule the row proves.
    rule: &'static str,
    body: Vec<u8>,
    expect: Expect,
}

fn review(kind: (&str, &str), operation: &str, object: Value, old: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "a0000000-0000-4000-8000-00000000000a",
            "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
            "resource": {"group": kind.0, "version": "v1", "resource": format!("{}s", kind.1.to_lowercase())},
            "name": object["metadata"]["name"].as_str().or(old["metadata"]["name"].as_str()).unwrap_or("x"),
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

fn wasm_pod(containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big", "namespace": "shop",
            "annotations": {"wasm-admission.io/wasm": "true"}},
        "spec": {"containers": containers}
    })
}

fn container(name: &str) -> Value {
    json!({"name": name, "image": "ghcr.io/example/app:1"})
}

fn pod_review(pod: Value) -> Vec<u8> {
    bytes(&review(("", "Pod"), "CREATE", pod, Value::Null))
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON")
}

fn deployment() -> Value {
    object_of(DEPLOYMENT_CREATE)
}

fn ok(_: &Value, _: &Value) -> Result<(), String> {
    Ok(())
}

fn unchanged(before: &Value, after: &Value) -> Result<(), String> {
    (before == after)
        .then_some(())
        .ok_or_else(|| "the object was changed".into())
}

fn every_container_mutated(_: &Value, after: &Value) -> Result<(), String> {
    let containers = after["spec"]["containers"]
        .as_array()
        .ok_or("no containers")?;
    for (i, c) in containers.iter().enumerate() {
        let env = c["env"]
            .as_array()
            .ok_or(format!("container {i}: no env"))?;
        if !env.iter().any(|e| e["name"] == "OTEL_RESOURCE_ATTRIBUTES") {
            return Err(format!("container {i}: no OTEL_RESOURCE_ATTRIBUTES"));
        }
        if c["resources"]["limits"]["memory"] != "128Mi" {
            return Err(format!("container {i}: no memory limit"));
        }
    }
    (after["spec"]["runtimeClassName"] == "wasm")
        .then_some(())
        .ok_or_else(|| "no runtimeClassName".into())
}

fn env_appended_after_10000(before: &Value, after: &Value) -> Result<(), String> {
    let old = before["spec"]["containers"][0]["env"]
        .as_array()
        .ok_or("env")?;
    let new = after["spec"]["containers"][0]["env"]
        .as_array()
        .ok_or("env")?;
    if new.len() != old.len() + 5 || new[..old.len()] != old[..] {
        return Err(format!(
            "expected the 10,000 entries kept in order and 5 appended, got {}",
            new.len()
        ));
    }
    (new[old.len()]["name"] == "OTEL_SERVICE_NAME")
        .then_some(())
        .ok_or_else(|| "OTEL_SERVICE_NAME is not first of the appended".into())
}

fn big_annotation_kept(before: &Value, after: &Value) -> Result<(), String> {
    (before["metadata"]["annotations"]["example.com/blob"]
        == after["metadata"]["annotations"]["example.com/blob"]
        && after["spec"]["runtimeClassName"] == "wasm")
        .then_some(())
        .ok_or_else(|| "the 256 KiB annotation changed, or no mutation".into())
}

/// The configured pod annotations (keys with `~`, `/` and Unicode) land under exactly their keys,
/// the existing odd keys are kept, and the injected list is written.
fn odd_keys_escaped(before: &Value, after: &Value) -> Result<(), String> {
    let a = &after["metadata"]["annotations"];
    for (key, value) in [
        ("example.com/a~b", "tilde"),
        ("ünï.example/ключ", "unicode"),
        ("x~1y/~0", "escapes"),
    ] {
        if a[key] != value {
            return Err(format!("annotation {key:?} is {}", a[key]));
        }
    }
    for (key, value) in before["metadata"]["annotations"]
        .as_object()
        .ok_or("annotations")?
    {
        if &a[key] != value {
            return Err(format!("existing annotation {key:?} changed"));
        }
    }
    if a["wasm-admission.io/injected"] != "runtime-class,resources,otel,annotations" {
        return Err(format!("injected is {}", a["wasm-admission.io/injected"]));
    }
    let env = after["spec"]["containers"][0]["env"]
        .as_array()
        .ok_or("env")?;
    (env[0]["name"] == "A~/B" && env[1]["name"] == "ЖУК" && env.len() == 7)
        .then_some(())
        .ok_or_else(|| format!("env: {env:?}"))
}

fn table() -> Vec<Row> {
    let decided = |allowed, check| Expect::Decided { allowed, check };
    let refused = |status, says| Expect::Refused { status, says };
    let mut rows = Vec::new();

    // Size.
    let thousand: Vec<Value> = (0..1000).map(|i| container(&format!("c{i}"))).collect();
    rows.push(Row {
        rule: "a pod with 1,000 containers is mutated in every container",
        body: pod_review(wasm_pod(thousand)),
        expect: decided(true, every_container_mutated),
    });
    let mut many_env = container("app");
    many_env["env"] = Value::Array(
        (0..10_000)
            .map(|i| json!({"name": format!("VAR_{i}"), "value": "v"}))
            .collect(),
    );
    rows.push(Row {
        rule: "an env list of 10,000 entries is kept and appended to",
        body: pod_review(wasm_pod(vec![many_env])),
        expect: decided(true, env_appended_after_10000),
    });
    let mut blob = wasm_pod(vec![container("app")]);
    blob["metadata"]["annotations"]["example.com/blob"] = json!("é".repeat(128 * 1024));
    rows.push(Row {
        rule: "an annotation value of 256 KiB is kept",
        body: pod_review(blob),
        expect: decided(true, big_annotation_kept),
    });

    // Characters that JSON Pointer must escape (`~` → `~0`, `/` → `~1`), and Unicode.
    let mut odd = wasm_pod(vec![container("app")]);
    odd["metadata"]["annotations"]["a~b/c"] = json!("kept");
    odd["metadata"]["annotations"]["日本/語~"] = json!("保持");
    odd["spec"]["containers"][0]["env"] =
        json!([{"name": "A~/B", "value": "1"}, {"name": "ЖУК", "value": "2"}]);
    rows.push(Row {
        rule: "keys with ~, / and Unicode are escaped in the patch and land under their exact keys",
        body: pod_review(odd),
        expect: decided(true, odd_keys_escaped),
    });

    // Numbers where strings belong: a clear 400 naming the field (the apiserver would never
    // send these; `check` reports the same).
    let mut number_annotation = wasm_pod(vec![container("app")]);
    number_annotation["metadata"]["annotations"]["wasm-admission.io/wasm"] = json!(1);
    rows.push(Row {
        rule: "an annotation value that is a number is a 400 naming the field",
        body: pod_review(number_annotation),
        expect: refused(400, "metadata.annotations"),
    });
    let mut number_image = wasm_pod(vec![container("app")]);
    number_image["spec"]["containers"][0]["image"] = json!(42);
    rows.push(Row {
        rule: "a container image that is a number is a 400 naming the field",
        body: pod_review(number_image),
        expect: refused(400, "spec.containers[0].image"),
    });
    let mut number_name = wasm_pod(vec![container("app")]);
    number_name["spec"]["containers"][0]["env"] = json!([{"name": 7, "value": "x"}]);
    rows.push(Row {
        rule: "an env name that is a number is a 400 naming the field",
        body: pod_review(number_name),
        expect: refused(400, "env[0].name"),
    });
    let mut number_uid: Value =
        serde_json::from_slice(&pod_review(wasm_pod(vec![]))).expect("review");
    number_uid["request"]["uid"] = json!(12345);
    rows.push(Row {
        rule: "a uid that is a number is a 400",
        body: bytes(&number_uid),
        expect: refused(400, "request.uid: invalid type"),
    });
    let mut number_quantity = wasm_pod(vec![container("app")]);
    number_quantity["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": 1, "memory": "64Mi"}});
    rows.push(Row {
        rule: "a quantity written as a bare number is read as one",
        body: pod_review(number_quantity),
        expect: decided(true, |_, after| {
            let r = &after["spec"]["containers"][0]["resources"];
            // requests: 250m is below the limit of 1 CPU; memory: 64Mi is the limit, so the
            // request takes the limit's value instead of the default.
            (r["limits"]["cpu"] == 1
                && r["requests"]["cpu"] == "250m"
                && r["requests"]["memory"] == "64Mi")
                .then_some(())
                .ok_or_else(|| format!("resources: {r}"))
        }),
    });

    // Duplicate JSON keys (the apiserver re-encodes what it decoded, so it never sends any): a
    // duplicated field is a 400 naming it; in a map (annotations) the last key wins, as in Go's
    // decoder.
    let privileged_pod = {
        let mut pod = wasm_pod(vec![container("app")]);
        pod["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
        serde_json::to_string(&pod).expect("JSON")
    };
    let pod = serde_json::to_string(&wasm_pod(vec![container("app")])).expect("JSON");
    let dup_field = pod.replacen(
        r#""spec":{"#,
        r#""spec":{"hostNetwork":false,"hostNetwork":true,"#,
        1,
    );
    rows.push(Row {
        rule: "a duplicated field in the object is a 400 naming it",
        body: raw_review("Pod", "", &dup_field),
        expect: refused(400, "duplicate field `hostNetwork`"),
    });
    let wasm_last = privileged_pod.replacen(
        r#""wasm-admission.io/wasm":"true""#,
        r#""wasm-admission.io/wasm":"false","wasm-admission.io/wasm":"true""#,
        1,
    );
    rows.push(Row {
        rule: "duplicate annotation keys: the last wins (wasm false then true: a privileged Wasm pod, denied)",
        body: raw_review("Pod", "", &wasm_last),
        expect: decided(false, ok),
    });
    let wasm_first = privileged_pod.replacen(
        r#""wasm-admission.io/wasm":"true""#,
        r#""wasm-admission.io/wasm":"true","wasm-admission.io/wasm":"false""#,
        1,
    );
    rows.push(Row {
        rule: "duplicate annotation keys: the last wins (wasm true then false: not Wasm, allowed unchanged)",
        body: raw_review("Pod", "", &wasm_first),
        expect: decided(true, unchanged),
    });
    let dup_envelope = String::from_utf8(pod_review(wasm_pod(vec![])))
        .expect("utf8")
        .replacen(
            r#""operation":"CREATE""#,
            r#""operation":"CREATE","operation":"DELETE""#,
            1,
        );
    rows.push(Row {
        rule: "a duplicated envelope field is a 400",
        body: dup_envelope.into_bytes(),
        expect: refused(400, "duplicate field"),
    });

    // An object of one kind under a request of another.
    rows.push(Row {
        rule: "a Deployment object under a Pod request is a 400",
        body: bytes(&review(("", "Pod"), "CREATE", deployment(), Value::Null)),
        expect: refused(
            400,
            "object is a apps/v1/Deployment, but the request is for a Pod",
        ),
    });
    let mut core_pod = wasm_pod(vec![container("app")]);
    core_pod["apiVersion"] = json!("apps/v1");
    rows.push(Row {
        rule: "a Pod object with the apiVersion of another group is a 400",
        body: pod_review(core_pod),
        expect: refused(400, "but the request is for a Pod"),
    });

    // UPDATE with an oldObject that does not match: the decision is on `object` alone.
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}});
    rows.push(Row {
        rule: "UPDATE of a Deployment with an oldObject of another kind decides on the object",
        body: bytes(&review(
            ("apps", "Deployment"),
            "UPDATE",
            deployment(),
            configmap,
        )),
        expect: decided(true, |_, after| {
            (after["spec"]["template"]["spec"]["runtimeClassName"] == "wasm")
                .then_some(())
                .ok_or_else(|| "not mutated".into())
        }),
    });
    let mut renamed = deployment();
    renamed["metadata"]["name"] = json!("someone-else");
    rows.push(Row {
        rule: "UPDATE of a Deployment with an oldObject of another name decides on the object",
        body: bytes(&review(
            ("apps", "Deployment"),
            "UPDATE",
            deployment(),
            renamed,
        )),
        expect: decided(true, |_, after| {
            (after["spec"]["template"]["spec"]["runtimeClassName"] == "wasm")
                .then_some(())
                .ok_or_else(|| "not mutated".into())
        }),
    });
    let mut debugged = wasm_pod(vec![container("app")]);
    debugged["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox",
        "securityContext": {"privileged": true}}]);
    let mut stranger = debugged.clone();
    stranger["metadata"]["name"] = json!("another-pod");
    let mut ephemeral = review(("", "Pod"), "UPDATE", debugged.clone(), stranger);
    ephemeral["request"]["subResource"] = json!("ephemeralcontainers");
    rows.push(Row {
        rule: "kubectl debug with an oldObject of another pod checks every ephemeral container",
        body: bytes(&ephemeral),
        expect: decided(true, unchanged),
    });
    let mut ephemeral_other_kind = review(("", "Pod"), "UPDATE", debugged, deployment());
    ephemeral_other_kind["request"]["subResource"] = json!("ephemeralcontainers");
    rows.push(Row {
        rule: "kubectl debug with an oldObject of another kind treats every ephemeral container as new",
        body: bytes(&ephemeral_other_kind),
        expect: decided(false, ok),
    });

    // DELETE (and CONNECT) carry no object: allowed, unchanged.
    rows.push(Row {
        rule: "DELETE with object null is allowed without a patch",
        body: bytes(&review(
            ("apps", "Deployment"),
            "DELETE",
            Value::Null,
            deployment(),
        )),
        expect: decided(true, ok),
    });
    rows.push(Row {
        rule: "DELETE with object and oldObject null is allowed without a patch",
        body: bytes(&review(("", "Pod"), "DELETE", Value::Null, Value::Null)),
        expect: decided(true, ok),
    });
    rows.push(Row {
        rule: "CONNECT with object null is allowed without a patch",
        body: bytes(&review(("", "Pod"), "CONNECT", Value::Null, Value::Null)),
        expect: decided(true, ok),
    });
    rows
}

/// A Pod CREATE review whose object is the given JSON text (to keep duplicate keys as written).
fn raw_review(kind: &str, group: &str, object: &str) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"b0000000-0000-4000-8000-00000000000b","kind":{{"group":"{group}","version":"v1","kind":"{kind}"}},"namespace":"shop","operation":"CREATE","object":{object}}}}}"#
    )
    .into_bytes()
}

/// Runs every row once on `client`; returns what went wrong, and the slowest answer.
async fn run_table(client: &reqwest::Client, url: &str, http: Http) -> (Vec<String>, Duration) {
    let mut wrong = Vec::new();
    let mut slowest = Duration::ZERO;
    for row in table() {
        let request: Value = serde_json::from_slice(&row.body).unwrap_or(Value::Null);
        let object = request["request"]["object"].clone();
        let started = Instant::now();
        let answer = match post_review(client, url, row.body).await {
            Ok(answer) => answer,
            Err(e) => {
                wrong.push(format!("{http:?} {}: request failed: {e:?}", row.rule));
                continue;
            }
        };
        slowest = slowest.max(started.elapsed());
        match &row.expect {
            Expect::Refused { status, says } => {
                let error = answer.body["error"].as_str().unwrap_or_default();
                if answer.status != *status || !error.contains(says) {
                    wrong.push(format!(
                        "{http:?} {}: want {status} saying {says:?}, got {} {}",
                        row.rule, answer.status, answer.body
                    ));
                }
            }
            Expect::Decided { allowed, check } => {
                if answer.status != 200 {
                    wrong.push(format!(
                        "{http:?} {}: status {}: {}",
                        row.rule, answer.status, answer.body
                    ));
                    continue;
                }
                let response = &answer.body["response"];
                if response["allowed"] != *allowed {
                    wrong.push(format!("{http:?} {}: {response}", row.rule));
                    continue;
                }
                let patched = apply_patch(&object, response);
                if let Err(e) = check(&object, &patched) {
                    wrong.push(format!("{http:?} {}: {e}", row.rule));
                }
            }
        }
    }
    (wrong, slowest)
}

const CONFIG: &str = "podAnnotations:\n  example.com/a~b: tilde\n  \"ünï.example/ключ\": unicode\n  \"x~1y/~0\": escapes\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_reviews_get_a_correct_decision_or_a_clear_4xx_in_bounded_memory() {
    let pki = Pki::new("test CA");
    let (dir, cert, key) = pair_files(&pki.serving());
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let spawned = spawn_serve(&tls_flags(
        &cert,
        &key,
        &["--config", config.to_str().expect("path")],
    ));
    let url = format!("https://{SERVICE_HOST}:{}/mutate", spawned.addr.port());
    let rss_at_start = spawned.status_kib("VmRSS");

    let mut after_first = 0;
    let mut peak_after_first = 0;
    let mut slowest = Duration::ZERO;
    for pass in 0..5 {
        for http in [Http::One, Http::Two] {
            let client = apiserver_client(&pki.ca_pem, spawned.addr, http);
            let (wrong, slow) = run_table(&client, &url, http).await;
            assert!(wrong.is_empty(), "pass {pass}: {wrong:#?}");
            slowest = slowest.max(slow);
        }
        // Warm after two passes (each allocator arena has seen both protocols' threads).
        if pass == 1 {
            after_first = spawned.status_kib("VmRSS");
            peak_after_first = spawned.status_kib("VmHWM");
        }
    }
    let after_five = spawned.status_kib("VmRSS");
    let peak = spawned.status_kib("VmHWM");
    eprintln!(
        "serve RSS: {rss_at_start} KiB at start, {after_first} KiB after two passes, \
         {after_five} KiB after five, peak {peak} KiB; slowest answer {slowest:?}"
    );
    // Bounded: repeating the table does not grow the process (allocator slack allowed), the
    // peak stays far below a pod's usual limit, and no answer is slow.
    assert!(
        after_five <= peak_after_first + 16 * 1024,
        "RSS grew from a peak of {peak_after_first} KiB over two passes to {after_five} KiB after three more"
    );
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
    assert!(
        slowest < Duration::from_secs(2),
        "slowest answer {slowest:?}"
    );
    let logs = spawned.take_logs();
    assert!(
        !logs.iter().any(|l| l.contains("panicked")),
        "no panic: {logs:#?}"
    );
}

// Issue 23, finding 1: bodies held in memory and reviews in flight have a global bound; past it
// a review gets 429 with Retry-After at once, and well-behaved reviews keep being answered.

/// A review body that sends `sent` bytes of a `declared`-byte body, then waits for `release`.
fn stalled_body(sent: usize, released: tokio::sync::watch::Receiver<bool>) -> reqwest::Body {
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let mut released = released.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(vec![b' '; sent]), 1)),
                1 => {
                    let _ = released.wait_for(|go| *go).await;
                    None
                }
                _ => None,
            }
        }
    });
    reqwest::Body::wrap_stream(stream)
}

async fn post_stalled(
    client: &reqwest::Client,
    url: &str,
    declared: usize,
    sent: usize,
    released: tokio::sync::watch::Receiver<bool>,
) -> Result<(u16, Option<String>), reqwest::Error> {
    let response = client
        .post(format!("{url}?timeout=10s"))
        .header("Content-Type", "application/json")
        .header("Content-Length", declared.to_string())
        .body(stalled_body(sent, released))
        .send()
        .await?;
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((response.status().as_u16(), retry_after))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bytes_past_the_global_budget_get_429_with_retry_after() {
    let tuning = wasm_admission::commands::serve::Tuning {
        max_body_memory: 2 * 1024 * 1024,
        ..fast_tuning()
    };
    let server = TestServer::start_with_tuning(|_| {}, tuning).await;
    let url = server.url("/mutate");
    let (release, released) = tokio::sync::watch::channel(false);
    // Five bodies of 800 KiB each, over HTTP/2 streams, stalled halfway: two fit in 2 MiB.
    let h2 = server.client(Http::Two);
    let mut calls = Vec::new();
    for _ in 0..5 {
        let (client, url, released) = (h2.clone(), url.clone(), released.clone());
        calls.push(tokio::spawn(async move {
            post_stalled(&client, &url, 800 * 1024, 400 * 1024, released).await
        }));
    }
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused < 3 {
        assert!(Instant::now() < deadline, "only {refused} of 5 refused");
        let mut waiting = Vec::new();
        for call in calls {
            if call.is_finished() {
                let (status, retry_after) = call.await.expect("task").expect("answered");
                assert_eq!(status, 429);
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused += 1;
            } else {
                waiting.push(call);
            }
        }
        calls = waiting;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two bodies still hold 1.6 MiB; an ordinary review (a few KiB) is answered meanwhile.
    for http in [Http::One, Http::Two] {
        let answer = post_review(&server.client(http), &url, DEPLOYMENT_CREATE)
            .await
            .expect("answered");
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(calls.len(), 2);
    release.send(true).expect("release");
    for call in calls {
        // The stalled bodies end short of their declared length: not a 429, whatever else.
        if let Ok((status, _)) = call.await.expect("task") {
            assert_ne!(status, 429);
        }
    }
    // The reservations were given back: a large ordinary body fits again.
    let answer = post_review(&server.client(Http::One), &url, DEPLOYMENT_CREATE)
        .await
        .expect("answered");
    assert_eq!(answer.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_past_the_in_flight_cap_get_429_with_retry_after() {
    let tuning = wasm_admission::commands::serve::Tuning {
        max_reviews_in_flight: 2,
        ..fast_tuning()
    };
    let server = TestServer::start_with_tuning(|_| {}, tuning).await;
    let url = server.url("/mutate");
    let (release, released) = tokio::sync::watch::channel(false);
    let h2 = server.client(Http::Two);
    let mut calls = Vec::new();
    for _ in 0..2 {
        let (client, url, released) = (h2.clone(), url.clone(), released.clone());
        calls.push(tokio::spawn(async move {
            post_stalled(&client, &url, 1024, 100, released).await
        }));
    }
    let metrics_url = server.url("/metrics");
    let client = server.client(Http::One);
    eventually(Duration::from_secs(10), "two reviews in flight", || async {
        metric(
            &metrics_text(&client, &metrics_url).await,
            "wasm_admission_reviews_in_flight",
        ) == 2.0
    })
    .await;
    let response = client
        .post(format!("{url}?timeout=10s"))
        .header("Content-Type", "application/json")
        .body(DEPLOYMENT_CREATE)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    release.send(true).expect("release");
    for call in calls {
        let _ = call.await.expect("task");
    }
    let answer = post_review(&client, &url, DEPLOYMENT_CREATE)
        .await
        .expect("answered");
    assert_eq!(answer.status, 200);
    server.stop().await;
}
