//! Latency as kube-apiserver sees it: Pods created through the real apiserver of
//! `scripts/cluster.sh` (the end-to-end suite's control plane, chart and local `serve`, here the
//! release build), in a namespace nothing acts on, in one the webhook acts on, and in one the
//! generated native policies (`wasm-admission policies`) act on instead, in the same run.
//!
//!   cargo bench --bench apiserver -- [--rate 100] [--seconds 10] [--concurrency 16]
//!
//! Two phases per namespace: creates at a fixed rate (open loop: each create starts at its
//! scheduled time, whether or not the earlier ones have finished), then as many as
//! `--concurrency` creators manage (closed loop), which is the most this machine holds with
//! etcd, the apiserver, the controller manager, `serve` and this client on its cores. It prints
//! the client-side p50/p99 of a create, the apiserver's own time in admission per create
//! (`apiserver_admission_step_admission_duration_seconds`, mutating and validating steps), its
//! histogram of the calls to `/mutate` (`apiserver_admission_webhook_admission_duration_seconds`),
//! and the ratios of each to the namespace nothing acts on.
//! The target: at least 99% of the apiserver's calls to `serve` in its first bucket (≤ 5 ms) at
//! 100 creates/s.
//!
//! The opted-in namespace also gets two more fixed-rate phases, ordinary Pods only and mixed
//! (90% ordinary, 10% Wasm), against the targets of the webhooks' `matchConditions`: an
//! ordinary Pod ≤ 1.1× and the mixed namespace ≤ 2× the baseline's apiserver admission time per
//! create, a Wasm Pod's added admission time ≤ 2 ms per create, ≥ 99% of its calls in the first
//! bucket.

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
const STEP: &str = "apiserver_admission_step_admission_duration_seconds";
/// The label of the namespace the benchmark's copy of the native policies acts on.
const POLICIES_LABEL: &str = "wasm-admission.io/bench-policies";
const MUTATE: (&str, &str) = ("name", "mutate.wasm-admission.io");
/// The label of the namespace the floor's webhook pair acts on (see [`apply_floor_webhooks`]).
const FLOOR_LABEL: &str = "wasm-admission.io/bench-floor";

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
        let (flag, value) = (pair[0].as_str(), pair[1].as_str());
        match flag {
            "--rate" => o.rate = positive(flag, value) as u32,
            "--seconds" => o.seconds = positive(flag, value),
            "--concurrency" => o.concurrency = positive(flag, value) as usize,
            _ => {}
        }
    }
    o
}

fn positive(flag: &str, value: &str) -> u64 {
    match value.parse::<u64>() {
        Ok(n) if n > 0 && n <= u32::MAX as u64 => n,
        _ => {
            eprintln!("{flag} needs a positive whole number, got {value:?}");
            std::process::exit(2);
        }
    }
}

/// Which pods a phase creates: a Wasm pod every `wasm_every` creates (1: all Wasm; 10: the mixed
/// namespace's 10%), ordinary pods otherwise (0: none Wasm).
fn pod(n: u64, wasm_every: u64) -> Pod {
    let wasm = wasm_every != 0 && n.is_multiple_of(wasm_every);
    let annotations = if wasm {
        serde_json::json!({"wasm-admission.io/wasm": "true"})
    } else {
        serde_json::json!({})
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("bench-{n}"),
            "labels": {"app.kubernetes.io/name": "bench"},
            "annotations": annotations
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
    /// `serve`'s own view of its /mutate answers during the phase: (count, sum s).
    served: (f64, f64),
    /// The apiserver's time in its admission steps (mutating and validating) for Pod creates
    /// during the phase, in seconds.
    admission: f64,
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

/// `serve`'s own histogram of its /mutate answers (request read to answer written): (count, sum).
fn served(world: &World) -> (f64, f64) {
    let text = world.webhook().metrics();
    let labels = [("endpoint", "mutate")];
    (
        metric_sum(
            &text,
            "wasm_admission_review_duration_seconds_count",
            &labels,
        ),
        metric_sum(&text, "wasm_admission_review_duration_seconds_sum", &labels),
    )
}

/// The apiserver's time in admission for creates so far, in seconds.
fn admission_seconds(world: &World) -> f64 {
    let text = world.cluster.apiserver_metrics();
    metric_sum(&text, &format!("{STEP}_sum"), &[("operation", "CREATE")])
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
    wasm_every: u64,
) -> Phase {
    use std::sync::atomic::Ordering;
    let before = webhook_calls(world);
    let served_before = served(world);
    let admission_before = admission_seconds(world);
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
                    let ok = api
                        .create(&PostParams::default(), &pod(n, wasm_every))
                        .await
                        .is_ok();
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
                        let ok = api
                            .create(&PostParams::default(), &pod(n, wasm_every))
                            .await
                            .is_ok();
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
    let served_after = served(world);
    let admission = admission_seconds(world) - admission_before;
    Phase {
        admission,
        served: (
            served_after.0 - served_before.0,
            served_after.1 - served_before.1,
        ),
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

fn mean(p: &Phase) -> Duration {
    Duration::from_secs_f64(
        p.latencies.iter().map(Duration::as_secs_f64).sum::<f64>()
            / p.latencies.len().max(1) as f64,
    )
}

fn print_rows(title: &str, off: &Phase, on: &Phase, policies: &Phase) {
    println!("\n{title}");
    println!(
        "  {:<30} {:>10} {:>10} {:>10} {:>12} {:>9} {:>9}",
        "namespace", "creates/s", "p50", "p99", "admission", "failures", "calls"
    );
    let rows = [
        ("nothing acts (baseline)", off),
        ("the webhook", on),
        ("the native policies", policies),
    ];
    for (name, p) in rows {
        println!(
            "  {:<30} {:>10.1} {:>10} {:>10} {:>12} {:>9} {:>9}",
            name,
            p.rate(),
            ms(p.quantile(0.5)),
            ms(p.quantile(0.99)),
            ms(Duration::from_secs_f64(
                p.admission / p.creates.max(1) as f64
            )),
            p.failures,
            p.calls.0
        );
    }
    println!("  (admission: the apiserver's mean time per create in its admission steps)");
    let per_create = |p: &Phase| p.admission / p.creates.max(1) as f64;
    for (name, p) in &rows[1..] {
        println!(
            "  {name} / baseline: p50 {:.2}x, p99 {:.2}x, admission per create {:.2}x, mean create {:.2}x",
            p.quantile(0.5).as_secs_f64() / off.quantile(0.5).as_secs_f64().max(1e-9),
            p.quantile(0.99).as_secs_f64() / off.quantile(0.99).as_secs_f64().max(1e-9),
            per_create(p) / per_create(off).max(1e-9),
            mean(p).as_secs_f64() / mean(off).as_secs_f64().max(1e-9),
        );
    }
    println!(
        "  native policies / webhook: p99 {:.2}x, admission per create {:.2}x",
        policies.quantile(0.99).as_secs_f64() / on.quantile(0.99).as_secs_f64().max(1e-9),
        per_create(policies) / per_create(on).max(1e-9),
    );
    let (calls, first, sum) = on.calls;
    let mean_call = if calls > 0.0 { sum / calls } else { 0.0 };
    println!(
        "  apiserver -> serve: {calls} calls, {:.2}% in the first bucket (<= 5 ms), mean {:.2} ms per call, {:.2} ms per create",
        100.0 * first / calls.max(1.0),
        mean_call * 1e3,
        mean_call * 1e3 * calls / on.creates.max(1) as f64
    );
    let (answers, answer_sum) = on.served;
    println!(
        "  serve's own view: {answers} answers, mean {:.3} ms from request to answer; the rest of the apiserver's {:.2} ms is transport and waiting for a core",
        1e3 * answer_sum / answers.max(1.0),
        mean_call * 1e3
    );
}

/// The opted-in namespace's ordinary and mixed Pods against the baseline, with the targets of
/// the webhooks' matchConditions (README, "Which objects reach the webhook").
/// `off` is the baseline measured next to `ordinary` and `mixed`; `wasm` is the all-Wasm phase
/// with the baseline measured next to it.
fn print_mixed(
    rate: u32,
    off: &Phase,
    (floor, ordinary, mixed): (&Phase, &Phase, &Phase),
    (wasm_off, wasm): (&Phase, &Phase),
) {
    let per_create = |p: &Phase| p.admission / p.creates.max(1) as f64;
    println!(
        "\nopted-in namespace, fixed rate, {rate} creates/s: what cannot be Wasm skips the webhook"
    );
    println!(
        "  {:<34} {:>10} {:>12} {:>9} {:>12}",
        "pods", "creates/s", "admission", "failures", "/mutate calls"
    );
    for (name, p) in [
        ("baseline (namespace not opted in)", off),
        ("floor (a `false` condition, 2 hooks)", floor),
        ("ordinary", ordinary),
        ("mixed (90% ordinary, 10% Wasm)", mixed),
        ("baseline, next to the Wasm phase", wasm_off),
        ("Wasm", wasm),
    ] {
        println!(
            "  {:<34} {:>10.1} {:>12} {:>9} {:>12}",
            name,
            p.rate(),
            ms(Duration::from_secs_f64(per_create(p))),
            p.failures,
            p.calls.0
        );
    }
    let ratio = |p: &Phase| per_create(p) / per_create(off).max(1e-9);
    let added_ms = (per_create(wasm) - per_create(wasm_off)) * 1e3;
    let (calls, first, _) = wasm.calls;
    let first_share = 100.0 * first / calls.max(1.0);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "  ordinary / baseline admission per create: {:.2}x (target <= 1.1x: {})",
        ratio(ordinary),
        verdict(ratio(ordinary) <= 1.1)
    );
    println!(
        "  floor / baseline admission per create: {:.2}x (the least two webhooks with any matchConditions cost); ordinary / floor: {:.2}x",
        ratio(floor),
        per_create(ordinary) / per_create(floor).max(1e-9)
    );
    println!(
        "  mixed / baseline admission per create: {:.2}x (target <= 2x: {})",
        ratio(mixed),
        verdict(ratio(mixed) <= 2.0)
    );
    println!(
        "  a Wasm Pod's added admission time: {added_ms:.2} ms per create (target <= 2 ms: {}); {first_share:.2}% of its /mutate calls in the first bucket (target >= 99%: {})",
        verdict(added_ms <= 2.0),
        verdict(first_share >= 99.0)
    );
}

/// The generated policies, renamed and bound to namespaces with [`POLICIES_LABEL`] only, so
/// they act beside the chart's webhook without overlapping it.
fn apply_bench_policies(world: &World) {
    for mut value in support::generated_policies(None) {
        let name = format!(
            "bench-{}",
            value["metadata"]["name"].as_str().unwrap_or_default()
        );
        value["metadata"]["name"] = serde_json::Value::from(name.clone());
        if value["kind"]
            .as_str()
            .is_some_and(|k| k.ends_with("Binding"))
        {
            value["spec"]["policyName"] = serde_json::Value::from(name);
        } else {
            value["spec"]["matchConstraints"]["namespaceSelector"] =
                serde_json::json!({"matchLabels": {POLICIES_LABEL: "enabled"}});
        }
        world
            .cluster
            .kubectl_in(&["apply", "-f", "-"], &value.to_string())
            .expect_ok("apply the benchmark's policies");
    }
}

/// The floor: a mutating and a validating webhook on Pods whose only match condition is
/// `false`, bound to namespaces with [`FLOOR_LABEL`]. The apiserver never calls them, but it
/// still prepares the condition's input for each (the object, the old object, the request and
/// the namespace converted to CEL values), which is the least any webhook with
/// `matchConditions` costs a create it skips.
fn apply_floor_webhooks(world: &World) {
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let configuration = serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": "bench-floor"},
            "webhooks": [{
                "name": "floor.bench.wasm-admission.io",
                "clientConfig": {"url": "https://127.0.0.1:9/never"},
                "rules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["pods"]
                }],
                "namespaceSelector": {"matchLabels": {FLOOR_LABEL: "enabled"}},
                "matchConditions": [{"name": "never", "expression": "false"}],
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 1
            }]
        });
        world
            .cluster
            .kubectl_in(&["apply", "-f", "-"], &configuration.to_string())
            .expect_ok("apply the floor's webhook configurations");
    }
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
    let pol = world.cluster.namespace("bench-policies", false);
    let floor = world.cluster.namespace("bench-floor", false);
    world
        .cluster
        .kubectl(&[
            "label",
            "namespace",
            &floor,
            &format!("{FLOOR_LABEL}=enabled"),
        ])
        .expect_ok("label the floor's namespace");
    apply_floor_webhooks(&world);
    world
        .cluster
        .kubectl(&[
            "label",
            "namespace",
            &pol,
            &format!("{POLICIES_LABEL}=enabled"),
        ])
        .expect_ok("label the policies' namespace");
    world.apply_runtime_classes();
    apply_bench_policies(&world);
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
        let api_on: Api<Pod> = Api::namespaced(client.clone(), &on);
        let api_pol: Api<Pod> = Api::namespaced(client.clone(), &pol);
        let api_floor: Api<Pod> = Api::namespaced(client, &floor);
        // A short warm-up of the three paths (connections, the webhook's TLS session, the
        // policies' compiled expressions, caches); it also waits until the policies act.
        phase(&world, api_off.clone(), &next, Some(50), 1, 1, 1).await;
        phase(&world, api_on.clone(), &next, Some(50), 1, 1, 1).await;
        let started = Instant::now();
        while !mutated_by_policies(&api_pol, &next).await {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the benchmark's policies never acted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        phase(&world, api_pol.clone(), &next, Some(50), 1, 1, 1).await;
        phase(&world, api_floor.clone(), &next, Some(50), 1, 1, 0).await;

        let fixed_off = phase(
            &world,
            api_off.clone(),
            &next,
            Some(o.rate),
            1,
            o.seconds,
            1,
        )
        .await;
        let fixed_on = phase(&world, api_on.clone(), &next, Some(o.rate), 1, o.seconds, 1).await;
        let fixed_pol = phase(
            &world,
            api_pol.clone(),
            &next,
            Some(o.rate),
            1,
            o.seconds,
            1,
        )
        .await;
        print_rows(
            &format!("fixed rate, {} creates/s", o.rate),
            &fixed_off,
            &fixed_on,
            &fixed_pol,
        );
        // The opted-in namespace with ordinary Pods only, and mixed (90% ordinary, 10% Wasm):
        // what the webhooks' matchConditions spare.
        // The baseline again, next to them: the ratios compare phases minutes apart
        // otherwise, on a machine whose load changes.
        let fixed_off_again = phase(
            &world,
            api_off.clone(),
            &next,
            Some(o.rate),
            1,
            o.seconds,
            1,
        )
        .await;
        let fixed_ordinary =
            phase(&world, api_on.clone(), &next, Some(o.rate), 1, o.seconds, 0).await;
        let fixed_mixed = phase(
            &world,
            api_on.clone(),
            &next,
            Some(o.rate),
            1,
            o.seconds,
            10,
        )
        .await;
        let fixed_floor = phase(&world, api_floor, &next, Some(o.rate), 1, o.seconds, 0).await;
        print_mixed(
            o.rate,
            &fixed_off_again,
            (&fixed_floor, &fixed_ordinary, &fixed_mixed),
            (&fixed_off, &fixed_on),
        );

        let max_off = phase(&world, api_off, &next, None, o.concurrency, o.seconds, 1).await;
        let max_on = phase(&world, api_on, &next, None, o.concurrency, o.seconds, 1).await;
        let max_pol = phase(&world, api_pol, &next, None, o.concurrency, o.seconds, 1).await;
        print_rows(
            &format!("most the machine holds, {} creators", o.concurrency),
            &max_off,
            &max_on,
            &max_pol,
        );
    });
}

/// Whether a Pod created in the policies' namespace came back with the injected class.
async fn mutated_by_policies(api: &Api<Pod>, next: &Arc<std::sync::atomic::AtomicU64>) -> bool {
    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match api.create(&PostParams::default(), &pod(n, 1)).await {
        Ok(created) => created
            .spec
            .and_then(|s| s.runtime_class_name)
            .is_some_and(|c| c == "wasm"),
        Err(_) => false,
    }
}
