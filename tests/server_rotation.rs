//! Certificate rotation without a restart (behaviour.md §7): the files are swapped the way the kubelet
//! swaps a mounted Secret, while clients keep calling.

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use server_support::*;

const FAILURES: &str = "wasm_admission_reloads_total{what=\"certificate\",result=\"failure\"}";
const SUCCESSES: &str = "wasm_admission_reloads_total{what=\"certificate\",result=\"success\"}";

/// Which certificate a fresh connection is served.
async fn served_certificate(t: &TestServer) -> Vec<u8> {
    let client = t.client(Http::One);
    let answer = post_review(&client, &t.url("/mutate"), DEPLOYMENT_CREATE)
        .await
        .expect("request on a fresh connection");
    check_envelope(&answer, &uid_of(DEPLOYMENT_CREATE));
    answer.peer_cert.expect("peer certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swapped_like_a_secret_volume_is_served_without_failing_requests() {
    let mut t = TestServer::start().await;
    assert_eq!(served_certificate(&t).await, t.pair.cert_der);

    // Clients keep calling during the swap: one on a kept-alive HTTP/1.1 connection, one over
    // HTTP/2, one opening a new connection for every request.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for mode in 0..3 {
        let stop = stop.clone();
        let sent = sent.clone();
        let ca = t.pki.ca_pem.clone();
        let addr = t.addr();
        let url = t.url("/mutate");
        callers.push(tokio::spawn(async move {
            let kept = apiserver_client(&ca, addr, if mode == 1 { Http::Two } else { Http::One });
            let mut failures = Vec::new();
            // Bounded: at most 2000 requests per caller.
            for _ in 0..2000 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let client = if mode == 2 {
                    apiserver_client(&ca, addr, Http::One)
                } else {
                    kept.clone()
                };
                match post_review(&client, &url, DEPLOYMENT_CREATE).await {
                    Ok(a) if a.status == 200 => {}
                    Ok(a) => failures.push(format!("status {}: {}", a.status, a.body)),
                    Err(e) => failures.push(format!("{e:?}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    eventually(Duration::from_secs(5), "callers running", || {
        let sent = sent.clone();
        async move { sent.load(Ordering::Relaxed) >= 20 }
    })
    .await;

    let renewed = t.pki.serving();
    t.secret.swap(&[
        ("tls.crt", renewed.cert_pem.as_bytes()),
        ("tls.key", renewed.key_pem.as_bytes()),
    ]);
    eventually(
        Duration::from_secs(10),
        "the renewed certificate served",
        || async { served_certificate(&t).await == renewed.cert_der },
    )
    .await;
    // Keep calling a little after the swap, then stop.
    let after = sent.load(Ordering::Relaxed);
    eventually(Duration::from_secs(5), "calls after the swap", || {
        let sent = sent.clone();
        async move { sent.load(Ordering::Relaxed) >= after + 60 }
    })
    .await;
    stop.store(true, Ordering::Release);
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(caller.await.expect("caller"));
    }
    assert!(failures.is_empty(), "failed requests: {failures:#?}");

    let client = t.client(Http::One);
    let text = metrics_text(&client, &t.url("/metrics")).await;
    assert_eq!(metric(&text, SUCCESSES), 1.0, "{text}");
    assert_eq!(metric(&text, FAILURES), 0.0, "{text}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_pair_never_replaces_the_good_one() {
    let mut t = TestServer::start().await;
    let client = t.client(Http::One);
    let renewed = t.pki.serving();

    // New certificate, old key: the key does not belong to the certificate.
    t.secret.swap(&[
        ("tls.crt", renewed.cert_pem.as_bytes()),
        ("tls.key", t.pair.key_pem.as_bytes()),
    ]);
    eventually(
        Duration::from_secs(10),
        "the refused reload counted",
        || async { metric(&metrics_text(&client, &t.url("/metrics")).await, FAILURES) == 1.0 },
    )
    .await;
    assert_eq!(
        served_certificate(&t).await,
        t.pair.cert_der,
        "the last good pair is still served"
    );

    // Garbage is refused the same way.
    t.secret
        .swap(&[("tls.crt", b"not a certificate"), ("tls.key", b"nor a key")]);
    eventually(
        Duration::from_secs(10),
        "the second refusal counted",
        || async { metric(&metrics_text(&client, &t.url("/metrics")).await, FAILURES) == 2.0 },
    )
    .await;
    assert_eq!(served_certificate(&t).await, t.pair.cert_der);

    // The complete pair is taken.
    t.secret.swap(&[
        ("tls.crt", renewed.cert_pem.as_bytes()),
        ("tls.key", renewed.key_pem.as_bytes()),
    ]);
    eventually(
        Duration::from_secs(10),
        "the complete pair served",
        || async { served_certificate(&t).await == renewed.cert_der },
    )
    .await;
    t.stop().await;
}
