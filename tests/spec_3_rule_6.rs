//! behaviour.md §3 rule 6 on the engine side, with no registry: which images a door must look up
//! (`Engine::registry_images`), and what the engine does with the answers it is handed.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};
use wasm_admission::core::detection::{ImageClass, ImageClassifier};
use wasm_admission::core::engine::{Endpoint, Engine, Facts};
use wasm_admission::core::review;

/// Registry answers as a door would hand them over.
struct Answers(HashMap<&'static str, ImageClass>);

impl ImageClassifier for Answers {
    fn classify(&self, image: &str) -> ImageClass {
        self.0.get(image).cloned().unwrap_or(ImageClass::Unknown {
            reason: "not looked up".into(),
        })
    }
}

fn deployment(images: &[&str]) -> Value {
    deployment_with_images(images)
}

fn images_to_look_up(engine: &Engine, review: &Value) -> Vec<String> {
    let body = serde_json::to_vec(review).expect("json");
    let decoded = review::decode(&body).expect("review");
    engine.registry_images(&decoded.request(), None)
}

fn decide_with(
    engine: &Engine,
    object: &Value,
    answers: &Answers,
) -> wasm_admission::core::engine::Decision {
    let body = serde_json::to_vec(&review_for(object, "CREATE", None, None)).expect("json");
    review::handle(
        engine,
        &body,
        Endpoint::Mutate,
        &Facts {
            registry: Some(answers),
            runtime_classes: None,
            nodes: None,
            runtime_classes_pending: false,
        },
    )
    .expect("answered")
    .decision
}

#[test]
fn s3_rule6_the_door_looks_up_each_container_image_once_unless_something_else_decides() {
    let engine = engine_with("detection:\n  imagePatterns: [\"ghcr.io/acme/wasm/*\"]\n");
    let d = deployment(&["ghcr.io/acme/app:1", "envoy:1.30", "ghcr.io/acme/app:1"]);
    assert_eq!(
        images_to_look_up(&engine, &review_for(&d, "CREATE", None, None)),
        ["ghcr.io/acme/app:1", "envoy:1.30"]
    );
    // Images the patterns already call Wasm need no lookup.
    let d = deployment(&["ghcr.io/acme/wasm/app:1", "envoy:1.30"]);
    assert_eq!(
        images_to_look_up(&engine, &review_for(&d, "CREATE", None, None)),
        ["envoy:1.30"]
    );

    // Nothing to look up when annotations say Wasm (rules 2–4), in an excluded namespace, for
    // other kinds and operations, and for updates of Pods and Jobs that change no image or read
    // annotation. The opt-outs (rule 1, the skip label) do not spare the lookup: §5's boundary
    // reads the images whatever the pod says.
    let mut annotated = deployment(&["ghcr.io/acme/app:1"]);
    annotated["metadata"]["annotations"] = json!({"wasm-admission.io/wasm": "true"});
    let mut opted_out = deployment(&["ghcr.io/acme/app:1"]);
    opted_out["metadata"]["annotations"] = json!({"wasm-admission.io/wasm": "false"});
    let mut variant = deployment(&["ghcr.io/acme/app:1"]);
    variant["spec"]["template"]["metadata"]["annotations"] =
        json!({"module.wasm.image/variant": "compat-smart"});
    let mut skipped = deployment(&["ghcr.io/acme/app:1"]);
    skipped["metadata"]["labels"] = json!({"wasm-admission.io/skip": "true"});
    let mut excluded = deployment(&["ghcr.io/acme/app:1"]);
    excluded["metadata"]["namespace"] = json!("kube-system");
    let mut pod = fixture("pod-plain");
    pod["spec"]["containers"][0]["image"] = json!("ghcr.io/acme/app:1");
    for (what, review) in [
        ("wasm: true", review_for(&annotated, "CREATE", None, None)),
        ("variant", review_for(&variant, "CREATE", None, None)),
        ("kube-system", review_for(&excluded, "CREATE", None, None)),
        ("DELETE", review_for(&d, "DELETE", None, None)),
        ("Pod UPDATE", review_for(&pod, "UPDATE", Some(&pod), None)),
    ] {
        assert!(images_to_look_up(&engine, &review).is_empty(), "{what}");
    }
    for (what, review) in [
        ("wasm: false", review_for(&opted_out, "CREATE", None, None)),
        ("skip label", review_for(&skipped, "CREATE", None, None)),
    ] {
        assert_eq!(
            images_to_look_up(&engine, &review),
            ["ghcr.io/acme/app:1"],
            "{what}"
        );
    }
    // A Pod CREATE does need them.
    assert_eq!(
        images_to_look_up(&engine, &review_for(&pod, "CREATE", None, None)),
        ["ghcr.io/acme/app:1"]
    );
}

#[test]
fn s3_rule6_nothing_is_looked_up_when_rule3b_decides() {
    let engine = engine();
    let mut d = deployment(&["ghcr.io/acme/app:1", "envoy:1.30"]);
    d["spec"]["template"]["spec"]["runtimeClassName"] = json!("wasmtime-spin-v2");
    let body = serde_json::to_vec(&review_for(&d, "CREATE", None, None)).expect("json");
    let decoded = review::decode(&body).expect("review");
    assert!(engine.registry_images(&decoded.request(), None).is_empty());
    // A class known only from the cluster: looked up without that fact, not with it.
    d["spec"]["template"]["spec"]["runtimeClassName"] = json!("my-spin");
    let body = serde_json::to_vec(&review_for(&d, "CREATE", None, None)).expect("json");
    let decoded = review::decode(&body).expect("review");
    assert_eq!(engine.registry_images(&decoded.request(), None).len(), 2);
    let cluster = cluster_classes(&[("my-spin", "spin")]);
    assert!(
        engine
            .registry_images(&decoded.request(), Some(&cluster))
            .is_empty()
    );
}

#[test]
fn s3_rule6_registry_answers_decide_wasm_mixed_and_unknown() {
    let engine = engine();
    let answers = Answers(HashMap::from([
        ("ghcr.io/acme/app:1", ImageClass::Wasm),
        ("ghcr.io/acme/app:2", ImageClass::Wasm),
        ("envoy:1.30", ImageClass::NotWasm),
        (
            "ghcr.io/acme/gone:1",
            ImageClass::Unknown {
                reason: "manifest: HTTP 404".into(),
            },
        ),
    ]));

    let wasm = decide_with(
        &engine,
        &deployment(&["ghcr.io/acme/app:1", "ghcr.io/acme/app:2"]),
        &answers,
    );
    assert!(wasm.allowed && !wasm.patch.is_empty());
    assert_eq!(wasm.audit_annotations["wasm-detected-by"], "registry");
    assert!(wasm.warnings.is_empty());

    let mixed = decide_with(
        &engine,
        &deployment(&["ghcr.io/acme/app:1", "envoy:1.30"]),
        &answers,
    );
    assert!(mixed.allowed && mixed.patch.is_empty());
    assert_eq!(
        mixed.warnings,
        [
            "wasm-admission: mixed pod left unchanged: Wasm containers [app], other containers [sidecar]"
        ]
    );

    let unknown = decide_with(&engine, &deployment(&["ghcr.io/acme/gone:1"]), &answers);
    assert!(unknown.allowed && unknown.patch.is_empty());
    assert_eq!(
        unknown.warnings,
        [
            "wasm-admission: image ghcr.io/acme/gone:1 not inspected (manifest: HTTP 404); treated as not Wasm"
        ]
    );

    // An unknown image beside a Wasm one: mixed (never half-mutated), and the reason is given.
    let both = decide_with(
        &engine,
        &deployment(&["ghcr.io/acme/app:1", "ghcr.io/acme/gone:1"]),
        &answers,
    );
    assert!(both.patch.is_empty());
    assert_eq!(both.warnings.len(), 2, "{:?}", both.warnings);
}
