//! Issue 28, item 1: no review a real apiserver can send is refused for its size, and a review
//! that is truly too large is denied, never answered with an HTTP error that `failurePolicy:
//! Ignore` would turn into an admission.
//!
//! The apiserver's JSON writes `<`, `>`, `&` as six-byte `\u003c` escapes, so a pod of 1.45 MB
//! (storable: etcd's limit is 1.5 MiB) makes a review of 8.7 MB, past the old 8 MiB limit.

mod server_support;

use serde_json::{Value, json};
use server_support::*;
use wasm_admission::commands::serve::routes::MAX_BODY_BYTES;

/// A review of a privileged, hostPID pod spec on a Wasm class whose args hold `escapes` `\u003c`
/// escapes, as the apiserver writes them; `uid` first in `request`, as the apiserver orders it. A
/// Pod CREATE, or with `old_object` a Deployment UPDATE (object and oldObject, each padded).
fn padded_review(uid: &str, escapes: usize, old_object: bool) -> Vec<u8> {
    let spec = json!({
        "runtimeClassName": "wasmtime",
        "hostPID": true,
        "containers": [{
            "name": "app",
            "image": "ghcr.io/acme/app:1",
            "args": ["PADDING"],
            "securityContext": {"privileged": true}
        }]
    });
    let (kind, group, resource, object) = if old_object {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "padded", "namespace": "demo"},
            "spec": {
                "selector": {"matchLabels": {"app": "padded"}},
                "template": {"metadata": {"labels": {"app": "padded"}}, "spec": spec}
            }
        });
        ("Deployment", "apps", "deployments", object)
    } else {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "padded", "namespace": "demo"},
            "spec": spec
        });
        ("Pod", "", "pods", object)
    };
    let pod = object
        .to_string()
        .replace("PADDING", &"\\u003c".repeat(escapes));
    let version = "v1";
    let operation = if old_object { "UPDATE" } else { "CREATE" };
    let old = if old_object {
        format!(",\"oldObject\":{pod}")
    } else {
        String::new()
    };
    format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"{uid}","kind":{{"group":"{group}","version":"{version}","kind":"{kind}"}},"resource":{{"group":"{group}","version":"{version}","resource":"{resource}"}},"name":"padded","namespace":"demo","operation":"{operation}","userInfo":{{"username":"tenant"}},"object":{pod}{old},"dryRun":false}}}}"#
    )
    .into_bytes()
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item1_a_padded_privileged_pod_past_the_old_8_mib_limit_is_decided_and_denied() {
    let t = TestServer::start().await;
    // A Pod CREATE: 1.45 million escapes, 8.7 MB; a Deployment UPDATE with object and oldObject of
    // 1.5 million each, 18 MB: the largest review of an object etcd can store.
    let rows = [
        ("create", padded_review("create-8mib", 1_450_000, false)),
        ("update", padded_review("update-18mb", 1_500_000, true)),
    ];
    for (name, body) in rows {
        assert!(
            body.len() > 8 * 1024 * 1024 && body.len() <= MAX_BODY_BYTES,
            "{name}"
        );
        for http in [Http::One, Http::Two] {
            for path in ["/mutate", "/validate"] {
                let client = t.client(http);
                let answer = post_review(&client, &t.url(path), body.clone())
                    .await
                    .expect("answered");
                assert_eq!(
                    answer.status, 200,
                    "{name} {http:?} {path}: {}",
                    answer.body
                );
                let response = &answer.body["response"];
                assert_eq!(response["allowed"], false, "{name} {path}: {response}");
                assert!(
                    message(response).contains("privileged=true")
                        && message(response).contains("hostPID=true"),
                    "{name} {path}: decided on what the pod asks: {response}"
                );
            }
        }
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item1_a_review_past_the_limit_is_denied_with_the_limit_named_never_413() {
    let t = TestServer::start().await;
    // 30 MiB: no object etcd can store makes a review this large.
    let body = padded_review("too-large", 5_300_000, false);
    assert!(body.len() > MAX_BODY_BYTES);
    for http in [Http::One, Http::Two] {
        for streamed in [false, true] {
            let client = t.client(http);
            let request_body = if streamed {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    body.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
                reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
            } else {
                reqwest::Body::from(body.clone())
            };
            let answer = post_review(&client, &t.url("/validate"), request_body)
                .await
                .expect("answered");
            assert_eq!(
                answer.status, 200,
                "{http:?} streamed={streamed}: {}",
                answer.body
            );
            let response = check_envelope(&answer, "too-large");
            assert_eq!(response["allowed"], false, "{response}");
            let text = message(response);
            assert!(
                text.contains(&MAX_BODY_BYTES.to_string()) && text.contains("larger than"),
                "{text}"
            );
        }
    }
    // Not a review an apiserver sends (no uid up front): still refused with 413.
    let mut no_uid = b"{\"padding\":\"".to_vec();
    no_uid.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES + 1024));
    no_uid.extend_from_slice(b"\"}");
    let answer = post_review(&t.client(Http::Two), &t.url("/validate"), no_uid)
        .await
        .expect("answered");
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(
        answer.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("request.uid"))
    );

    // Counted as a denial under its rule (docs/behaviour.md, "Rule ids"), and the server still
    // answers.
    let client = t.client(Http::One);
    let text = metrics_text(&client, &t.url("/metrics")).await;
    let denied = metric(
        &text,
        "wasm_admission_reviews_total{endpoint=\"validate\",kind=\"\",operation=\"\",outcome=\"denied\",rule=\"review.too-large\"}",
    );
    assert_eq!(denied, 4.0, "{text}");
    let answer = post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
        .await
        .expect("still answering");
    check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    t.stop().await;
}
