//! SIGTERM drains requests in flight, then exits 0 (behaviour.md §7). The built binary is spawned, as
//! the kubelet would run it.

mod server_support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use server_support::*;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_every_request_in_flight_then_exits_0() {
    let pki = Pki::new("test CA");
    let pair = pki.serving();
    let (_dir, cert, key) = pair_files(&pair);
    let mut spawned = spawn_serve(&tls_flags(&cert, &key, &["--shutdown-delay", "0s"]));
    let addr = spawned.addr;

    // 16 reviews whose bodies stop halfway until released: 8 over HTTP/1.1 (one connection
    // each), 8 as HTTP/2 streams on one connection.
    const N: usize = 16;
    let (release, released) = watch::channel(false);
    let started = Arc::new(AtomicUsize::new(0));
    let h1 = apiserver_client(&pki.ca_pem, addr, Http::One);
    let h2 = apiserver_client(&pki.ca_pem, addr, Http::Two);
    let url = format!("https://{SERVICE_HOST}:{}/mutate", addr.port());
    let mut calls = Vec::new();
    for i in 0..N {
        let client = if i % 2 == 0 { h1.clone() } else { h2.clone() };
        let url = url.clone();
        let started = started.clone();
        let released = released.clone();
        let body = DEPLOYMENT_CREATE.as_bytes();
        let (head, tail) = body.split_at(body.len() / 2);
        let stream = futures_util::stream::unfold(0u8, move |step| {
            let started = started.clone();
            let mut released = released.clone();
            async move {
                match step {
                    0 => {
                        started.fetch_add(1, Ordering::SeqCst);
                        Some((Ok::<_, std::io::Error>(head.to_vec()), 1))
                    }
                    1 => {
                        let _ = released.wait_for(|go| *go).await;
                        Some((Ok(tail.to_vec()), 2))
                    }
                    _ => None,
                }
            }
        });
        calls.push(tokio::spawn(async move {
            post_review(&client, &url, reqwest::Body::wrap_stream(stream)).await
        }));
    }
    eventually(
        Duration::from_secs(10),
        "every request sent its first half",
        || {
            let started = started.clone();
            async move { started.load(Ordering::SeqCst) == N }
        },
    )
    .await;
    // Every review has reached its handler (the server has read its head).
    let metrics = apiserver_client(&pki.ca_pem, addr, Http::One);
    let metrics_url = format!("https://{SERVICE_HOST}:{}/metrics", addr.port());
    eventually(
        Duration::from_secs(10),
        "every review in flight",
        || async {
            metric(
                &metrics_text(&metrics, &metrics_url).await,
                "wasm_admission_reviews_in_flight",
            ) == N as f64
        },
    )
    .await;
    drop(metrics);

    // SIGTERM, and wait until the listener is closed (new connections are refused).
    let pid = libc::pid_t::try_from(spawned.child.id()).expect("pid");
    // SAFETY: kill(2) with a pid this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    eventually(Duration::from_secs(10), "the listener closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;

    // Now the bodies finish: every review must be answered.
    release.send(true).expect("release");
    let uid = uid_of(DEPLOYMENT_CREATE);
    for call in calls {
        let answer = call
            .await
            .expect("task")
            .expect("request in flight answered");
        let response = check_envelope(&answer, &uid);
        assert_eq!(response["allowed"], true);
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = spawned.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let logs = spawned.logs_after_exit();
    assert!(
        logs.iter().any(|l| l.contains("SIGTERM")),
        "the shutdown is logged: {logs:#?}"
    );
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("\"message\":\"admission review\""))
            .count(),
        N,
        "one log line per review: {logs:#?}"
    );
}

/// Issue 23, finding 9: after SIGTERM the apiserver keeps calling until the endpoint is
/// removed, so new connections are still accepted and answered for `--shutdown-delay`, while
/// `/readyz` answers 503; then the listener closes and serve exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_accepting_for_the_shutdown_delay_with_readyz_503() {
    let pki = Pki::new("test CA");
    let pair = pki.serving();
    let (_dir, cert, key) = pair_files(&pair);
    let mut spawned = spawn_serve_with(&tls_flags(&cert, &key, &[]), |command| {
        command.env("WASM_ADMISSION_SHUTDOWN_DELAY", "4s");
    });
    let addr = spawned.addr;
    let base = format!("https://{SERVICE_HOST}:{}", addr.port());
    let ready = |client: reqwest::Client, url: String| async move {
        client
            .get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok()
    };
    let before = apiserver_client(&pki.ca_pem, addr, Http::One);
    assert_eq!(ready(before, format!("{base}/readyz")).await, Some(200));

    let pid = libc::pid_t::try_from(spawned.child.id()).expect("pid");
    let signalled = Instant::now();
    // SAFETY: kill(2) with a pid this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    // Each check on a new client, so a new connection: still accepted.
    eventually(Duration::from_secs(3), "/readyz answers 503", || {
        let client = apiserver_client(&pki.ca_pem, addr, Http::One);
        let url = format!("{base}/readyz");
        async move { ready(client, url).await == Some(503) }
    })
    .await;
    for http in [Http::One, Http::Two] {
        let client = apiserver_client(&pki.ca_pem, addr, http);
        let answer = post_review(&client, &format!("{base}/mutate"), DEPLOYMENT_CREATE)
            .await
            .expect("a review on a new connection during the delay is answered");
        assert_eq!(
            check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE))["allowed"],
            true
        );
    }
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "the checks above ran within the delay; the machine is too slow for this test"
    );

    eventually(Duration::from_secs(15), "the listener closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        signalled.elapsed() >= Duration::from_secs(4),
        "the listener closed before the delay: {:?}",
        signalled.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = spawned.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn startup_error_exits_non_zero_and_names_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert-file",
            "/nonexistent/tls.crt",
            "--tls-private-key-file",
            "/nonexistent/tls.key",
            "--log-format",
            "text",
        ])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tls-cert-file") && stderr.contains("/nonexistent/tls.crt"),
        "{stderr}"
    );
}
