//! What registry inspection (behaviour.md §3 rule 6) adds to a review, measured in one process against
//! a local `docker-registry`:
//!
//! - baseline: a Wasm Deployment detected by annotation (no lookup), through the review door;
//! - cached: the same Deployment detected from its image, answered from the inspector's cache;
//! - uncached: the same, with every lookup going to the registry (cacheTTL 0): a Wasm image
//!   decided by its manifest (1 GET), and an ordinary image that needs its config too (2 GETs).
//!
//! Each time is per review (decode, lookups, decide, encode) and printed with its ratio to the
//! baseline.
//!
//! cargo bench --bench registry

#[path = "../tests/registry_support/mod.rs"]
mod registry_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasm_admission::adapters::registry::Inspector;
use wasm_admission::core::config::{Config, RegistryConfig};
use wasm_admission::core::detection::ImageClassifier;
use wasm_admission::core::engine::{Endpoint, Engine, Facts};
use wasm_admission::core::review;

use registry_support::*;

fn review_body(image: &str, annotated: bool) -> Vec<u8> {
    let mut object: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/deployment-plain.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture"),
    )
    .expect("json");
    object["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    if annotated {
        object["metadata"]["annotations"] = json!({"wasm-admission.io/wasm": "true"});
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "frontend", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": object, "oldObject": null, "dryRun": false
        }
    }))
    .expect("serialize")
}

/// One review as the `serve` door answers it: decode, look up, decide, encode.
async fn one_review(engine: &Engine, inspector: Option<&Inspector>, body: &[u8]) -> usize {
    let decoded = review::decode(body).expect("review");
    let facts = match inspector {
        Some(inspector) => {
            let images = engine.registry_images(&decoded.request(), None);
            Some(
                inspector
                    .inspect(images.iter().map(String::as_str), Duration::from_secs(2))
                    .await,
            )
        }
        None => None,
    };
    let facts = Facts {
        registry: facts.as_ref().map(|f| f as &dyn ImageClassifier),
        runtime_classes: None,
        nodes: None,
        runtime_classes_pending: false,
    };
    let reply = review::answer(engine, &decoded, Endpoint::Mutate, &facts).expect("answered");
    assert!(
        reply.decision.warnings.is_empty(),
        "{:?}",
        reply.decision.warnings
    );
    reply.body.len()
}

async fn per_review_us(
    engine: &Engine,
    inspector: Option<&Inspector>,
    body: &[u8],
    n: usize,
) -> f64 {
    for _ in 0..n / 10 + 1 {
        black_box(one_review(engine, inspector, body).await);
    }
    let start = Instant::now();
    for _ in 0..n {
        black_box(one_review(engine, inspector, body).await);
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let Some(registry) = LocalRegistry::start().await else {
            println!("registry benchmark skipped: docker-registry is not installed");
            return;
        };
        let p = registry.pusher();
        p.push_image(
            "bench/spin:v1",
            &[layer("application/vnd.wasm.content.layer.v1+wasm", WASM_MODULE)],
            wasm_arch_config(),
            None,
        )
        .await;
        p.push_image("bench/nginx:v1", &[tar_layer("nginx")], linux_config(), None)
            .await;
        let wasm_image = registry.image("bench/spin:v1");
        let plain_image = registry.image("bench/nginx:v1");

        let settings = RegistryConfig {
            enabled: true,
            insecure: vec![registry.host()],
            ..RegistryConfig::default()
        };
        let mut config = Config::default();
        config.detection.registry = settings.clone();
        let engine = Engine::new(config).expect("engine");
        let cached = Inspector::new(&settings);
        let uncached = Inspector::new(&RegistryConfig {
            cache_ttl: Duration::ZERO,
            ..settings.clone()
        });

        let annotated = review_body(&wasm_image, true);
        let by_image = review_body(&wasm_image, false);
        let plain = review_body(&plain_image, false);

        // `cargo test --all-targets` runs this too (without `--bench`): a quick smoke run then.
        let (many, few) = if std::env::args().any(|a| a == "--bench") {
            (20_000, 500)
        } else {
            (20, 5)
        };
        let baseline = per_review_us(&engine, None, &annotated, many).await;
        let hit = per_review_us(&engine, Some(&cached), &by_image, many).await;
        let plain_hit = per_review_us(&engine, Some(&cached), &plain, many).await;
        let miss = per_review_us(&engine, Some(&uncached), &by_image, few).await;
        let plain_miss = per_review_us(&engine, Some(&uncached), &plain, few).await;

        println!(
            "\nregistry inspection, per review (decode + lookups + decide + encode), one process"
        );
        println!("{:<58} {:>11} {:>9}", "case", "µs/review", "ratio");
        let row = |name: &str, us: f64| println!("{name:<58} {us:>11.2} {:>9.2}", us / baseline);
        row("baseline: Wasm by annotation, no lookup", baseline);
        row("cached lookup: Wasm image (spin layers)", hit);
        row("cached lookup: ordinary image", plain_hit);
        row("uncached lookup: Wasm image (manifest, 1 GET)", miss);
        row("uncached lookup: ordinary image (manifest + config, 2 GETs)", plain_miss);
        println!(
            "\nadded by a cached lookup: {:.2} µs; by an uncached one against the local registry: {:.0} µs",
            hit - baseline,
            miss - baseline
        );
    });
}
