//! SPEC §3: when a pod spec counts as Wasm.

mod common;

use common::*;
use serde_json::{Value, json};

fn annotate(object: &mut Value, on_template: bool, key: &str, value: &str) {
    let meta = if on_template {
        meta_ptr(object)
    } else {
        "/metadata"
    };
    set(
        object,
        &format!("{meta}/annotations/{}", key.replace('/', "~1")),
        json!(value),
    );
}

fn plain_deployment() -> Value {
    fixture("deployment-plain")
}

fn is_wasm(out: &Admitted, object: &Value) -> bool {
    out.object
        .pointer(&format!("{}/runtimeClassName", spec_ptr(object)))
        .is_some()
}

#[test]
fn s3_rule1_wasm_false_on_either_place_wins() {
    let engine = engine();
    for (false_on_template, true_on_template) in
        [(true, false), (false, true), (true, true), (false, false)]
    {
        let mut d = plain_deployment();
        annotate(&mut d, true_on_template, "wasm-admission.io/wasm", "true");
        annotate(
            &mut d,
            true_on_template,
            "wasm-admission.io/runtime-class",
            "wasmedge",
        );
        annotate(&mut d, false_on_template, "wasm-admission.io/wasm", "false");
        // Where both land on the same place the later "false" replaces "true": still not Wasm.
        let out = admit(&engine, &d);
        assert!(!out.patched(), "false on template={false_on_template}");
    }
    // "false" wins even over a privileged spec: not Wasm is never denied.
    let mut p = fixture("pod-wasm-privileged");
    annotate(&mut p, false, "wasm-admission.io/wasm", "false");
    assert!(admit(&engine, &p).allowed());
}

#[test]
fn s3_rule2_wasm_true_on_object_or_template_is_wasm() {
    let engine = engine();
    for on_template in [true, false] {
        let mut d = plain_deployment();
        annotate(&mut d, on_template, "wasm-admission.io/wasm", "true");
        let out = admit(&engine, &d);
        assert!(is_wasm(&out, &d), "on template = {on_template}");
        assert_eq!(
            out.decision.audit_annotations["wasm-detected-by"],
            "annotation"
        );
    }
}

#[test]
fn s3_template_value_wins_over_the_objects_own() {
    let engine = engine();
    let mut d = plain_deployment();
    annotate(&mut d, false, "wasm-admission.io/runtime-class", "wasmedge");
    annotate(&mut d, true, "wasm-admission.io/runtime-class", "spin");
    let out = admit(&engine, &d);
    assert_eq!(
        out.object.pointer("/spec/template/spec/runtimeClassName"),
        Some(&json!("spin"))
    );
}

#[test]
fn s3_rule3_runtime_class_annotation_is_wasm_and_names_the_class() {
    let engine = engine();
    // On the Deployment's own metadata only, with a template that has no annotations at all.
    let d = fixture("deployment-wasmedge");
    let out = admit(&engine, &d);
    assert_eq!(
        out.object.pointer("/spec/template/spec/runtimeClassName"),
        Some(&json!("wasmedge"))
    );
    assert_eq!(
        out.decision.audit_annotations["wasm-detected-by"],
        "runtime-class-annotation"
    );
    let spin = admit(&engine, &fixture("deployment-spin"));
    assert_eq!(
        spin.object.pointer("/spec/template/spec/runtimeClassName"),
        Some(&json!("spin"))
    );
}

#[test]
fn s3_rule3_with_rule2_still_uses_the_named_class() {
    let engine = engine();
    let mut d = plain_deployment();
    annotate(&mut d, true, "wasm-admission.io/wasm", "true");
    annotate(&mut d, true, "wasm-admission.io/runtime-class", "wasmtime");
    let out = admit(&engine, &d);
    assert_eq!(
        out.object.pointer("/spec/template/spec/runtimeClassName"),
        Some(&json!("wasmtime"))
    );
}

#[test]
fn s3_rule4_wasmedge_variant_annotation_is_wasm() {
    let engine = engine();
    for variant in ["compat", "compat-smart"] {
        let mut d = plain_deployment();
        annotate(&mut d, true, "module.wasm.image/variant", variant);
        let out = admit(&engine, &d);
        assert!(is_wasm(&out, &d), "{variant}");
        assert_eq!(
            out.decision.audit_annotations["wasm-detected-by"],
            "variant-annotation"
        );
    }
    let mut d = plain_deployment();
    annotate(&mut d, true, "module.wasm.image/variant", "other");
    assert!(!admit(&engine, &d).patched());
    // The StatefulSet fixture is detected this way.
    let s = fixture("statefulset-wasm");
    assert!(is_wasm(&admit(&engine, &s), &s));
}

#[test]
fn s3_rule5_image_patterns_match_when_every_container_matches() {
    let engine = engine_with(
        "detection:\n  imagePatterns: ['ghcr.io/acme/*', 'docker.io/library/nginx:*']\n",
    );
    let d = plain_deployment(); // nginx
    let out = admit(&engine, &d);
    assert!(is_wasm(&out, &d));
    assert_eq!(
        out.decision.audit_annotations["wasm-detected-by"],
        "image-pattern"
    );
    // No patterns: the same Deployment is not Wasm.
    assert!(!admit(&common::engine(), &d).patched());
}

#[test]
fn s3_mixed_pod_is_left_unchanged_with_a_warning_naming_both_sorts() {
    let engine = engine_with("detection:\n  imagePatterns: ['ghcr.io/acme/*']\n");
    let mut d = fixture("deployment-wasmedge");
    common::remove(
        &mut d,
        "/metadata/annotations/wasm-admission.io~1runtime-class",
    );
    let images = [
        "ghcr.io/acme/inventory:2.0",
        "docker.io/prom/statsd-exporter:v0.26.0",
        "ghcr.io/acme/cache:1.0",
    ];
    for (i, image) in images.iter().enumerate() {
        set(
            &mut d,
            &format!("/spec/template/spec/containers/{i}/image"),
            json!(image),
        );
    }
    let names: Vec<String> = (0..3)
        .map(|i| {
            d["spec"]["template"]["spec"]["containers"][i]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let out = admit(&engine, &d);
    assert!(out.allowed() && !out.patched());
    assert_eq!(
        out.decision.warnings.len(),
        1,
        "{:?}",
        out.decision.warnings
    );
    let w = &out.decision.warnings[0];
    assert!(w.starts_with("wasm-admission: mixed"), "{w}");
    assert!(
        w.contains(&format!("[{},{}]", names[0], names[2]))
            && w.contains(&format!("[{}]", names[1])),
        "{w}"
    );
    // A mixed pod is not denied either.
    set(&mut d, "/spec/template/spec/hostNetwork", json!(true));
    assert!(admit(&engine, &d).allowed());
}

#[test]
fn s3_plain_workloads_are_not_wasm() {
    let engine = engine();
    for name in ["pod-plain", "deployment-plain"] {
        let out = admit(&engine, &fixture(name));
        assert!(
            out.allowed() && !out.patched() && out.decision.warnings.is_empty(),
            "{name}"
        );
    }
}
