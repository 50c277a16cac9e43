//! The configuration file is re-read when it changes (behaviour.md §7): a mounted ConfigMap is updated by
//! the same symlink swap as a Secret; an invalid new file is refused with a log line and a metric,
//! and the last good configuration stays in force.

mod server_support;

use std::time::Duration;

use server_support::*;

const OK: &str = "wasm_admission_reloads_total{what=\"config\",result=\"success\"}";
const REFUSED: &str = "wasm_admission_reloads_total{what=\"config\",result=\"failure\"}";

async fn injected_runtime_class(t: &TestServer, client: &reqwest::Client) -> String {
    let answer = post_review(client, &t.url("/mutate"), DEPLOYMENT_CREATE)
        .await
        .expect("request");
    let response = check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    let patched = apply_patch(&object_of(DEPLOYMENT_CREATE), response);
    patched["spec"]["template"]["spec"]["runtimeClassName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_configuration_is_applied_and_an_invalid_one_refused() {
    let mut configmap = SecretDir::new(&[("config.yaml", b"runtimeClassName: wasmtime\n")]);
    let path = configmap.path("config.yaml");
    let t = TestServer::start_with(|args| args.config = Some(path)).await;
    let client = t.client(Http::One);
    let metrics_url = t.url("/metrics");
    assert_eq!(injected_runtime_class(&t, &client).await, "wasmtime");

    configmap.swap(&[("config.yaml", b"runtimeClassName: spin\n")]);
    eventually(
        Duration::from_secs(10),
        "the new configuration applied",
        || async { injected_runtime_class(&t, &client).await == "spin" },
    )
    .await;
    assert_eq!(metric(&metrics_text(&client, &metrics_url).await, OK), 1.0);

    // An unknown key, then a file that is not YAML: both refused, "spin" stays.
    configmap.swap(&[("config.yaml", b"runtimeClass: wasmedge\n")]);
    eventually(
        Duration::from_secs(10),
        "the unknown key refused",
        || async { metric(&metrics_text(&client, &metrics_url).await, REFUSED) == 1.0 },
    )
    .await;
    assert_eq!(injected_runtime_class(&t, &client).await, "spin");
    configmap.swap(&[("config.yaml", b"runtimeClassName: [unclosed\n")]);
    eventually(
        Duration::from_secs(10),
        "the broken YAML refused",
        || async { metric(&metrics_text(&client, &metrics_url).await, REFUSED) == 2.0 },
    )
    .await;
    assert_eq!(injected_runtime_class(&t, &client).await, "spin");
    let ready = client.get(t.url("/readyz")).send().await.expect("readyz");
    assert_eq!(
        ready.status(),
        200,
        "still ready on the last good configuration"
    );

    // Fixed again: taken.
    configmap.swap(&[("config.yaml", b"runtimeClassName: wasmedge\n")]);
    eventually(
        Duration::from_secs(10),
        "the fixed configuration applied",
        || async { injected_runtime_class(&t, &client).await == "wasmedge" },
    )
    .await;
    t.stop().await;
}

/// The Wasm Deployment of `DEPLOYMENT_CREATE` with a liveness probe aimed at another host, and
/// whether `/validate` allows it.
async fn probe_host_allowed(t: &TestServer, client: &reqwest::Client) -> bool {
    let mut review: serde_json::Value = serde_json::from_str(DEPLOYMENT_CREATE).expect("JSON");
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] =
        serde_json::json!({"httpGet": {"host": "10.0.0.1", "port": 8080}});
    let answer = post_review(client, &t.url("/validate"), review.to_string())
        .await
        .expect("request");
    let response = check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    response["allowed"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_baseline_version_takes_effect_on_reload() {
    let mut configmap =
        SecretDir::new(&[("config.yaml", b"security:\n  baselineVersion: v1.33\n")]);
    let path = configmap.path("config.yaml");
    let t = TestServer::start_with(|args| args.config = Some(path)).await;
    let client = t.client(Http::One);
    let metrics_url = t.url("/metrics");
    assert!(
        probe_host_allowed(&t, &client).await,
        "no host check at v1.33"
    );

    configmap.swap(&[("config.yaml", b"security:\n  baselineVersion: v1.34\n")]);
    eventually(
        Duration::from_secs(10),
        "v1.34 applied: the probe host denied",
        || async { !probe_host_allowed(&t, &client).await },
    )
    .await;
    assert_eq!(metric(&metrics_text(&client, &metrics_url).await, OK), 1.0);

    // An older version is refused; v1.34 stays in force.
    configmap.swap(&[("config.yaml", b"security:\n  baselineVersion: v1.29\n")]);
    eventually(Duration::from_secs(10), "v1.29 refused", || async {
        metric(&metrics_text(&client, &metrics_url).await, REFUSED) == 1.0
    })
    .await;
    assert!(!probe_host_allowed(&t, &client).await);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_namespace_is_never_touched() {
    // --namespace is the webhook's own namespace (behaviour.md §6): excluded even without a config file.
    let t = TestServer::start_with(|args| args.namespace = Some("demo".into())).await;
    let client = t.client(Http::One);
    let answer = post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
        .await
        .expect("request");
    let response = check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    t.stop().await;
}
