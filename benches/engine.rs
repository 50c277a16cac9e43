//! The engine on realistic reviews, next to the floor: serde_json parse plus serialize of the
//! same review. Prints each case's time and its ratio to the floor.
//!
//! cargo bench --bench engine

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use serde_json::{Value, json};
use wasm_admission::core::config::Config;
use wasm_admission::core::engine::{Endpoint, Engine, Facts};
use wasm_admission::core::review;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn review_body(object: &Value) -> Vec<u8> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = wasm_admission::core::kinds::split_api_version(
        object["apiVersion"].as_str().unwrap_or("v1"),
    );
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"],
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "8d7c6b5a", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .expect("serialize")
}

/// The realistic review cases.
pub fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let small_pod = fixture("pod-wasm");
    let mut deployment3 = fixture("deployment-wasmedge");
    deployment3["metadata"]["annotations"]["wasm-admission.io/runtime-class"] = json!("wasmedge");
    let mut pod30 = fixture("pod-wasm");
    let template = pod30["spec"]["containers"][0].clone();
    pod30["spec"]["containers"] = Value::Array(
        (0..30)
            .map(|i| {
                let mut c = template.clone();
                c["name"] = json!(format!("app-{i}"));
                c
            })
            .collect(),
    );
    vec![
        ("small Wasm Pod", review_body(&small_pod)),
        ("Deployment, 3 containers", review_body(&deployment3)),
        ("Pod, 30 containers", review_body(&pod30)),
        ("denied Pod", review_body(&fixture("pod-wasm-privileged"))),
        ("non-Wasm Pod", review_body(&fixture("pod-plain"))),
    ]
}

fn floor(body: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(body).expect("json");
    serde_json::to_vec(&v).expect("serialize")
}

fn engine_once(engine: &Engine, body: &[u8]) -> Vec<u8> {
    review::handle(engine, body, Endpoint::Mutate, &Facts::default())
        .expect("answered")
        .body
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(Config::default()).expect("engine");
    let mut group = c.benchmark_group("review");
    for (name, body) in cases() {
        group.bench_function(format!("floor (parse+serialize): {name}"), |b| {
            b.iter(|| floor(black_box(&body)))
        });
        group.bench_function(format!("engine: {name}"), |b| {
            b.iter(|| engine_once(&engine, black_box(&body)))
        });
    }
    group.finish();
}

/// Ratios measured in this process, printed after criterion's own report.
fn ratios() {
    let engine = Engine::new(Config::default()).expect("engine");
    println!(
        "\n{:<28} {:>8} {:>12} {:>12} {:>8}",
        "case", "bytes", "floor µs", "engine µs", "ratio"
    );
    for (name, body) in cases() {
        let per = |f: &dyn Fn() -> Vec<u8>| {
            for _ in 0..200 {
                black_box(f());
            }
            let n = 2000;
            let start = Instant::now();
            for _ in 0..n {
                black_box(f());
            }
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        };
        let f = per(&|| floor(&body));
        let e = per(&|| engine_once(&engine, &body));
        println!(
            "{name:<28} {:>8} {f:>12.2} {e:>12.2} {:>8.2}",
            body.len(),
            e / f
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
