//! behaviour.md §7 RuntimeClass awareness, against a local stand-in for kube-apiserver: kube's client
//! lists `GET /apis/node.k8s.io/v1/runtimeclasses` (a `RuntimeClassList` with a
//! `resourceVersion`), then watches it (`?watch=true`, newline-delimited watch events), exactly
//! as it would against a real apiserver. No real cluster is involved (docs/hardening.md says what is not tested).

mod common;
mod server_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};
use wasm_admission::adapters::runtime_classes::WatchMode;
use wasm_admission::commands::serve::Tuning;

use common::{fixture, privileged_twin, review_for};
use server_support::{Http, TestServer, eventually, fast_tuning, post_review};

fn runtime_class(name: &str, resource_version: u32) -> Value {
    runtime_class_with_handler(name, name, resource_version)
}

fn runtime_class_with_handler(name: &str, handler: &str, resource_version: u32) -> Value {
    json!({
        "kind": "RuntimeClass",
        "apiVersion": "node.k8s.io/v1",
        "metadata": {
            "name": name,
            "uid": format!("6a5b{resource_version:04}-0000-4000-8000-000000000000"),
            "resourceVersion": resource_version.to_string(),
            "creationTimestamp": "2026-11-25T09:00:00Z"
        },
        "handler": handler,
        "scheduling": {"nodeSelector": {"wasm.runtime/enabled": "true"}}
    })
}

/// What the stand-in serves, and what it was asked.
struct FakeApi {
    initial: Vec<Value>,
    /// The list is answered only once this is notified (to test the time before it).
    release_list: Notify,
    list_released: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<String>,
    lists: AtomicUsize,
    watches: AtomicUsize,
}

async fn runtimeclasses(State(api): State<Arc<FakeApi>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let watch = form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    if watch {
        api.watches.fetch_add(1, Ordering::SeqCst);
        let rx = api.events.subscribe();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(line) => return Some((Ok::<_, std::io::Error>(line), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    api.lists.fetch_add(1, Ordering::SeqCst);
    if !api.list_released.load(Ordering::SeqCst) {
        api.release_list.notified().await;
    }
    let list = json!({
        "kind": "RuntimeClassList",
        "apiVersion": "node.k8s.io/v1",
        "metadata": {"resourceVersion": "100"},
        "items": api.initial
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

/// Nodes are not for this identity (403): the Node watch is not waited for, and no review gets a
/// node warning, as before the stand-in served this path.
async fn nodes() -> Response {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "nodes is forbidden: User \"test\" cannot list resource \"nodes\"",
        "reason": "Forbidden",
        "code": 403
    });
    (
        axum::http::StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/json")],
        status.to_string(),
    )
        .into_response()
}

async fn start_fake_api(initial: Vec<Value>) -> (Arc<FakeApi>, std::net::SocketAddr) {
    let (events, _) = broadcast::channel(16);
    let api = Arc::new(FakeApi {
        initial,
        release_list: Notify::new(),
        list_released: false.into(),
        events,
        lists: AtomicUsize::new(0),
        watches: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/apis/node.k8s.io/v1/runtimeclasses", get(runtimeclasses))
        .route("/api/v1/nodes", get(nodes))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (api, addr)
}

impl FakeApi {
    fn release(&self) {
        self.list_released.store(true, Ordering::SeqCst);
        self.release_list.notify_waiters();
    }

    fn send(&self, kind: &str, object: Value) {
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        self.events.send(line).expect("a watch is open");
    }
}

/// A Wasm Deployment that gets `class` injected.
fn deployment(name: &str, class: Option<&str>) -> Value {
    let mut object = fixture("deployment-plain");
    object["metadata"]["name"] = json!(name);
    let annotations = match class {
        Some(class) => json!({"wasm-admission.io/runtime-class": class}),
        None => json!({"wasm-admission.io/wasm": "true"}),
    };
    object["metadata"]["annotations"] = annotations;
    object
}

async fn warnings_for(server: &TestServer, object: &Value) -> Vec<String> {
    let client = server.client(Http::One);
    let body = serde_json::to_vec(&review_for(object, "CREATE", None, None)).expect("json");
    let answer = post_review(&client, &server.url("/mutate"), body)
        .await
        .expect("answer");
    let response = &answer.body["response"];
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_some(), "Wasm gets a patch");
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The `/mutate` answer's `response` for a CREATE of `object`.
async fn response_for(server: &TestServer, object: &Value) -> Value {
    let client = server.client(Http::One);
    let body = serde_json::to_vec(&review_for(object, "CREATE", None, None)).expect("json");
    let answer = post_review(&client, &server.url("/mutate"), body)
        .await
        .expect("answer");
    answer.body["response"].clone()
}

/// A plain Deployment (nginx, no annotation) whose pod spec names `class`.
fn deployment_naming(name: &str, class: &str) -> Value {
    let mut object = fixture("deployment-plain");
    object["metadata"]["name"] = json!(name);
    object["spec"]["template"]["spec"]["runtimeClassName"] = json!(class);
    object
}

/// Whether the answer treats the object as Wasm: a patch (resources, OTel), allowed, no warning.
fn mutated_quietly(response: &Value) -> bool {
    response["allowed"] == true
        && response.get("patch").is_some()
        && response.get("warnings").is_none_or(|w| w == &json!([]))
}

fn unchanged(response: &Value) -> bool {
    response["allowed"] == true && response.get("patch").is_none()
}

fn missing(class: &str) -> String {
    format!(
        "wasm-admission: RuntimeClass \"{class}\" does not exist in this cluster; its pods will not start"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_runtime_class_warns_once_listed_and_an_added_one_stops_the_warning() {
    let (api, addr) = start_fake_api(vec![runtime_class("wasmtime", 90)]).await;
    let server = TestServer::start_with_tuning(
        |args| args.watch_runtime_classes = WatchMode::Auto,
        Tuning {
            kube_config: Some(kube::Config::new(
                format!("http://{addr}").parse().expect("url"),
            )),
            ..fast_tuning()
        },
    )
    .await;

    // Before the first list has completed, nothing is known: no warning, not even a false one.
    eventually(Duration::from_secs(10), "the watch lists", || async {
        api.lists.load(Ordering::SeqCst) > 0
    })
    .await;
    assert!(
        warnings_for(&server, &deployment("spin-app", Some("spin")))
            .await
            .is_empty()
    );

    api.release();
    let spin = deployment("spin-app", Some("spin"));
    eventually(
        Duration::from_secs(10),
        "the missing class is reported",
        || async { warnings_for(&server, &spin).await == [missing("spin")] },
    )
    .await;
    // An existing class: no warning.
    assert!(
        warnings_for(&server, &deployment("wt", Some("wasmtime")))
            .await
            .is_empty()
    );
    // The default class (`wasm`) is missing too, until it is added.
    let default = deployment("default-class", None);
    assert_eq!(warnings_for(&server, &default).await, [missing("wasm")]);

    eventually(Duration::from_secs(10), "the watch is open", || async {
        api.watches.load(Ordering::SeqCst) > 0
    })
    .await;
    api.send("ADDED", runtime_class("wasm", 101));
    eventually(
        Duration::from_secs(10),
        "the ADDED class is known",
        || async { warnings_for(&server, &default).await.is_empty() },
    )
    .await;
    // A MODIFIED event keeps it; a DELETED one brings the warning back.
    api.send("MODIFIED", runtime_class("wasm", 102));
    api.send("DELETED", runtime_class("wasmtime", 103));
    let wt = deployment("wt", Some("wasmtime"));
    eventually(
        Duration::from_secs(10),
        "the DELETED class is gone",
        || async { warnings_for(&server, &wt).await == [missing("wasmtime")] },
    )
    .await;
    assert!(warnings_for(&server, &default).await.is_empty());
    assert_eq!(api.lists.load(Ordering::SeqCst), 1, "one list");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_off_looks_nothing_up() {
    let (api, addr) = start_fake_api(vec![]).await;
    api.release();
    let server = TestServer::start_with_tuning(
        |args| args.watch_runtime_classes = WatchMode::Off,
        Tuning {
            kube_config: Some(kube::Config::new(
                format!("http://{addr}").parse().expect("url"),
            )),
            ..fast_tuning()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        warnings_for(&server, &deployment("a", Some("spin")))
            .await
            .is_empty()
    );
    assert_eq!(api.lists.load(Ordering::SeqCst), 0);
    server.stop().await;
}

/// Runs the real binary until it listens, then stops it; returns its log lines.
fn run_serve(envs: &[(&str, &str)]) -> Vec<Value> {
    let home = tempfile::tempdir().expect("home");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
    command
        .env("WASM_ADMISSION_SHUTDOWN_DELAY", "0s")
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("KUBECONFIG")
        .env_remove("WASM_ADMISSION_WATCH_RUNTIME_CLASSES")
        .env("HOME", home.path())
        .env("RUST_LOG", "debug")
        .current_dir(home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect::<Vec<_>>()
    });
    // The --dev banner (a curl line) is printed once the server listens.
    let mut lines = BufReader::new(stdout).lines();
    let start = Instant::now();
    loop {
        let line = lines.next().expect("stdout open").expect("line");
        if line.trim_start().starts_with("curl ") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no banner");
    }
    // Give a watch the time to list, then stop.
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: kill(2) on the child's own pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    logs.join().expect("logs")
}

fn level(line: &Value) -> &str {
    line["level"].as_str().unwrap_or_default()
}

#[test]
fn without_cluster_access_nothing_is_logged_above_debug() {
    let lines = run_serve(&[("KUBECONFIG", "/nonexistent/kubeconfig")]);
    let loud: Vec<&Value> = lines
        .iter()
        .filter(|l| level(l) == "WARN" || level(l) == "ERROR")
        .collect();
    assert!(loud.is_empty(), "{loud:#?}");
    assert!(
        lines.iter().any(|l| level(l) == "DEBUG"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("RuntimeClasses are not watched"))),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_in_the_environment_is_found_in_auto_mode() {
    let (api, addr) = start_fake_api(vec![
        runtime_class("wasmtime", 90),
        runtime_class("spin", 91),
    ])
    .await;
    api.release();
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: webhook\n  user:\n    token: not-checked\n\
             contexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: webhook\n\
             current-context: stand-in\n"
        ),
    )
    .expect("kubeconfig");
    let path = kubeconfig.display().to_string();
    let lines = tokio::task::spawn_blocking(move || run_serve(&[("KUBECONFIG", &path)]))
        .await
        .expect("run");
    let listed = lines
        .iter()
        .find(|l| l["message"] == "RuntimeClasses listed")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(listed["runtime_classes"], "[\"spin\", \"wasmtime\"]");
    assert_eq!(api.lists.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_rule3b_a_custom_class_counts_as_wasm_through_its_handler_once_watched() {
    let (api, addr) = start_fake_api(vec![
        runtime_class_with_handler("my-spin", "spin", 90),
        runtime_class_with_handler("gvisor", "runsc", 91),
        runtime_class("wasm", 92),
    ])
    .await;
    let server = TestServer::start_with_tuning(
        |args| args.watch_runtime_classes = WatchMode::Auto,
        Tuning {
            kube_config: Some(kube::Config::new(
                format!("http://{addr}").parse().expect("url"),
            )),
            ..fast_tuning()
        },
    )
    .await;
    let spin = deployment_naming("orders", "my-spin");
    let privileged = privileged_twin(&spin, 0);

    // Before the first list, `my-spin` is only a name: not mutated, but judged as Wasm for the
    // baseline (§5's boundary: a class whose handler is not known yet is checked), with a warning
    // that says why; the privileged twin is denied.
    eventually(Duration::from_secs(10), "the watch lists", || async {
        api.lists.load(Ordering::SeqCst) > 0
    })
    .await;
    let plain = response_for(&server, &spin).await;
    assert!(unchanged(&plain), "{plain}");
    assert!(
        plain["warnings"].to_string().contains("not listed yet"),
        "{plain}"
    );
    let denied = response_for(&server, &privileged).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(
        denied["status"]["message"]
            .to_string()
            .contains("securityContext.privileged=true"),
        "{denied}"
    );

    api.release();
    eventually(
        Duration::from_secs(10),
        "my-spin is known by its handler",
        || async { mutated_quietly(&response_for(&server, &spin).await) },
    )
    .await;
    let response = response_for(&server, &spin).await;
    assert_eq!(
        response["auditAnnotations"]["wasm-detected-by"], "runtime-class-name",
        "{response}"
    );
    // The class is kept: the patch does not touch runtimeClassName.
    let patch = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            response["patch"].as_str().expect("patch"),
        )
        .expect("base64"),
    )
    .expect("utf-8");
    assert!(!patch.contains("runtimeClassName"), "{patch}");
    // Its privileged twin is now a Wasm pod that breaks the baseline: 403.
    let denied = response_for(&server, &privileged).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["status"]["code"], 403, "{denied}");
    assert!(
        denied["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("securityContext.privileged=true")),
        "{denied}"
    );
    // A class whose handler is not a Wasm one stays ordinary.
    let gvisor = privileged_twin(&deployment_naming("sandboxed", "gvisor"), 0);
    assert!(unchanged(&response_for(&server, &gvisor).await));

    // An ADDED class with a Wasm handler counts; a MODIFIED one that leaves Wasm stops counting.
    eventually(Duration::from_secs(10), "the watch is open", || async {
        api.watches.load(Ordering::SeqCst) > 0
    })
    .await;
    let wws = deployment_naming("edge", "team-wws");
    assert!(unchanged(&response_for(&server, &wws).await));
    api.send("ADDED", runtime_class_with_handler("team-wws", "wws", 101));
    eventually(
        Duration::from_secs(10),
        "the ADDED class counts",
        || async { mutated_quietly(&response_for(&server, &wws).await) },
    )
    .await;
    api.send(
        "MODIFIED",
        runtime_class_with_handler("my-spin", "runc", 102),
    );
    eventually(
        Duration::from_secs(10),
        "the MODIFIED class no longer counts",
        || async { unchanged(&response_for(&server, &privileged).await) },
    )
    .await;
    server.stop().await;
}

/// `GET /readyz`: the status and the body.
async fn readyz(server: &TestServer) -> (u16, String) {
    let response = server
        .client(Http::One)
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Issue 28, item 5: `/readyz` answers 503 until the first RuntimeClass list has completed (and
/// the Node list beside it): before, it was 200 at once, and reviews were decided without knowing
/// which classes run Wasm by their handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item5_readyz_is_503_until_the_first_runtime_class_list_completes() {
    let (api, addr) = start_fake_api(vec![runtime_class_with_handler("my-spin", "spin", 90)]).await;
    let server = TestServer::start_with_tuning(
        |args| args.watch_runtime_classes = WatchMode::Auto,
        Tuning {
            kube_config: Some(kube::Config::new(
                format!("http://{addr}").parse().expect("url"),
            )),
            ..fast_tuning()
        },
    )
    .await;
    eventually(Duration::from_secs(10), "the watch lists", || async {
        api.lists.load(Ordering::SeqCst) > 0
    })
    .await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("RuntimeClasses"), "{body}");
    // Still not ready a while later: the list has not arrived.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(readyz(&server).await.0, 503);

    api.release();
    eventually(Duration::from_secs(10), "ready once listed", || async {
        readyz(&server).await.0 == 200
    })
    .await;
    server.stop().await;
}

/// Without cluster access (`auto`) nothing is watched and nothing is waited for: ready at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item5_without_a_watch_readyz_does_not_wait() {
    let server = TestServer::start_with(|args| args.watch_runtime_classes = WatchMode::Off).await;
    assert_eq!(readyz(&server).await.0, 200);
    server.stop().await;
}
