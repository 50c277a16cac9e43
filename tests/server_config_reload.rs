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

/// Issue 28, item 9, on the built binary: a 400 MB file at the config path is not read (before:
/// RSS from 9 MB to 828 MB, every second); a FIFO there is refused without blocking the poll, so a
/// rotated certificate is still served; and SIGTERM still exits (before: never).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_item9_a_huge_config_or_a_fifo_blocks_neither_certificate_reload_nor_sigterm() {
    let pki = Pki::new("reload CA");
    let first = pki.serving();
    let (dir, cert, key) = pair_files(&first);
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "runtimeClassName: wasmtime\n").expect("config");
    let mut spawned = spawn_serve(&tls_flags(
        &cert,
        &key,
        &[
            "--config",
            config.to_str().expect("path"),
            "--watch-runtime-classes",
            "off",
        ],
    ));
    let peer = |ca: String, addr| async move {
        let client = apiserver_client(&ca, addr, Http::One);
        let url = format!("https://{SERVICE_HOST}:{}/mutate", addr.port());
        post_review(&client, &url, DEPLOYMENT_CREATE)
            .await
            .ok()
            .and_then(|a| a.peer_cert)
    };
    let addr = spawned.addr;
    assert_eq!(
        peer(pki.ca_pem.clone(), addr).await,
        Some(first.cert_der.clone())
    );
    let before = spawned.status_kib("VmRSS");

    // A 400 MB file (sparse: no disk used), for three polls.
    let huge = dir.path().join("huge.yaml");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(400 * 1024 * 1024))
        .expect("huge file");
    std::fs::rename(&huge, &config).expect("swap in the huge file");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = spawned.status_kib("VmHWM");
    eprintln!("RSS before {before} KiB, peak after 3 polls of a 400 MB config {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "read whole: {before} -> {after} KiB"
    );

    // A FIFO at the path, then a rotated certificate: served, without a writer ever opening it.
    std::fs::remove_file(&config).expect("remove");
    let c = std::ffi::CString::new(config.to_str().expect("path")).expect("cstring");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = pki.serving();
    let staged = dir.path().join("staged");
    std::fs::create_dir(&staged).expect("staged");
    std::fs::write(staged.join("tls.crt"), &second.cert_pem).expect("cert");
    std::fs::write(staged.join("tls.key"), &second.key_pem).expect("key");
    std::fs::rename(staged.join("tls.key"), &key).expect("swap key");
    std::fs::rename(staged.join("tls.crt"), &cert).expect("swap cert");
    eventually(
        Duration::from_secs(10),
        "the rotated certificate served",
        || {
            let (ca, want) = (pki.ca_pem.clone(), second.cert_der.clone());
            async move { peer(ca, addr).await == Some(want) }
        },
    )
    .await;

    let pid = libc::pid_t::try_from(spawned.child.id()).expect("pid");
    // SAFETY: kill(2) with a pid this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = spawned.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let logs = spawned.logs_after_exit();
    assert!(
        logs.iter().any(|l| l.contains("not a regular file")),
        "the FIFO is named in the log: {logs:#?}"
    );
}
