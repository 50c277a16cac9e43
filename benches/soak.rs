//! Soak: mixed load against the real `serve` binary on loopback for a long time, with a
//! certificate rotation every 30 s and configuration reloads in between, reporting failed
//! requests (target 0), RSS growth (first minute against last minute) and p99 drift.
//!
//!   cargo bench --bench soak                        # 10 minutes
//!   cargo bench --bench soak -- --duration 60s      # one minute
//!   cargo bench --bench soak -- --duration 10m --rate 300 --rotate 30s
//!
//! It runs only under `cargo bench` (which passes `--bench`); `cargo test --all-targets` skips it.
//!
//! The load: 8 workers at `--rate` requests per second in total, half over HTTP/1.1 (kept-alive
//! connections) and half over HTTP/2, each making a new client (new connections, new TLS
//! handshakes) every 10 s. Requests cycle through six kinds: a Wasm Deployment and a Wasm Pod
//! on /mutate (patched), the Wasm Deployment on /validate (no patch), a privileged Wasm
//! Deployment on /mutate and /validate (denied) and a plain Deployment (unchanged). Every answer is
//! checked, not only its status. Only 127.0.0.1 is contacted; everything stops by itself.
//!
//! Figures go to standard output and to `target/soak-report.json`.

#[path = "../tests/server_support/mod.rs"]
mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_support::*;

struct Options {
    duration: Duration,
    rate: u64,
    rotate: Duration,
}

fn parse_duration(text: &str) -> Duration {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {text}"));
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "ms" => Duration::from_millis(n),
        _ => panic!("not a duration: {text} (use 60s, 10m)"),
    }
}

fn options() -> Options {
    let mut o = Options {
        duration: Duration::from_secs(600),
        rate: 300,
        rotate: Duration::from_secs(30),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--duration" => o.duration = parse_duration(&value()),
            "--rate" => o.rate = value().parse().expect("--rate: requests per second"),
            "--rotate" => o.rotate = parse_duration(&value()),
            // cargo bench passes --bench (and a filter, if any): not ours.
            _ => {}
        }
    }
    o
}

/// One kind of request and the answer it must get.
#[derive(Clone)]
struct Case {
    name: &'static str,
    path: &'static str,
    body: String,
    uid: String,
    allowed: bool,
    patched: bool,
}

fn cases() -> Vec<Case> {
    let plain = {
        let object: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/deployment-plain.json"
            ))
            .expect("fixture"),
        )
        .expect("JSON");
        let mut review: Value = serde_json::from_str(DEPLOYMENT_CREATE).expect("review");
        review["request"]["uid"] = json!("50a50a50-0000-4000-8000-000000000001");
        review["request"]["name"] = object["metadata"]["name"].clone();
        review["request"]["object"] = object;
        review.to_string()
    };
    let case = |name, path, body: &str, allowed, patched| Case {
        name,
        path,
        body: body.to_string(),
        uid: uid_of(body),
        allowed,
        patched,
    };
    vec![
        case("wasm-deployment", "/mutate", DEPLOYMENT_CREATE, true, true),
        case("wasm-pod", "/mutate", POD_CREATE, true, true),
        case(
            "wasm-deployment",
            "/validate",
            DEPLOYMENT_CREATE,
            true,
            false,
        ),
        case("privileged", "/mutate", PRIVILEGED_CREATE, false, false),
        case("privileged", "/validate", PRIVILEGED_CREATE, false, false),
        case("plain-deployment", "/mutate", &plain, true, false),
    ]
}

/// One request's outcome: seconds since the start, latency in µs, and the failure if any.
struct Sample {
    at: f64,
    micros: u64,
    failure: Option<String>,
}

async fn worker(
    id: usize,
    ca_pem: String,
    addr: std::net::SocketAddr,
    per_second: f64,
    until: Instant,
    started: Instant,
    cases: Arc<Vec<Case>>,
) -> Vec<Sample> {
    let http = if id.is_multiple_of(2) {
        Http::One
    } else {
        Http::Two
    };
    let base = format!("https://{SERVICE_HOST}:{}", addr.port());
    let mut samples = Vec::new();
    let mut client = apiserver_client(&ca_pem, addr, http);
    let mut client_since = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = id;
    while Instant::now() < until {
        ticker.tick().await;
        if client_since.elapsed() > Duration::from_secs(10) {
            client = apiserver_client(&ca_pem, addr, http);
            client_since = Instant::now();
        }
        let case = &cases[n % cases.len()];
        n += 1;
        let sent = Instant::now();
        let result = post_review(&client, &format!("{base}{}", case.path), case.body.clone()).await;
        let micros = sent.elapsed().as_micros() as u64;
        let failure = match result {
            Err(e) => Some(format!("{} {}: {e}", case.name, case.path)),
            Ok(a) if a.status != 200 => {
                Some(format!("{} {}: HTTP {}", case.name, case.path, a.status))
            }
            Ok(a) => {
                let r = &a.body["response"];
                if r["uid"] != case.uid.as_str()
                    || r["allowed"] != case.allowed
                    || r.get("patch").is_some() != case.patched
                {
                    Some(format!("{} {}: wrong answer {r}", case.name, case.path))
                } else {
                    None
                }
            }
        };
        samples.push(Sample {
            at: sent.duration_since(started).as_secs_f64(),
            micros,
            failure,
        });
    }
    samples
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Default, Clone, Copy)]
struct Minute {
    requests: usize,
    failed: usize,
    p50: u64,
    p99: u64,
    max: u64,
    rss_mean_kib: u64,
    rss_max_kib: u64,
}

fn main() {
    // `cargo test --all-targets` (scripts/test.sh) runs bench targets too, without `--bench`:
    // a ten-minute soak is no test, so it only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: not run (run it with `cargo bench --bench soak`)");
        return;
    }
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(soak(o));
    std::process::exit(if ok { 0 } else { 1 });
}

async fn soak(o: Options) -> bool {
    let pki = Pki::new("soak CA");
    let first = pki.serving();
    let mut secret = SecretDir::new(&[
        ("tls.crt", first.cert_pem.as_bytes()),
        ("tls.key", first.key_pem.as_bytes()),
    ]);
    let mut configmap = SecretDir::new(&[("config.yaml", b"runtimeClassName: wasm\n")]);
    let spawned = spawn_serve(&[
        "--tls-cert-file",
        secret.path("tls.crt").to_str().expect("path"),
        "--tls-private-key-file",
        secret.path("tls.key").to_str().expect("path"),
        "--config",
        configmap.path("config.yaml").to_str().expect("path"),
        "--namespace",
        "wasm-admission",
    ]);
    let pid = spawned.child.id();
    let addr = spawned.addr;
    println!(
        "soak: serve pid {pid} on {addr}; {:?} at {} requests/s, rotation every {:?}",
        o.duration, o.rate, o.rotate
    );

    let started = Instant::now();
    let until = started + o.duration;
    let cases = Arc::new(cases());
    let workers = 8;
    let mut tasks = Vec::new();
    for id in 0..workers {
        tasks.push(tokio::spawn(worker(
            id,
            pki.ca_pem.clone(),
            addr,
            o.rate as f64 / workers as f64,
            until,
            started,
            cases.clone(),
        )));
    }

    // RSS once a second, and the log lines drained (counted).
    let rss: Arc<std::sync::Mutex<Vec<(f64, u64)>>> = Arc::default();
    let log_counts: [AtomicU64; 5] = Default::default();
    // Rotations and reloads, until the end.
    let mut rotations = 0;
    let mut rotation_misses = 0;
    let mut config_reloads = 0;
    let mut config_refusals_sent = 0;
    let mut next_rotation = started + o.rotate;
    let mut next_config = started + o.rotate / 2;
    let mut next_sample = started;
    let mut invalid_pending = false;
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_sample {
            let kib = proc_status_kib(pid, "VmRSS");
            rss.lock()
                .expect("rss")
                .push((now.duration_since(started).as_secs_f64(), kib));
            for line in spawned.take_logs() {
                for (i, says) in [
                    "serving a new certificate",
                    "configuration reloaded",
                    "refused the changed configuration",
                    "panicked",
                    "\"level\":\"ERROR\"",
                ]
                .iter()
                .enumerate()
                {
                    if line.contains(says) {
                        log_counts[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            next_sample += Duration::from_secs(1);
        }
        if now >= next_rotation {
            let renewed = pki.serving();
            secret.swap(&[
                ("tls.crt", renewed.cert_pem.as_bytes()),
                ("tls.key", renewed.key_pem.as_bytes()),
            ]);
            rotations += 1;
            // Within 3 s a new connection is served the renewed certificate.
            let mut seen = false;
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let fresh = apiserver_client(&pki.ca_pem, addr, Http::One);
                let url = format!("https://{SERVICE_HOST}:{}/healthz", addr.port());
                if let Ok(r) = fresh.get(&url).send().await
                    && r.extensions()
                        .get::<reqwest::tls::TlsInfo>()
                        .and_then(|i| i.peer_certificate())
                        == Some(&renewed.cert_der[..])
                {
                    seen = true;
                    break;
                }
            }
            if !seen {
                rotation_misses += 1;
            }
            next_rotation += o.rotate;
        }
        if now >= next_config {
            // Alternate the runtime class; every fourth change is an invalid file (refused, the
            // last good one stays), put right at the next change.
            let text: &[u8] = if invalid_pending {
                invalid_pending = false;
                b"runtimeClassName: wasm\n"
            } else if config_reloads % 4 == 3 {
                invalid_pending = true;
                config_refusals_sent += 1;
                b"runtimeClassName: wasm\nresources:\n  requests: {cpu: '2'}\n  limits: {cpu: '1'}\n"
            } else if config_reloads % 2 == 0 {
                b"runtimeClassName: wasmtime\notel:\n  endpoint: http://collector:4317\n"
            } else {
                b"runtimeClassName: wasm\n"
            };
            configmap.swap(&[("config.yaml", text)]);
            config_reloads += 1;
            next_config += o.rotate;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();

    // Per-minute figures (the last, partial minute folds into the one before when short).
    let minutes = ((o.duration.as_secs() as f64) / 60.0).ceil().max(1.0) as usize;
    let mut per_minute = vec![Minute::default(); minutes];
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); minutes];
    for s in &samples {
        let m = ((s.at / 60.0) as usize).min(minutes - 1);
        per_minute[m].requests += 1;
        if s.failure.is_some() {
            per_minute[m].failed += 1;
        } else {
            latencies[m].push(s.micros);
        }
    }
    let rss = rss.lock().expect("rss").clone();
    for (m, minute) in per_minute.iter_mut().enumerate() {
        let l = &mut latencies[m];
        l.sort_unstable();
        minute.p50 = percentile(l, 50.0);
        minute.p99 = percentile(l, 99.0);
        minute.max = l.last().copied().unwrap_or(0);
        let in_minute: Vec<u64> = rss
            .iter()
            .filter(|(at, _)| ((*at / 60.0) as usize).min(minutes - 1) == m)
            .map(|(_, kib)| *kib)
            .collect();
        if !in_minute.is_empty() {
            minute.rss_mean_kib = in_minute.iter().sum::<u64>() / in_minute.len() as u64;
            minute.rss_max_kib = in_minute.iter().copied().max().unwrap_or(0);
        }
    }
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.failure.is_some()).collect();
    let first = per_minute[0];
    let last = per_minute[minutes - 1];
    let counts: Vec<u64> = log_counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();

    println!("\nminute  requests  failed   p50 µs   p99 µs   max µs   RSS mean KiB  RSS max KiB");
    for (m, x) in per_minute.iter().enumerate() {
        println!(
            "{:>6}  {:>8}  {:>6}  {:>7}  {:>7}  {:>7}  {:>12}  {:>11}",
            m + 1,
            x.requests,
            x.failed,
            x.p50,
            x.p99,
            x.max,
            x.rss_mean_kib,
            x.rss_max_kib
        );
    }
    println!(
        "\nrequests: {} in {elapsed:.0} s ({:.0}/s); failed: {}",
        samples.len(),
        samples.len() as f64 / elapsed,
        failed.len()
    );
    for f in failed.iter().take(10) {
        println!("  at {:.1}s: {}", f.at, f.failure.as_deref().unwrap_or(""));
    }
    println!(
        "RSS: first minute mean {} KiB (max {}), last minute mean {} KiB (max {}): {:+.1}%",
        first.rss_mean_kib,
        first.rss_max_kib,
        last.rss_mean_kib,
        last.rss_max_kib,
        100.0 * (last.rss_mean_kib as f64 - first.rss_mean_kib as f64)
            / first.rss_mean_kib.max(1) as f64
    );
    println!(
        "p99: first minute {} µs, last minute {} µs",
        first.p99, last.p99
    );
    println!(
        "certificate rotations: {rotations} ({} seen served within 3 s, {} logged); configuration \
         changes: {config_reloads} ({} logged as reloaded, {} invalid ones sent, {} logged as refused); \
         panics logged: {}; error lines: {}",
        rotations - rotation_misses,
        counts[0],
        counts[1],
        config_refusals_sent,
        counts[2],
        counts[3],
        counts[4]
    );

    let report = json!({
        "duration_seconds": elapsed,
        "rate_target": o.rate,
        "requests": samples.len(),
        "failed": failed.len(),
        "failures": failed.iter().take(20).map(|f| f.failure.clone()).collect::<Vec<_>>(),
        "rss_kib": {"first_minute_mean": first.rss_mean_kib, "first_minute_max": first.rss_max_kib,
                    "last_minute_mean": last.rss_mean_kib, "last_minute_max": last.rss_max_kib},
        "p99_us": {"first_minute": first.p99, "last_minute": last.p99},
        "per_minute": per_minute.iter().map(|x| json!({"requests": x.requests, "failed": x.failed,
            "p50_us": x.p50, "p99_us": x.p99, "max_us": x.max, "rss_mean_kib": x.rss_mean_kib,
            "rss_max_kib": x.rss_max_kib})).collect::<Vec<_>>(),
        "rotations": rotations, "rotation_misses": rotation_misses,
        "config_changes": config_reloads, "invalid_configs_sent": config_refusals_sent,
        "logged": {"certificates_served": counts[0], "configs_reloaded": counts[1],
                   "configs_refused": counts[2], "panics": counts[3], "errors": counts[4]},
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/soak-report.json");
    if let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap_or_default()) {
        eprintln!("cannot write {path}: {e}");
    } else {
        println!("report: {path}");
    }
    failed.is_empty() && rotation_misses == 0 && counts[3] == 0
}
