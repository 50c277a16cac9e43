//! Faults the webhook must ride out without breaking the cluster: slow and silent clients,
//! floods of idle connections, certificate files deleted or corrupted while serving, and
//! invalid configuration at start and at reload. (Rotation and the basic reload cases are in
//! `server_rotation.rs` and `server_config_reload.rs`.)

mod server_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wasm_admission::commands::serve::{self, Tuning};

/// A TLS connection to `addr` trusting `ca_pem`, offering `alpn`.
async fn tls_connect(
    ca_pem: &str,
    addr: std::net::SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(SERVICE_HOST).expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// Waits until the server closes the connection (EOF or error); returns how long that took.
async fn closed_within<S: AsyncReadExt + Unpin>(stream: &mut S, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for more than {limit:?}"),
        }
    }
}

/// Sends reviews one after another for `during`, on a kept-alive connection and on fresh ones;
/// returns the slowest answer. Every answer must be a 200.
async fn others_keep_being_answered(t: &TestServer, during: Duration) -> Duration {
    let kept = t.client(Http::One);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut n: u32 = 0;
    // Bounded: at most 500 requests.
    while started.elapsed() < during && n < 500 {
        let client = if n.is_multiple_of(2) {
            kept.clone()
        } else {
            t.client(Http::Two)
        };
        let sent = Instant::now();
        let answer = post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
            .await
            .expect("answered");
        check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
        slowest = slowest.max(sent.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slowest
}

fn short_timeouts() -> Tuning {
    Tuning {
        header_read_timeout: Duration::from_secs(2),
        first_bytes_timeout: Duration::from_secs(1),
        ..fast_tuning()
    }
}

async fn start_with_tuning(tuning: Tuning) -> TestServer {
    let pki = Pki::new("test CA");
    let pair = pki.serving();
    let secret = SecretDir::new(&[
        ("tls.crt", pair.cert_pem.as_bytes()),
        ("tls.key", pair.key_pem.as_bytes()),
    ]);
    let args = serve_args(&secret.path("tls.crt"), &secret.path("tls.key"));
    let server = serve::start(args, tuning).await.expect("server starts");
    TestServer {
        server,
        pki,
        pair,
        secret,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_trickled_byte_by_byte_is_cut_off_without_holding_others_up() {
    let t = start_with_tuning(short_timeouts()).await;
    let mut slow = tls_connect(&t.pki.ca_pem, t.addr(), &[b"http/1.1"]).await;
    let head = format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: {SERVICE_HOST}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let trickler = tokio::spawn(async move {
        let started = Instant::now();
        // One byte every 100 ms: the whole head would take ~13 s.
        for byte in head.as_bytes() {
            if slow.write_all(&[*byte]).await.is_err() || slow.flush().await.is_err() {
                return (started.elapsed(), true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Everything was sent: the server must not have answered it as a request.
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut buf)).await;
        (
            started.elapsed(),
            !String::from_utf8_lossy(&buf).contains("AdmissionReview"),
        )
    });
    let slowest = others_keep_being_answered(&t, Duration::from_secs(3)).await;
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    let (cut_after, cut) = trickler.await.expect("trickler");
    assert!(cut, "the trickled request was answered");
    assert!(
        cut_after < Duration::from_secs(8),
        "the trickled head was cut off only after {cut_after:?}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_trickled_byte_by_byte_gets_408_without_holding_others_up() {
    let t = start_with_tuning(short_timeouts()).await;
    let mut slow = tls_connect(&t.pki.ca_pem, t.addr(), &[b"http/1.1"]).await;
    let body = DEPLOYMENT_CREATE.as_bytes();
    let head = format!(
        "POST /mutate?timeout=1s HTTP/1.1\r\nHost: {SERVICE_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("head");
    let trickler = tokio::spawn(async move {
        let started = Instant::now();
        let mut answer = Vec::new();
        for byte in body {
            if slow.write_all(&[*byte]).await.is_err() || slow.flush().await.is_err() {
                break;
            }
            // Stop sending as soon as the server has answered.
            let mut buf = [0u8; 1024];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await
            {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut answer)).await;
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });
    let slowest = others_keep_being_answered(&t, Duration::from_secs(4)).await;
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    let (after, answer) = trickler.await.expect("trickler");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    assert!(after < Duration::from_secs(10), "answered after {after:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_silent_after_the_handshake_is_closed_at_the_first_bytes_deadline() {
    let t = start_with_tuning(short_timeouts()).await;
    // Nothing at all after the handshake, on either protocol.
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut silent = tls_connect(&t.pki.ca_pem, t.addr(), &[alpn]).await;
        let took = closed_within(&mut silent, Duration::from_secs(5)).await;
        assert!(
            took >= Duration::from_millis(900),
            "closed too early: {took:?}"
        );
    }
    // One byte of the HTTP/2 preface: protocol sniffing alone would wait for ever.
    let mut one_byte = tls_connect(&t.pki.ca_pem, t.addr(), &[b"h2"]).await;
    one_byte.write_all(b"P").await.expect("write");
    one_byte.flush().await.expect("flush");
    closed_within(&mut one_byte, Duration::from_secs(5)).await;
    t.stop().await;
}

/// Raises this test process's soft open-file limit to its hard limit; returns the new limit.
fn raise_own_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Opens `n` TCP connections to `addr` that never send a byte.
async fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(500) {
        let batch = (chunk * 500..((chunk + 1) * 500).min(n)).map(|_| TcpStream::connect(addr));
        for stream in futures_util::future::join_all(batch).await {
            idle.push(stream.expect("idle connection"));
        }
    }
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_neither_stop_answers_nor_exhaust_descriptors() {
    // The client side needs one descriptor per idle connection too: take what the machine
    // allows, up to 10,000 (the server, a separate process, has its own limit).
    let limit = raise_own_fd_limit();
    let n = 10_000.min(limit.saturating_sub(1_000) as usize);
    assert!(
        n >= 1_000,
        "open-file limit {limit} is too low for this test"
    );
    let pki = Pki::new("test CA");
    let (dir, cert, key) = pair_files(&pki.serving());
    let spawned = spawn_serve(&tls_flags(
        &cert,
        &key,
        &["--metrics-listen", "127.0.0.1:0"],
    ));
    let url = format!("https://{SERVICE_HOST}:{}/mutate", spawned.addr.port());
    let warm = apiserver_client(&pki.ca_pem, spawned.addr, Http::One);
    for _ in 0..20 {
        post_review(&warm, &url, DEPLOYMENT_CREATE)
            .await
            .expect("warm-up");
    }
    let rss_before = spawned.status_kib("VmRSS");
    let fds_before = spawned.open_fds();

    // The most connections the server holds at once while they open (its descriptors).
    let pid = spawned.child.id();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                peak = peak.max(open);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let opened = Instant::now();
    let idle = idle_connections(spawned.addr, n).await;
    let opened_in = opened.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let accepted = sampler.await.expect("sampler").saturating_sub(fds_before);
    // Others are still answered, on fresh connections and kept-alive ones, at once.
    let mut slowest = Duration::ZERO;
    for i in 0..20u32 {
        let client = if i.is_multiple_of(2) {
            warm.clone()
        } else {
            apiserver_client(&pki.ca_pem, spawned.addr, Http::Two)
        };
        let sent = Instant::now();
        let answer = post_review(&client, &url, DEPLOYMENT_CREATE)
            .await
            .expect("answered beside the idle flood");
        check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
        slowest = slowest.max(sent.elapsed());
    }
    let rss_during = spawned.status_kib("VmRSS");
    let fds_during = spawned.open_fds();

    // The server drops connections that never start TLS at its 10 s handshake timeout, while
    // this side still holds them open.
    let reclaimed = Instant::now();
    while spawned.open_fds() > fds_before + 50 {
        assert!(
            reclaimed.elapsed() < Duration::from_secs(20),
            "idle connections not reclaimed: {} descriptors open",
            spawned.open_fds()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reclaimed_in = opened.elapsed();
    drop(idle);
    let metrics = reqwest::get(format!(
        "http://{}/metrics",
        metrics_addr_of(&spawned).expect("metrics address")
    ))
    .await
    .expect("metrics")
    .text()
    .await
    .expect("text");
    let rss_after = spawned.status_kib("VmRSS");
    eprintln!(
        "{n} idle connections: opened in {opened_in:?}, {accepted} accepted; serve RSS {rss_before} KiB \
         before, {rss_during} KiB with them, {rss_after} KiB after; descriptors {fds_before} before, \
         {fds_during} with them; reclaimed {reclaimed_in:?} after opening; slowest answer {slowest:?}"
    );
    // All of them were accepted; the server's 10 s handshake timeout may already have dropped the
    // first ones when opening them all took long on a busy machine.
    let expected = if opened_in < Duration::from_secs(8) {
        n * 9 / 10
    } else {
        n / 4
    };
    assert!(
        accepted >= expected,
        "only {accepted} of {n} held at once (opening took {opened_in:?})"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    assert_eq!(
        metric(&metrics, "wasm_admission_connections_refused_total"),
        0.0
    );
    // Memory per idle connection is bounded (well under 20 KiB each).
    assert!(
        rss_during < rss_before + (n as u64) * 20,
        "RSS {rss_before} → {rss_during} KiB for {n} connections"
    );
    drop(dir);
}

/// The metrics address from the spawned server's "listening" log line.
fn metrics_addr_of(spawned: &Spawned) -> Option<String> {
    spawned.metrics_addr.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_descriptors_never_run_out() {
    raise_own_fd_limit();
    let pki = Pki::new("test CA");
    let (dir, cert, key) = pair_files(&pki.serving());
    // The server gets 512 descriptors: its HTTPS cap is 512 - 128 reserved - 64 for the metrics
    // listener = 320 connections.
    let spawned = spawn_serve_with(
        &tls_flags(&cert, &key, &["--metrics-listen", "127.0.0.1:0"]),
        |command| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
            unsafe {
                command.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: 512,
                        rlim_max: 512,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        },
    );
    let metrics_url = format!(
        "http://{}/metrics",
        metrics_addr_of(&spawned).expect("metrics")
    );
    let idle = idle_connections(spawned.addr, 600).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = 0.0;
    while Instant::now() < deadline {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("the metrics listener answers beside a full HTTPS cap")
            .text()
            .await
            .expect("text");
        refused = metric(&text, "wasm_admission_connections_refused_total");
        if refused >= 600.0 - 320.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused >= 280.0, "refused {refused}");
    let fds = spawned.open_fds();
    assert!(
        fds < 512 - 32,
        "{fds} descriptors open under a limit of 512"
    );

    // With the cap full, the reload loop can still open files: a renewed pair is taken.
    let renewed = pki.serving();
    let tmp = dir.path().join("tls.tmp");
    std::fs::write(&tmp, &renewed.key_pem).expect("key");
    std::fs::rename(&tmp, &key).expect("swap key");
    std::fs::write(&tmp, &renewed.cert_pem).expect("cert");
    std::fs::rename(&tmp, &cert).expect("swap cert");
    let reloaded = Instant::now();
    loop {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metric(
            &text,
            "wasm_admission_reloads_total{what=\"certificate\",result=\"success\"}",
        ) >= 1.0
        {
            break;
        }
        assert!(
            reloaded.elapsed() < Duration::from_secs(10),
            "the renewed pair was not loaded under a full cap: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Once the flood ends, answers come at once.
    drop(idle);
    let client = apiserver_client(&pki.ca_pem, spawned.addr, Http::One);
    let url = format!("https://{SERVICE_HOST}:{}/mutate", spawned.addr.port());
    let mut answered = false;
    for _ in 0..50 {
        if let Ok(answer) = post_review(&client, &url, DEPLOYMENT_CREATE).await {
            check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
            assert_eq!(answer.peer_cert.as_deref(), Some(&renewed.cert_der[..]));
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "no answer after the flood ended");
    let logs = spawned.take_logs();
    assert!(
        logs.iter().any(|l| l.contains("connection cap reached")),
        "the cap is logged: {logs:#?}"
    );
    assert!(
        !logs.iter().any(|l| l.contains("Too many open files")),
        "descriptors ran out: {logs:#?}"
    );
}

const CERT_FAILURES: &str = "wasm_admission_reloads_total{what=\"certificate\",result=\"failure\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_deleted_or_corrupted_keep_the_last_good_pair_and_readiness() {
    let pki = Pki::new("test CA");
    let pair = pki.serving();
    let (dir, cert, key) = pair_files(&pair);
    let spawned = spawn_serve(&tls_flags(&cert, &key, &[]));
    let base = format!("https://{SERVICE_HOST}:{}", spawned.addr.port());
    let fresh = || apiserver_client(&pki.ca_pem, spawned.addr, Http::One);
    let failures = || async {
        metric(
            &metrics_text(&fresh(), &format!("{base}/metrics")).await,
            CERT_FAILURES,
        )
    };
    let still_serving = || async {
        // A new connection (a new handshake) is served the last good certificate, and ready.
        let client = fresh();
        let answer = post_review(&client, &format!("{base}/mutate"), DEPLOYMENT_CREATE)
            .await
            .expect("a new connection is still served");
        check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
        assert_eq!(answer.peer_cert.as_deref(), Some(&pair.cert_der[..]));
        let ready = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200, "still ready");
    };

    std::fs::remove_file(&cert).expect("delete cert");
    std::fs::remove_file(&key).expect("delete key");
    eventually(Duration::from_secs(10), "the deletion counted", || async {
        failures().await == 1.0
    })
    .await;
    still_serving().await;

    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").expect("corrupt cert");
    std::fs::write(&key, &pair.key_pem).expect("key");
    eventually(
        Duration::from_secs(10),
        "the corruption counted",
        || async { failures().await == 2.0 },
    )
    .await;
    still_serving().await;

    let logs = spawned.take_logs();
    for says in [
        "cannot read the serving certificate files; still serving the last good pair",
        "refused the changed certificate files; still serving the last good pair",
    ] {
        assert!(logs.iter().any(|l| l.contains(says)), "{says}: {logs:#?}");
    }
    drop(dir);
}

#[test]
fn invalid_configuration_at_start_exits_non_zero_naming_the_key() {
    let pki = Pki::new("test CA");
    let (dir, cert, key) = pair_files(&pki.serving());
    for (text, key_named) in [
        ("otel:\n  endpont: http://x:4317\n", "endpont"),
        (
            "resources:\n  requests: {cpu: '2'}\n  limits: {cpu: '1'}\n",
            "resources",
        ),
        ("security:\n  policy: restricted\n", "security.policy"),
        (
            "detection:\n  imagePatterns: ['ghcr.io/[wasm']\n",
            "detection.imagePatterns",
        ),
    ] {
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, text).expect("config");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-private-key-file")
            .arg(&key)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{text}: {stderr}");
        assert!(
            stderr.contains(key_named) && stderr.contains("--config"),
            "{text}: {stderr}"
        );
    }
}

const CONFIG_OK: &str = "wasm_admission_reloads_total{what=\"config\",result=\"success\"}";
const CONFIG_REFUSED: &str = "wasm_admission_reloads_total{what=\"config\",result=\"failure\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_deleted_or_invalid_at_reload_keeps_the_last_good_one() {
    let mut configmap = SecretDir::new(&[("config.yaml", b"runtimeClassName: spin\n")]);
    let path = configmap.path("config.yaml");
    let t = TestServer::start_with(|args| args.config = Some(path.clone())).await;
    let client = t.client(Http::One);
    let runtime_class = || async {
        let answer = post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
            .await
            .expect("request");
        let response = check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
        apply_patch(&object_of(DEPLOYMENT_CREATE), response)["spec"]["template"]["spec"]
            ["runtimeClassName"]
            .clone()
    };
    let refused = || async {
        metric(
            &metrics_text(&client, &t.url("/metrics")).await,
            CONFIG_REFUSED,
        )
    };
    assert_eq!(runtime_class().await, "spin");

    // The ConfigMap's file disappears (the symlink points nowhere).
    std::fs::remove_file(&path).expect("remove");
    eventually(
        Duration::from_secs(10),
        "the missing file counted",
        || async { refused().await == 1.0 },
    )
    .await;
    assert_eq!(runtime_class().await, "spin");

    // Back, but with a request above its limit: refused as a whole.
    std::os::unix::fs::symlink("..data/config.yaml", &path).expect("relink");
    configmap.swap(&[(
        "config.yaml",
        b"runtimeClassName: wasmedge\nresources:\n  requests: {cpu: '2'}\n  limits: {cpu: '1'}\n",
    )]);
    eventually(
        Duration::from_secs(10),
        "the invalid file counted",
        || async { refused().await == 2.0 },
    )
    .await;
    assert_eq!(runtime_class().await, "spin");

    // Larger than a ConfigMap can be: refused without being parsed.
    let mut huge = b"runtimeClassName: wasmedge\n".to_vec();
    huge.extend(std::iter::repeat_n(b'#', 2 * 1024 * 1024));
    configmap.swap(&[("config.yaml", &huge)]);
    eventually(
        Duration::from_secs(10),
        "the oversized file counted",
        || async { refused().await == 3.0 },
    )
    .await;
    assert_eq!(runtime_class().await, "spin");
    let ready = client.get(t.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);

    configmap.swap(&[("config.yaml", b"runtimeClassName: wasmedge\n")]);
    eventually(Duration::from_secs(10), "the good file applied", || async {
        runtime_class().await == "wasmedge"
    })
    .await;
    assert_eq!(
        metric(&metrics_text(&client, &t.url("/metrics")).await, CONFIG_OK),
        1.0
    );
    t.stop().await;
}

/// Issue 23, finding 3: an HTTP/2 connection that sends the preface and SETTINGS, then only
/// PINGs (which the server answers), is closed after the idle timeout; HTTP/1.1 already was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connection_sending_only_pings_is_closed_after_the_idle_timeout() {
    let tuning = Tuning {
        h2_idle_timeout: Duration::from_secs(1),
        ..fast_tuning()
    };
    let server = TestServer::start_with_tuning(|_| {}, tuning).await;
    let mut tls = tls_connect(&server.pki.ca_pem, server.addr(), &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("SETTINGS");
    let started = Instant::now();
    let (mut read, mut write) = tokio::io::split(tls);
    let pinger = tokio::spawn(async move {
        // A PING every 200 ms: activity on the wire, but no request.
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        while write.write_all(&ping).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let took = closed_within(&mut read, Duration::from_secs(10)).await;
    pinger.abort();
    let total = started.elapsed();
    assert!(
        total >= Duration::from_millis(900),
        "closed before the idle timeout: {total:?} ({took:?})"
    );
    assert!(
        total < Duration::from_secs(5),
        "not closed in time: {total:?}"
    );
    // A client that makes requests keeps being answered on HTTP/2.
    let answer = post_review(
        &server.client(Http::Two),
        &server.url("/mutate"),
        DEPLOYMENT_CREATE,
    )
    .await
    .expect("answered");
    assert_eq!(answer.status, 200);
    server.stop().await;
}

/// Issue 23, finding 2: bare TCP connections (no ClientHello) are capped by the memory the
/// process may use: `WASM_ADMISSION_MEMORY_LIMIT=8Mi` (the env fallback of `--memory-limit`)
/// gives a cap of 256 (one per 16 KiB of half the limit); of 400 bare connections the excess is
/// closed at once and counted, and `/healthz` is answered once they go. The other load limits'
/// env fallbacks are set too: the server starts with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_connections_are_capped_by_the_memory_limit() {
    raise_own_fd_limit();
    let pki = Pki::new("test CA");
    let (dir, cert, key) = pair_files(&pki.serving());
    let spawned = spawn_serve_with(
        &tls_flags(&cert, &key, &["--metrics-listen", "127.0.0.1:0"]),
        |command| {
            command
                .env("WASM_ADMISSION_MEMORY_LIMIT", "8Mi")
                .env("WASM_ADMISSION_MAX_REVIEWS_IN_FLIGHT", "64")
                .env("WASM_ADMISSION_MAX_BODY_MEMORY", "16Mi")
                .env("WASM_ADMISSION_H2_IDLE_TIMEOUT", "30s")
                .env("WASM_ADMISSION_TLS_HANDSHAKE_TIMEOUT", "5s");
        },
    );
    let metrics_url = format!(
        "http://{}/metrics",
        spawned.metrics_addr.clone().expect("metrics")
    );
    let idle = idle_connections(spawned.addr, 400).await;
    let mut refused = 0.0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        refused = metric(&text, "wasm_admission_connections_refused_total");
        if refused >= 144.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused >= 144.0,
        "refused {refused} of 400 over a cap of 256"
    );
    assert!(
        spawned.open_fds() < 256 + 64,
        "{} descriptors",
        spawned.open_fds()
    );
    drop(idle);
    let client = apiserver_client(&pki.ca_pem, spawned.addr, Http::One);
    let url = format!("https://{SERVICE_HOST}:{}/healthz", spawned.addr.port());
    eventually(Duration::from_secs(5), "healthz after the flood", || {
        let (client, url) = (client.clone(), url.clone());
        async move { matches!(client.get(&url).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    drop(dir);
}
