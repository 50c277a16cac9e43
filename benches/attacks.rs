//! Attacks 1–3 of issue 23 at full strength against the release `serve` binary, with the chart's
//! connection cap (4096, for its 128Mi memory limit), each beside a well-behaved client:
//!
//! - `baseline`: no attack.
//! - `body_stall` (attack 1): 20 HTTP/1.1 connections, each declaring `Content-Length: 8 MiB`
//!   on `/mutate?timeout=30s`, sending all but the last byte and stalling; each connection the
//!   server ends is opened again.
//! - `bare_tcp` (attack 2): 10,000 TCP connections that never send a ClientHello; each one the
//!   server closes is opened again 100 ms later.
//! - `h2_idle` (attack 3): 20 HTTP/2 connections (preface, SETTINGS) that send no request and
//!   answer the server's PINGs (hyper's client does), pinging every 5 s themselves; opened again
//!   when closed. Runs past the 60 s HTTP/2 idle timeout to see it close them.
//!
//! The well-behaved client opens its HTTP/2 connection before the attack starts (kube-apiserver
//! keeps its connections); a new connection while attack 2 fills the cap would be refused.
//!
//! For each: peak RSS of `serve` (the larger of the highest `VmRSS` sampled every 20 ms and the
//! final `VmHWM`, a fresh process per scenario) against the target of 96 MiB (the chart's 128Mi
//! less 25%), and the well-behaved client's success rate, p50 and p99 (HTTP/2, like
//! kube-apiserver, `--rate` reviews per second), with ratios to the baseline.
//!
//!   cargo bench --bench attacks                  # 30 s per attack (75 s for h2_idle)
//!   cargo bench --bench attacks -- --seconds 10 --rate 50
//!
//! Only 127.0.0.1 is contacted; everything stops by itself. Exits 1 when a target is missed.

#[path = "../tests/server_support/mod.rs"]
mod server_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TARGET_KIB: u64 = 96 * 1024;
const CHART_LIMIT_KIB: u64 = 128 * 1024;

struct Options {
    seconds: u64,
    rate: u64,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 30,
        rate: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => o.seconds = value().parse().expect("--seconds: a number"),
            "--rate" => o.rate = value().parse().expect("--rate: reviews per second"),
            _ => {}
        }
    }
    o
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Attack {
    Baseline,
    BodyStall,
    BareTcp,
    H2Idle,
}

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::Baseline => "baseline",
            Attack::BodyStall => "body_stall (1)",
            Attack::BareTcp => "bare_tcp (2)",
            Attack::H2Idle => "h2_idle (3)",
        }
    }
}

struct Figures {
    attack: Attack,
    peak_kib: u64,
    start_kib: u64,
    sent: u64,
    ok: u64,
    p50_ms: f64,
    p99_ms: f64,
    attacker_connections: u64,
    note: String,
}

fn main() {
    // cargo test --all-targets would run this too: only under cargo bench (which passes --bench).
    if !std::env::args().any(|a| a == "--bench") {
        println!("attacks: run with cargo bench --bench attacks");
        return;
    }
    raise_fd_limit();
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut all = Vec::new();
    for attack in [
        Attack::Baseline,
        Attack::BodyStall,
        Attack::BareTcp,
        Attack::H2Idle,
    ] {
        let seconds = if attack == Attack::H2Idle {
            o.seconds.max(75)
        } else {
            o.seconds
        };
        let figures = runtime.block_on(scenario(attack, seconds, o.rate));
        print_one(&figures);
        all.push(figures);
    }
    let ok = report(&all);
    std::process::exit(if ok { 0 } else { 1 });
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn scenario(attack: Attack, seconds: u64, rate: u64) -> Figures {
    let pki = Pki::new("attacks CA");
    let pair = pki.serving();
    let secret = SecretDir::new(&[
        ("tls.crt", pair.cert_pem.as_bytes()),
        ("tls.key", pair.key_pem.as_bytes()),
    ]);
    // The chart's flags (deploy/helm/wasm-admission/templates/deployment.yaml, default values).
    let spawned = spawn_serve(&[
        "--tls-cert-file",
        secret.path("tls.crt").to_str().expect("path"),
        "--tls-private-key-file",
        secret.path("tls.key").to_str().expect("path"),
        "--namespace",
        "wasm-admission",
        "--max-connections",
        "4096",
    ]);
    let pid = spawned.child.id();
    let addr = spawned.addr;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_kib = proc_status_kib(pid, "VmRSS");

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(start_kib));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status_kib(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // The well-behaved client's connection exists before the attack, as kube-apiserver's kept
    // HTTP/2 connection does.
    let client = apiserver_client(&pki.ca_pem, addr, Http::Two);
    let warm = post_review(
        &client,
        &format!("https://{SERVICE_HOST}:{}/mutate", addr.port()),
        review("warm-up"),
    )
    .await;
    assert!(
        matches!(&warm, Ok(a) if a.status == 200),
        "warm-up review: {warm:?}"
    );
    let attackers = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let ca = pki.ca_pem.clone();
    match attack {
        Attack::Baseline => {}
        Attack::BodyStall => {
            for _ in 0..20 {
                tasks.push(tokio::spawn(body_staller(
                    addr,
                    ca.clone(),
                    stop.clone(),
                    attackers.clone(),
                )));
            }
        }
        Attack::BareTcp => {
            for _ in 0..10_000 {
                tasks.push(tokio::spawn(bare_tcp(
                    addr,
                    stop.clone(),
                    attackers.clone(),
                )));
            }
        }
        Attack::H2Idle => {
            for _ in 0..20 {
                tasks.push(tokio::spawn(h2_idler(
                    addr,
                    ca.clone(),
                    stop.clone(),
                    attackers.clone(),
                )));
            }
        }
    }
    // Let the attack reach full strength.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sent, ok, mut latencies) = good_client(client, addr, seconds, rate).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    for t in &tasks {
        t.abort();
    }
    let hwm = proc_status_kib(pid, "VmHWM");
    let peak_kib = peak.load(Ordering::Relaxed).max(hwm);
    let open_fds = spawned.open_fds();
    drop(spawned);
    latencies.sort_unstable_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Figures {
        attack,
        peak_kib,
        start_kib,
        sent,
        ok,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        attacker_connections: attackers.load(Ordering::Relaxed),
        note: format!("serve held {open_fds} descriptors at the end"),
    }
}

/// `rate` reviews a second for `seconds`, over one HTTP/2 client; each answer must be a 200
/// AdmissionReview with the uid echoed.
async fn good_client(
    client: reqwest::Client,
    addr: SocketAddr,
    seconds: u64,
    rate: u64,
) -> (u64, u64, Vec<f64>) {
    let url = format!("https://{SERVICE_HOST}:{}/mutate", addr.port());
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        n += 1;
        let (client, url) = (client.clone(), url.clone());
        pending.push(tokio::spawn(async move {
            let uid = format!("good-{n}");
            let body = review(&uid);
            let started = Instant::now();
            let answer = post_review(&client, &url, body).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let ok = matches!(&answer, Ok(a) if a.status == 200 && a.body["response"]["uid"] == uid.as_str());
            (ok, ms)
        }));
    }
    let mut ok = 0;
    let mut latencies = Vec::new();
    for p in pending {
        if let Ok((good, ms)) = p.await {
            latencies.push(ms);
            ok += u64::from(good);
        }
    }
    (n, ok, latencies)
}

fn review(uid: &str) -> String {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "shop",
            "name": "web",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"template": {"spec": {
                    "runtimeClassName": "wasmtime",
                    "containers": [{"name": "app", "image": "ghcr.io/acme/web:1.0"}]
                }}}
            }
        }
    })
    .to_string()
}

async fn tls_connect(
    addr: SocketAddr,
    ca: &str,
    alpn: &[u8],
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_bytes()).flatten() {
        roots.add(cert).ok()?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from(SERVICE_HOST).ok()?;
    connector.connect(name, tcp).await.ok()
}

/// Attack 1: declare 8 MiB, send all but the last byte, stall; again when the server ends it.
async fn body_staller(addr: SocketAddr, ca: String, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    const BODY: usize = 8 * 1024 * 1024;
    let chunk = vec![b' '; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Some(mut tls) = tls_connect(addr, &ca, b"http/1.1").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        let head = format!(
            "POST /mutate?timeout=30s HTTP/1.1\r\nHost: {SERVICE_HOST}\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
        );
        if tls.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut sent = 0;
        while sent < BODY - 1 {
            let n = chunk.len().min(BODY - 1 - sent);
            if tls.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            sent += n;
        }
        // Stall: wait for the server's answer or close, then start over.
        let mut buf = [0u8; 4096];
        while let Ok(n) = tls.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Attack 2: a TCP connection that never sends anything; again 100 ms after the server closes it.
async fn bare_tcp(addr: SocketAddr, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        let _ = tcp.read(&mut buf).await;
        drop(tcp);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Attack 3: an HTTP/2 connection that never sends a request and keeps answering (and sending)
/// PINGs; again when the server closes it.
async fn h2_idler(addr: SocketAddr, ca: String, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(tls) = tls_connect(addr, &ca, b"h2").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Empty<hyper::body::Bytes>>(TokioIo::new(tls))
            .await;
        let Ok((_send, connection)) = handshake else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        let _ = connection.await;
        println!(
            "  h2_idle: the server closed an idle HTTP/2 connection after {:.1} s",
            opened.elapsed().as_secs_f64()
        );
    }
}

fn print_one(f: &Figures) {
    println!(
        "attacks: {:<16} peak RSS {:>6.1} MiB (start {:.1}), good client {}/{} ok, p50 {:.2} ms, p99 {:.2} ms, attacker connections opened {}; {}",
        f.attack.name(),
        f.peak_kib as f64 / 1024.0,
        f.start_kib as f64 / 1024.0,
        f.ok,
        f.sent,
        f.p50_ms,
        f.p99_ms,
        f.attacker_connections,
        f.note
    );
}

fn report(all: &[Figures]) -> bool {
    let base = &all[0];
    println!();
    println!(
        "| scenario | peak RSS of serve | of the chart's 128Mi | under 96 MiB | good client ok | p50 | p99 | p99 / baseline | peak RSS / baseline |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut ok = true;
    for f in all {
        let under = f.peak_kib < TARGET_KIB;
        let rate = 100.0 * f.ok as f64 / f.sent.max(1) as f64;
        ok &= under && rate >= 99.0;
        println!(
            "| {} | {:.1} MiB | {:.0}% | {} | {:.1}% ({}/{}) | {:.2} ms | {:.2} ms | {:.2} | {:.2} |",
            f.attack.name(),
            f.peak_kib as f64 / 1024.0,
            100.0 * f.peak_kib as f64 / CHART_LIMIT_KIB as f64,
            if under { "yes" } else { "**no**" },
            rate,
            f.ok,
            f.sent,
            f.p50_ms,
            f.p99_ms,
            f.p99_ms / base.p99_ms,
            f.peak_kib as f64 / base.peak_kib.max(1) as f64,
        );
    }
    ok
}
