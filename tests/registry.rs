//! behaviour.md §3 rule 6 against a real registry (Debian's `docker-registry`, CNCF distribution 2.8):
//! one image per signal pushed with oci-client, each decided end to end through the review door,
//! the `serve` door and `check --registry`; then failures: a stopped registry, one that never
//! answers, credentials, oversized answers; and the cache.

mod common;
mod registry_support;
mod server_support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use wasm_admission::adapters::registry::{Inspector, RegistryFacts};
use wasm_admission::core::config::{Config, RegistryConfig};
use wasm_admission::core::detection::ImageClass;
use wasm_admission::core::engine::{Decision, Endpoint, Engine, Facts};
use wasm_admission::core::review;

use common::{deployment_with_images, review_for};
use registry_support::*;

/// A Deployment whose containers run these images (`app`, `sidecar`, ...).
fn deployment(name: &str, images: &[&str]) -> Value {
    let mut object = deployment_with_images(images);
    object["metadata"]["name"] = json!(name);
    object
}

fn settings(insecure: &[String]) -> RegistryConfig {
    RegistryConfig {
        enabled: true,
        insecure: insecure.to_vec(),
        ..RegistryConfig::default()
    }
}

fn engine_for(registry: RegistryConfig) -> Engine {
    let mut config = Config::default();
    config.detection.registry = registry;
    Engine::new(config).expect("engine")
}

/// What the `serve` door does, without HTTP: decode, look up the engine's images, answer.
async fn decide(
    engine: &Engine,
    inspector: &Inspector,
    object: &Value,
    budget: Duration,
) -> (Decision, RegistryFacts) {
    let body = serde_json::to_vec(&review_for(object, "CREATE", None, None)).expect("json");
    let decoded = review::decode(&body).expect("review");
    let images = engine.registry_images(&decoded.request(), None);
    let facts = inspector
        .inspect(images.iter().map(String::as_str), budget)
        .await;
    let reply = review::answer(
        engine,
        &decoded,
        Endpoint::Mutate,
        &Facts {
            registry: Some(&facts),
            runtime_classes: None,
            nodes: None,
            runtime_classes_pending: false,
        },
    )
    .expect("answered");
    (reply.decision, facts)
}

fn is_wasm_decision(decision: &Decision) -> bool {
    decision.allowed
        && decision
            .audit_annotations
            .get("wasm-detected-by")
            .is_some_and(|r| r == "registry")
        && serde_json::from_str::<serde_json::Value>(decision.patch.as_json())
            .expect("patch")
            .as_array()
            .expect("array")
            .iter()
            .any(|op| {
                op["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/runtimeClassName"))
            })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_decides_end_to_end_through_the_review_door() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let images = push_signal_images(&registry).await;
    let settings = settings(&[registry.host()]);
    let engine = engine_for(settings.clone());
    let inspector = Inspector::new(&settings);
    for (image, wasm) in &images {
        let object = deployment("shop-app", &[image]);
        let (decision, facts) = decide(&engine, &inspector, &object, Duration::from_secs(5)).await;
        let class = facts.classes.get(image.as_str()).cloned();
        if *wasm {
            assert_eq!(class, Some(ImageClass::Wasm), "{image}");
            assert!(is_wasm_decision(&decision), "{image}: {decision:?}");
            assert!(decision.warnings.is_empty(), "{image}: {decision:?}");
        } else {
            assert_eq!(class, Some(ImageClass::NotWasm), "{image}");
            assert!(decision.allowed, "{image}");
            assert!(decision.patch.is_empty(), "{image}: {decision:?}");
            assert!(decision.warnings.is_empty(), "{image}: {decision:?}");
        }
    }
    // An annotation that says Wasm decides before the registry is asked: nothing to look up.
    let mut annotated = deployment("marked", &[&images[0].0]);
    annotated["metadata"]["annotations"] = json!({"wasm-admission.io/wasm": "true"});
    let body = serde_json::to_vec(&review_for(&annotated, "CREATE", None, None)).expect("json");
    let decoded = review::decode(&body).expect("review");
    assert!(engine.registry_images(&decoded.request(), None).is_empty());
    // An opt-out does not spare the lookup: behaviour.md §5's boundary reads the images whatever
    // the pod says.
    annotated["metadata"]["annotations"] = json!({"wasm-admission.io/wasm": "false"});
    let body = serde_json::to_vec(&review_for(&annotated, "CREATE", None, None)).expect("json");
    let decoded = review::decode(&body).expect("review");
    assert_eq!(
        engine.registry_images(&decoded.request(), None),
        [images[0].0.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_pod_from_the_registry_is_left_unchanged_with_a_warning() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let p = registry.pusher();
    p.push_image(
        "wasm/app:v1",
        &[layer("application/wasm", WASM_MODULE)],
        wasm_arch_config(),
        None,
    )
    .await;
    p.push_image(
        "plain/envoy:v1",
        &[tar_layer("envoy")],
        linux_config(),
        None,
    )
    .await;
    let settings = settings(&[registry.host()]);
    let engine = engine_for(settings.clone());
    let inspector = Inspector::new(&settings);
    let object = deployment(
        "mixed",
        &[
            &registry.image("wasm/app:v1"),
            &registry.image("plain/envoy:v1"),
        ],
    );
    let (decision, _) = decide(&engine, &inspector, &object, Duration::from_secs(5)).await;
    assert!(decision.allowed);
    assert!(decision.patch.is_empty(), "{decision:?}");
    assert_eq!(
        decision.warnings,
        [
            "wasm-admission: mixed pod left unchanged: Wasm containers [app], other containers [sidecar]"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_check_registry_give_the_same_answers() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let images = push_signal_images(&registry).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = write(
        dir.path(),
        "config.yaml",
        &registry_config_yaml(&[&registry.host()], ""),
    );

    // serve: each Deployment as kube-apiserver sends it.
    let server =
        server_support::TestServer::start_with(|args| args.config = Some(config.clone())).await;
    let client = server.client(server_support::Http::One);
    let mut served = Vec::new();
    for (i, (image, wasm)) in images.iter().enumerate() {
        let object = deployment(&format!("app-{i}"), &[image]);
        let body = serde_json::to_vec(&review_for(&object, "CREATE", None, None)).expect("json");
        let answer = server_support::post_review(&client, &server.url("/mutate"), body)
            .await
            .expect("answer");
        let response = answer.body["response"].clone();
        assert_eq!(response["allowed"], true, "{image}: {response}");
        assert_eq!(
            response.get("patch").is_some(),
            *wasm,
            "{image}: {response}"
        );
        if *wasm {
            assert_eq!(
                response["auditAnnotations"]["wasm-detected-by"], "registry",
                "{image}"
            );
        }
        assert!(response.get("warnings").is_none(), "{image}: {response}");
        let patch: Value = match response["patch"].as_str() {
            Some(p) => serde_json::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .expect("base64"),
            )
            .expect("patch"),
            None => json!([]),
        };
        served.push((object, patch));
    }
    server.stop().await;

    // check --registry over the same objects, as one List.
    let list = json!({"apiVersion": "v1", "kind": "List",
        "items": served.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>()});
    let manifests = write(dir.path(), "deployments.json", &list.to_string());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .args(["check", "--registry", "-o", "json", "--namespace", "shop"])
        .arg("--config")
        .arg(&config)
        .arg(&manifests)
        .output()
        .await
        .expect("run check");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("json report");
    let report = report.as_array().expect("array");
    assert_eq!(report.len(), served.len());
    for ((object, patch), row) in served.iter().zip(report) {
        assert_eq!(row["name"], object["metadata"]["name"]);
        assert_eq!(&row["patch"], patch, "{}", row["name"]);
    }

    // Without --registry, check stays offline: nothing is Wasm, and it says why.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .args(["check", "-o", "json", "--namespace", "shop"])
        .arg("--config")
        .arg(&config)
        .arg(&manifests)
        .output()
        .await
        .expect("run check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--registry"), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("json report");
    for row in report.as_array().expect("array") {
        assert_eq!(row["patch"], json!([]), "{}", row["name"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_registry_gives_unknown_with_a_warning_but_digest_pins_stay_cached() {
    let Some(mut registry) = LocalRegistry::start().await else {
        return;
    };
    let digest = registry
        .pusher()
        .push_image(
            "wasm/pinned:v1",
            &[layer("application/wasm", WASM_MODULE)],
            wasm_arch_config(),
            None,
        )
        .await;
    let tag = registry.image("wasm/pinned:v1");
    let pinned = format!("{}@{digest}", registry.image("wasm/pinned"));
    let settings = RegistryConfig {
        cache_ttl: Duration::from_millis(800),
        ..settings(&[registry.host()])
    };
    let engine = engine_for(settings.clone());
    let inspector = Inspector::new(&settings);
    let budget = Duration::from_secs(3);
    for image in [&tag, &pinned] {
        let (decision, _) = decide(&engine, &inspector, &deployment("a", &[image]), budget).await;
        assert!(is_wasm_decision(&decision), "{image}");
    }

    registry.stop();
    // Within cacheTTL both still answer from the cache.
    for image in [&tag, &pinned] {
        let (decision, _) = decide(&engine, &inspector, &deployment("a", &[image]), budget).await;
        assert!(is_wasm_decision(&decision), "{image} from the cache");
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Past cacheTTL the tag is looked up again and fails; the digest is cached for good.
    let (decision, _) = decide(&engine, &inspector, &deployment("a", &[&pinned]), budget).await;
    assert!(
        is_wasm_decision(&decision),
        "pinned after the registry is gone"
    );
    let (decision, facts) = decide(&engine, &inspector, &deployment("a", &[&tag]), budget).await;
    assert!(decision.allowed);
    assert!(decision.patch.is_empty(), "{decision:?}");
    assert!(
        matches!(facts.classes.get(tag.as_str()), Some(ImageClass::Unknown { reason }) if reason.contains("cannot connect")),
        "{facts:?}"
    );
    assert_eq!(decision.warnings.len(), 1, "{decision:?}");
    let warning = &decision.warnings[0];
    assert!(
        warning.starts_with(&format!(
            "wasm-admission: image {tag} not inspected (manifest: cannot connect"
        )),
        "{warning}"
    );
    assert!(warning.ends_with("treated as not Wasm"), "{warning}");
    assert!(warning.chars().count() <= 120, "{warning}");

    // A failure is not cached: once the registry is back, the next review gets the answer.
    registry.restart().await;
    let (decision, _) = decide(&engine, &inspector, &deployment("a", &[&tag]), budget).await;
    assert!(is_wasm_decision(&decision), "after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswering_registry_cannot_hold_a_review_past_its_budget() {
    let hole = BlackHole::start().await;
    let host = hole.addr.to_string();
    let image = format!("{host}/wasm/hung:v1");
    let object = deployment("hung", &[&image]);

    // Through the engine door with an explicit budget.
    let settings = RegistryConfig {
        timeout: Duration::from_secs(5),
        ..settings(std::slice::from_ref(&host))
    };
    let engine = engine_for(settings.clone());
    let inspector = Inspector::new(&settings);
    let budget = Duration::from_millis(400);
    let start = Instant::now();
    let (decision, _) = decide(&engine, &inspector, &object, budget).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed < budget + Duration::from_millis(250),
        "took {elapsed:?} with a budget of {budget:?}"
    );
    assert!(decision.allowed && decision.patch.is_empty());
    assert_eq!(
        decision.warnings,
        [format!(
            "wasm-admission: image {image} not inspected (no answer within 400ms); treated as not Wasm"
        )]
    );

    // Through serve: the apiserver's ?timeout=2s leaves 1.5s (a quarter kept as margin),
    // below the configured 5s.
    let dir = tempfile::tempdir().expect("dir");
    let config = write(
        dir.path(),
        "config.yaml",
        &registry_config_yaml(&[&host], "    timeout: 5s\n"),
    );
    let server =
        server_support::TestServer::start_with(|args| args.config = Some(config.clone())).await;
    let client = server.client(server_support::Http::One);
    let body = serde_json::to_vec(&review_for(&object, "CREATE", None, None)).expect("json");
    let start = Instant::now();
    let response = client
        .post(format!("{}?timeout=2s", server.url("/mutate")))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answer");
    let answer: Value = response.json().await.expect("json");
    let elapsed = start.elapsed();
    let expected = Duration::from_millis(1500);
    assert!(
        elapsed < expected + Duration::from_millis(300),
        "answered after {elapsed:?}; the review's lookups had at most {expected:?}"
    );
    let response = &answer["response"];
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    // What the apiserver's budget left when the lookups began (the TLS handshake and body read
    // came first), at most 1500ms.
    let warnings = response["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{response}");
    let warning = warnings[0].as_str().expect("text");
    let waited: u64 = warning
        .strip_prefix(&format!(
            "wasm-admission: image {image} not inspected (no answer within "
        ))
        .and_then(|rest| rest.strip_suffix("ms); treated as not Wasm"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"));
    assert!((1000..=1500).contains(&waited), "{warning}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_image_make_one_request() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    registry
        .pusher()
        .push_image("plain/busy:v1", &[tar_layer("busy")], linux_config(), None)
        .await;
    let image = registry.image("plain/busy:v1");
    let manifests_before = registry.gets("/v2/plain/busy/manifests/");
    let blobs_before = registry.gets("/v2/plain/busy/blobs/");
    let inspector = std::sync::Arc::new(Inspector::new(&settings(&[registry.host()])));
    let lookups = (0..24).map(|_| {
        let inspector = inspector.clone();
        let image = image.clone();
        tokio::spawn(async move {
            inspector
                .inspect([image.as_str()], Duration::from_secs(5))
                .await
                .classes
                .get(&image)
                .cloned()
        })
    });
    for result in futures_util::future::join_all(lookups).await {
        assert_eq!(result.expect("task"), Some(ImageClass::NotWasm));
    }
    // And once more, from the cache.
    let again = inspector
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert_eq!(again.classes.get(&image), Some(&ImageClass::NotWasm));
    tokio::time::sleep(Duration::from_millis(200)).await; // the access log is written after the answer
    assert_eq!(
        registry.gets("/v2/plain/busy/manifests/") - manifests_before,
        1,
        "manifest GETs"
    );
    assert_eq!(
        registry.gets("/v2/plain/busy/blobs/") - blobs_before,
        1,
        "config GETs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_docker_config_open_a_registry_with_basic_authentication() {
    let htpasswd = Htpasswd {
        user: "ci-bot".into(),
        password: "s3cret:with-colon".into(),
    };
    let Some(registry) = LocalRegistry::start_with(Some(&htpasswd)).await else {
        return;
    };
    let basic =
        oci_client::secrets::RegistryAuth::Basic(htpasswd.user.clone(), htpasswd.password.clone());
    Pusher::new(&registry.host(), basic)
        .push_image(
            "wasm/private:v1",
            &[layer("application/wasm", WASM_MODULE)],
            wasm_arch_config(),
            None,
        )
        .await;
    let image = registry.image("wasm/private:v1");
    let dir = tempfile::tempdir().expect("dir");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // Anonymous: refused by the registry, so Unknown with the reason.
    let anonymous = Inspector::new(&settings(&[registry.host()]));
    let facts = anonymous
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert_eq!(
        facts.classes.get(&image),
        Some(&ImageClass::Unknown {
            reason: "anonymous access denied (HTTP 401)".into()
        })
    );

    // The `auth` form, as `kubectl create secret docker-registry` writes it.
    let good = write(
        dir.path(),
        "config.json",
        &json!({"auths": {registry.host(): {"auth": b64(&format!("{}:{}", htpasswd.user, htpasswd.password))}}})
            .to_string(),
    );
    // The username/password form, with a URL as the key.
    let url_form = write(
        dir.path(),
        "url.json",
        &json!({"auths": {format!("http://{}/v2/", registry.host()): {"username": htpasswd.user, "password": htpasswd.password}}})
            .to_string(),
    );
    for file in [&good, &url_form] {
        let inspector = Inspector::new(&RegistryConfig {
            credentials_file: file.display().to_string(),
            ..settings(&[registry.host()])
        });
        let facts = inspector
            .inspect([image.as_str()], Duration::from_secs(5))
            .await;
        assert_eq!(
            facts.classes.get(&image),
            Some(&ImageClass::Wasm),
            "{}",
            file.display()
        );
    }

    let wrong = write(
        dir.path(),
        "wrong.json",
        &json!({"auths": {registry.host(): {"auth": b64("ci-bot:wrong")}}}).to_string(),
    );
    let inspector = Inspector::new(&RegistryConfig {
        credentials_file: wrong.display().to_string(),
        ..settings(&[registry.host()])
    });
    let facts = inspector
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert_eq!(
        facts.classes.get(&image),
        Some(&ImageClass::Unknown {
            reason: "access denied (HTTP 401)".into()
        })
    );

    let missing = Inspector::new(&RegistryConfig {
        credentials_file: dir.path().join("absent.json").display().to_string(),
        ..settings(&[registry.host()])
    });
    let facts = missing
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert!(
        matches!(facts.classes.get(&image), Some(ImageClass::Unknown { reason }) if reason.starts_with("cannot read credentials file")),
        "{facts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_used_unless_the_registry_is_listed_as_insecure() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let image = registry.push_wasm("wasm/tls:v1").await;
    // Not listed: an HTTPS handshake with a plain-HTTP server fails; nothing is sent in clear.
    let inspector = Inspector::new(&settings(&[]));
    let facts = inspector
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert!(
        matches!(facts.classes.get(&image), Some(ImageClass::Unknown { .. })),
        "{facts:?}"
    );
    assert_eq!(registry.gets("/v2/wasm/tls/manifests/"), 0);
}

/// A registry stand-in that answers every manifest with more than the limit.
async fn oversized_registry() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::routing::get;
    let big = || vec![b' '; 5 * 1024 * 1024];
    let app = axum::Router::new()
        .route("/v2/big/manifests/v1", get(move || async move { big() }))
        .route(
            "/v2/chunked/manifests/v1",
            get(|| async {
                let chunks = (0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_refused() {
    let (addr, task) = oversized_registry().await;
    let inspector = Inspector::new(&settings(&[addr.to_string()]));
    for repository in ["big", "chunked"] {
        let image = format!("{addr}/{repository}:v1");
        let facts = inspector
            .inspect([image.as_str()], Duration::from_secs(5))
            .await;
        assert_eq!(
            facts.classes.get(&image),
            Some(&ImageClass::Unknown {
                reason: "manifest larger than 4194304 bytes".into()
            }),
            "{repository}"
        );
    }
    task.abort();
}

/// A registry stand-in whose manifests redirect: to another host (an internal address, the SSRF
/// of issue 23 finding 4), and on its own host (followed). The other host counts its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_another_host_are_refused_with_a_warning() {
    use axum::http::{StatusCode, header::LOCATION};
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let internal_hits = Arc::new(AtomicUsize::new(0));
    let hits = internal_hits.clone();
    let internal = axum::Router::new().fallback(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        async { "{\"secret\": true}" }
    });
    let internal_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let internal_addr = internal_listener.local_addr().expect("addr");
    let internal_task = tokio::spawn(async move {
        let _ = axum::serve(internal_listener, internal).await;
    });

    let elsewhere = format!(
        "http://localhost:{}/latest/meta-data/iam",
        internal_addr.port()
    );
    let app = axum::Router::new()
        .route(
            "/v2/away/manifests/v1",
            get(move || {
                let to = elsewhere.clone();
                async move { (StatusCode::FOUND, [(LOCATION, to)]) }
            }),
        )
        .route(
            "/v2/home/manifests/v1",
            get(|| async { (StatusCode::FOUND, [(LOCATION, "/v2/home/manifests/moved")]) }),
        )
        .route(
            "/v2/home/manifests/moved",
            get(|| async { (StatusCode::OK, "not a manifest") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let inspector = Inspector::new(&settings(&[addr.to_string()]));
    let away = format!("{addr}/away:v1");
    let home = format!("{addr}/home:v1");
    let facts = inspector
        .inspect([away.as_str(), home.as_str()], Duration::from_secs(5))
        .await;
    assert_eq!(
        facts.classes.get(&away),
        Some(&ImageClass::Unknown {
            reason: "manifest: redirect refused (another host)".into()
        }),
        "{facts:?}"
    );
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "the other host was asked"
    );
    // The same-host redirect was followed: the answer it led to was read (and is not JSON).
    match facts.classes.get(&home) {
        Some(ImageClass::Unknown { reason }) => {
            assert!(reason.contains("not valid JSON"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    task.abort();
    internal_task.abort();
}

/// Issue 23, finding 5: de-duplicating a review's images is linear in its containers (40,000
/// distinct images took 4 s of CPU when each was compared with every earlier one).
#[test]
fn image_deduplication_is_linear_in_containers() {
    let engine = engine_for(settings(&[]));
    let mut object = deployment("many", &["r.example/a:1"]);
    let template = object["spec"]["template"]["spec"]["containers"][0].clone();
    let containers: Vec<Value> = (0..40_000)
        .map(|i| {
            let mut c = template.clone();
            c["name"] = json!(format!("c{i}"));
            // Every image twice: c0 and c1 run i0, c2 and c3 run i1, ...
            c["image"] = json!(format!("r.example/i{}:1", i / 2));
            c
        })
        .collect();
    object["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
    let body = serde_json::to_vec(&review_for(&object, "CREATE", None, None)).expect("json");
    let decoded = review::decode(&body).expect("review");
    let started = Instant::now();
    let images = engine.registry_images(&decoded.request(), None);
    let took = started.elapsed();
    assert_eq!(images.len(), 20_000);
    assert_eq!(images[0], "r.example/i0:1");
    assert_eq!(images[19_999], "r.example/i19999:1");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Issue 23, finding 5: `serve` inspects at most 32 images of one review; the registry sees
/// no request for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_inspects_at_most_32_images() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { (axum::http::StatusCode::NOT_FOUND, "{}") }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("dir");
    let config = write(
        dir.path(),
        "config.yaml",
        &registry_config_yaml(&[&addr.to_string()], ""),
    );
    let server =
        server_support::TestServer::start_with(|args| args.config = Some(config.clone())).await;

    let mut object = deployment("many", &["x"]);
    let template = object["spec"]["template"]["spec"]["containers"][0].clone();
    let containers: Vec<Value> = (0..40)
        .map(|i| {
            let mut c = template.clone();
            c["name"] = json!(format!("c{i}"));
            c["image"] = json!(format!("{addr}/i{i}:1"));
            c
        })
        .collect();
    object["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
    let body = serde_json::to_vec(&review_for(&object, "CREATE", None, None)).expect("json");
    let client = server.client(server_support::Http::One);
    let answer = server_support::post_review(&client, &server.url("/mutate"), body)
        .await
        .expect("answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["response"]["allowed"], true);
    assert_eq!(asked.load(Ordering::SeqCst), 32, "manifest requests");
    server.stop().await;
    task.abort();
}

#[test]
fn registry_config_keys_parse() {
    let c = Config::from_yaml(&registry_config_yaml(
        &["127.0.0.1:5000"],
        "    timeout: 1500ms\n    cacheTTL: 1m\n    credentialsFile: /etc/wasm-admission/registry/.dockerconfigjson\n",
    ))
    .expect("config");
    let r = c.detection.registry;
    assert!(r.enabled);
    assert_eq!(r.timeout, Duration::from_millis(1500));
    assert_eq!(r.cache_ttl, Duration::from_secs(60));
    assert_eq!(r.insecure, ["127.0.0.1:5000"]);
}

/// A stand-in token service on 127.0.0.1 that counts its requests and hands out a token the
/// registry will not accept (the point is whether it is asked at all).
async fn counting_token_service() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { r#"{"token": "not-a-jwt"}"# }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, asked, task)
}

/// Issue 23, finding 4, the 401 path: the real registry in token mode names a token realm on
/// another origin (as Docker Hub names auth.docker.io). The webhook asks that realm only when
/// `redirectHosts` lists it; otherwise the image is "not Wasm" with the warning
/// `token realm refused (another host)` and the realm gets no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_realm_on_another_host_is_asked_only_when_listed() {
    use std::sync::atomic::Ordering;
    let Some(mut registry) = LocalRegistry::start().await else {
        return;
    };
    registry.push_wasm("wasm/behind-token:v1").await;
    let (token_addr, asked, task) = counting_token_service().await;
    registry.use_token_auth(&format!("http://{token_addr}/token"));
    registry.restart().await;
    let image = registry.image("wasm/behind-token:v1");

    let refused = Inspector::new(&settings(&[registry.host()]));
    let facts = refused
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert_eq!(
        facts.classes.get(&image),
        Some(&ImageClass::Unknown {
            reason: "token realm refused (another host)".into()
        }),
        "{facts:?}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the realm was asked");
    assert_eq!(registry.gets("/v2/wasm/behind-token/manifests/"), 1);

    let listed = Inspector::new(&RegistryConfig {
        redirect_hosts: vec![token_addr.to_string()],
        ..settings(&[registry.host()])
    });
    let facts = listed
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the listed realm is asked once"
    );
    // The stand-in's token is no JWT the registry accepts: refused by the registry itself.
    assert_eq!(
        facts.classes.get(&image),
        Some(&ImageClass::Unknown {
            reason: "anonymous access denied (HTTP 401)".into()
        }),
        "{facts:?}"
    );
    task.abort();
}

/// `detection.registry.allowedHosts`: an image on a registry not listed is never fetched (the
/// registry's access log shows no request) and is "not Wasm" with a warning; listed, it is
/// inspected as before. Empty means any host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_on_registries_outside_allowed_hosts_are_not_fetched() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let image = registry.push_wasm("wasm/allowed:v1").await;
    let before = registry.gets("/v2/wasm/allowed/manifests/");
    let elsewhere = Inspector::new(&RegistryConfig {
        allowed_hosts: vec!["ghcr.io".into(), "*.dkr.ecr.*.amazonaws.com".into()],
        ..settings(&[registry.host()])
    });
    let facts = elsewhere
        .inspect([image.as_str()], Duration::from_secs(5))
        .await;
    assert_eq!(
        facts.classes.get(&image),
        Some(&ImageClass::Unknown {
            reason: "registry not in allowedHosts".into()
        })
    );
    assert_eq!(
        registry.gets("/v2/wasm/allowed/manifests/"),
        before,
        "fetched"
    );
    let engine = engine_for(RegistryConfig {
        allowed_hosts: vec!["ghcr.io".into()],
        ..settings(&[registry.host()])
    });
    let (decision, _) = decide(
        &engine,
        &elsewhere,
        &deployment("d", &[&image]),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        decision.warnings,
        [format!(
            "wasm-admission: image {image} not inspected (registry not in allowedHosts); treated as not Wasm"
        )]
    );
    for allowed in [vec![registry.host()], vec!["127.0.0.1".to_string()], vec![]] {
        let inspector = Inspector::new(&RegistryConfig {
            allowed_hosts: allowed.clone(),
            ..settings(&[registry.host()])
        });
        let facts = inspector
            .inspect([image.as_str()], Duration::from_secs(5))
            .await;
        assert_eq!(
            facts.classes.get(&image),
            Some(&ImageClass::Wasm),
            "{allowed:?}"
        );
    }
}

/// The caps across reviews: with `maxConcurrentFetches: 1`, a second image waits for the first
/// (which never answers) only as long as the fetch timeout, then is "not Wasm" with the warning
/// naming the limit; with `maxBufferedMiB: 4` two manifests of 3 MiB read at once cannot both
/// be held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_fetches_and_bytes_are_capped_across_reviews() {
    let hole = BlackHole::start().await;
    let inspector = Inspector::new(&RegistryConfig {
        max_concurrent_fetches: 1,
        timeout: Duration::from_millis(600),
        ..settings(&[hole.addr.to_string()])
    });
    let first = format!("{}/a:1", hole.addr);
    let second = format!("{}/b:1", hole.addr);
    let started = Instant::now();
    let (a, b) = tokio::join!(
        inspector.inspect([first.as_str()], Duration::from_secs(5)),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            inspector
                .inspect([second.as_str()], Duration::from_secs(5))
                .await
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The first held the only place until its own timeout (reqwest's or the lookup's).
    assert!(
        matches!(a.classes.get(&first), Some(ImageClass::Unknown { reason }) if reason.contains("timed out") || reason.contains("no answer")),
        "{a:?}"
    );
    assert_eq!(
        b.classes.get(&second),
        Some(&ImageClass::Unknown {
            reason: "registry fetch limit (1) reached".into()
        })
    );

    // Two 3 MiB manifests streamed slowly at once, against a 4 MiB budget.
    let app = axum::Router::new().fallback(|| async {
        use futures_util::StreamExt;
        let chunks = futures_util::stream::iter(
            (0..48)
                .map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 64 * 1024]))),
        )
        .then(|chunk| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            chunk
        });
        axum::body::Body::from_stream(chunks)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let inspector = Inspector::new(&RegistryConfig {
        max_buffered_mib: 4,
        ..settings(&[addr.to_string()])
    });
    let images = [format!("{addr}/x:1"), format!("{addr}/y:1")];
    let facts = inspector
        .inspect(images.iter().map(String::as_str), Duration::from_secs(5))
        .await;
    let reasons: Vec<String> = images
        .iter()
        .map(|i| match facts.classes.get(i) {
            Some(ImageClass::Unknown { reason }) => reason.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r == "registry read budget (4 MiB) full"),
        "{reasons:?}"
    );
    task.abort();
}

/// Repeated warnings collapsed (SPEC: warnings at most 120 characters with the prefix): 40
/// containers on 25 images, none of which may be fetched, give 20 warnings and
/// `wasm-admission: 5 more warnings` through the review door, and the same through `check`
/// (the engine collapses them, whatever the door).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_registry_warnings_are_collapsed_in_every_door() {
    let registry = RegistryConfig {
        allowed_hosts: vec!["ghcr.io".into()],
        ..settings(&[])
    };
    let engine = engine_for(registry.clone());
    let inspector = Inspector::new(&registry);
    let mut object = deployment("many", &["x"]);
    let template = object["spec"]["template"]["spec"]["containers"][0].clone();
    let containers: Vec<Value> = (0..40)
        .map(|i| {
            let mut c = template.clone();
            c["name"] = json!(format!("c{i}"));
            c["image"] = json!(format!("r.example/i{}:1", i % 25));
            c
        })
        .collect();
    object["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
    let (decision, _) = decide(&engine, &inspector, &object, Duration::from_secs(5)).await;
    assert_eq!(decision.warnings.len(), 21, "{:?}", decision.warnings);
    assert_eq!(decision.warnings[20], "wasm-admission: 5 more warnings");
    assert_eq!(
        decision.warnings[0],
        "wasm-admission: image r.example/i0:1 not inspected (registry not in allowedHosts); treated as not Wasm"
    );

    let dir = tempfile::tempdir().expect("dir");
    let config = write(
        dir.path(),
        "config.yaml",
        "detection:\n  registry:\n    enabled: true\n    allowedHosts: [ghcr.io]\n",
    );
    let manifest = write(
        dir.path(),
        "many.yaml",
        &serde_json::to_string(&object).expect("json"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .args(["check", "--registry", "--config"])
        .arg(&config)
        .arg(&manifest)
        .output()
        .expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("warning: "))
        .collect();
    assert_eq!(warnings, decision.warnings, "{text}");
}
