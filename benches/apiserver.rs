//! Latency as kube-apiserver sees it: Pods created through the real apiserver of
//! `scripts/cluster.sh` (the end-to-end suite's control plane, chart and local `serve`, here the
//! release build), in a namespace the webhook does not act on and in one that opted in, in the
//! same run.
//!
//!   cargo bench --bench apiserver -- [--rate 100] [--seconds 10] [--concurrency 16]
//!
//! Two phases per namespace: creates at a fixed rate (open loop: each create starts at its
//! scheduled time, whether or not the earlier ones have finished), then as many as
//! `--concurrency` creators manage (closed loop), which is the most this machine holds with
//! etcd, the apiserver, the controller manager, `serve` and this client on its cores. It prints
//! the client-side p50/p99 of a create, the apiserver's own histogram of the calls to `/mutate`
//! (`apiserver_admission_webhook_admission_duration_seconds`), and the webhook's share of each.
//! The target: at least 99% of the apiserver's calls to `serve` in its first bucket (≤ 5 ms) at
//! 100 creates/s.

#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use support::{World, metric_sum};

const HISTOGRAM: &str = "apiserver_admission_webhook_admission_duration_seconds";
const MUTATE: (&str, &str) = ("name", "mutate.wasm-admission.io");

struct Options {
    rate: u32,
    seconds: u64,
    concurrency: usize,
}

fn options() -> Options {
    let mut o = Options {
        rate: 100,
        seconds: 10,
        concurrency: 16,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = &pair[1];
        // Diverges, so each use below can stand for a number of its own type.
        let bad = || -> ! { panic!("{} needs a positive number, got {value:?}", pair[0]) };
        match pair[0].as_str() {
            "--rate" => {
                o.rate = value
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .unwrap_or_else(|| bad())
            }
            "--seconds" => {
                o.seconds = value
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .unwrap_or_else(|| bad())
            }
            "--concurrency" => {
                o.concurrency = value
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .unwrap_or_else(|| bad())
            }
            _ => {}
        }
    }
    o
}

fn pod(n: u64) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("bench-{n}"),
            "labels": {"app.kubernetes.io/name": "bench"},
            "annotations": {"wasm-admission.io/wasm": "true"}
        },
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]}
    }))
    .expect("pod")
}

/// What one phase measured.
struct Phase {
    creates: usize,
    failures: usize,
    elapsed: Duration,
    /// Client-side latencies of the successful creates, sorted.
    latencies: Vec<Duration>,
    /// The apiserver's calls to /mutate during the phase: (count, in the first bucket, sum s).
    calls: (f64, f64, f64),
}

impl Phase {
    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    fn rate(&self) -> f64 {
        self.creates as f64 / self.elapsed.as_secs_f64()
    }
}

fn webhook_calls(world: &World) -> (f64, f64, f64) {
    let text = world.cluster.apiserver_metrics();
    (
        metric_sum(&text, &format!("{HISTOGRAM}_count"), &[MUTATE]),
        metric_sum(
            &text,
            &format!("{HISTOGRAM}_bucket"),
            &[MUTATE, ("le", "0.005")],
        ),
        metric_sum(&text, &format!("{HISTOGRAM}_sum"), &[MUTATE]),
    )
}

/// Creates Pods in `ns`: at `rate` per second (open loop) when given, else with `concurrency`
/// creators back to back (closed loop), for `seconds`.
async fn phase(
    world: &World,
    api: Api<Pod>,
    next: &Arc<std::sync::atomic::AtomicU64>,
    rate: Option<u32>,
    concurrency: usize,
    seconds: u64,
) -> Phase {
    use std::sync::atomic::Ordering;
    let before = webhook_calls(world);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    match rate {
        Some(rate) => {
            let total = rate as u64 * seconds;
            for i in 0..total {
                let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(at.into()).await;
                let (api, n) = (api.clone(), next.fetch_add(1, Ordering::Relaxed));
                tasks.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = api.create(&PostParams::default(), &pod(n)).await.is_ok();
                    vec![(ok, t.elapsed())]
                }));
            }
        }
        None => {
            for _ in 0..concurrency {
                let (api, next) = (api.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut results = Vec::new();
                    while Instant::now() < deadline {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let t = Instant::now();
                        let ok = api.create(&PostParams::default(), &pod(n)).await.is_ok();
                        results.push((ok, t.elapsed()));
                    }
                    results
                }));
            }
        }
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        for (ok, latency) in task.await.expect("creator") {
            if ok {
                latencies.push(latency);
            } else {
                failures += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let after = webhook_calls(world);
    Phase {
        creates: latencies.len() + failures,
        failures,
        elapsed,
        latencies,
        calls: (after.0 - before.0, after.1 - before.1, after.2 - before.2),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn print_pair(title: &str, off: &Phase, on: &Phase) {
    println!("\n{title}");
    println!(
        "  {:<28} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "namespace", "creates/s", "p50", "p99", "failures", "calls"
    );
    for (name, p) in [
        ("not opted in (no webhook)", off),
        ("opted in (webhook)", on),
    ] {
        println!(
            "  {:<28} {:>10.1} {:>10} {:>10} {:>9} {:>9}",
            name,
            p.rate(),
            ms(p.quantile(0.5)),
            ms(p.quantile(0.99)),
            p.failures,
            p.calls.0
        );
    }
    let (calls, first, sum) = on.calls;
    let mean_call = if calls > 0.0 { sum / calls } else { 0.0 };
    let per_create = mean_call * calls / on.creates.max(1) as f64;
    println!(
        "  apiserver -> serve: {calls} calls, {:.2}% in the first bucket (<= 5 ms), mean {:.2} ms per call, {:.2} ms per create",
        100.0 * first / calls.max(1.0),
        mean_call * 1e3,
        per_create * 1e3
    );
    println!(
        "  with the webhook / without: p50 {:.2}x, p99 {:.2}x; the webhook calls are {:.1}% of the mean create ({} with the webhook)",
        on.quantile(0.5).as_secs_f64() / off.quantile(0.5).as_secs_f64().max(1e-9),
        on.quantile(0.99).as_secs_f64() / off.quantile(0.99).as_secs_f64().max(1e-9),
        100.0 * per_create
            / (on.latencies.iter().map(Duration::as_secs_f64).sum::<f64>()
                / on.latencies.len().max(1) as f64)
                .max(1e-9),
        ms(Duration::from_secs_f64(
            on.latencies.iter().map(Duration::as_secs_f64).sum::<f64>()
                / on.latencies.len().max(1) as f64
        )),
    );
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("apiserver: not run (run it with `cargo bench --bench apiserver`)");
        return;
    }
    let o = options();
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "apiserver latency benchmark: {} creates/s for {} s, then {} creators back to back for {} s, per namespace",
        o.rate, o.seconds, o.concurrency, o.seconds
    );
    let world = World::start();
    let off = world.cluster.namespace("bench-off", false);
    let on = world.cluster.namespace("bench-on", true);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let kubeconfig = Kubeconfig::read_from(&world.cluster.kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("client config");
        let client = kube::Client::try_from(config).expect("client");
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let api_off: Api<Pod> = Api::namespaced(client.clone(), &off);
        let api_on: Api<Pod> = Api::namespaced(client, &on);
        // A short warm-up of both paths (connections, the webhook's TLS session, caches).
        phase(&world, api_off.clone(), &next, Some(50), 1, 1).await;
        phase(&world, api_on.clone(), &next, Some(50), 1, 1).await;

        let fixed_off = phase(&world, api_off.clone(), &next, Some(o.rate), 1, o.seconds).await;
        let fixed_on = phase(&world, api_on.clone(), &next, Some(o.rate), 1, o.seconds).await;
        print_pair(
            &format!("fixed rate, {} creates/s", o.rate),
            &fixed_off,
            &fixed_on,
        );

        let max_off = phase(&world, api_off, &next, None, o.concurrency, o.seconds).await;
        let max_on = phase(&world, api_on, &next, None, o.concurrency, o.seconds).await;
        print_pair(
            &format!("most the machine holds, {} creators", o.concurrency),
            &max_off,
            &max_on,
        );
    });
}
