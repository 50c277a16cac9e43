//! behaviour.md §3: when a pod spec counts as Wasm.

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

// ---- Rule 3b: the pod spec's own runtimeClassName names a class that runs Wasm.

fn detected_by(out: &Admitted) -> Option<&str> {
    out.decision
        .audit_annotations
        .get("wasm-detected-by")
        .map(String::as_str)
}

fn class_of<'v>(out: &'v Admitted, object: &Value) -> Option<&'v str> {
    out.object
        .pointer(&format!("{}/runtimeClassName", spec_ptr(object)))
        .and_then(Value::as_str)
}

/// A plain Deployment (nginx, no annotation) whose pod spec names `class`.
fn deployment_naming(class: &str) -> Value {
    let mut d = plain_deployment();
    set(&mut d, "/spec/template/spec/runtimeClassName", json!(class));
    d
}

/// What every correctly written Wasm example gets: Wasm, its class kept, resources and
/// OpenTelemetry added, no warning; and its privileged twin is denied with 403.
fn assert_wasm_kept_quietly_and_twin_denied(
    engine: &wasm_admission::core::engine::Engine,
    object: &Value,
    class: &str,
    rule: &str,
) {
    let out = admit(engine, object);
    let what = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(out.allowed(), "{what}: {}", out.message());
    assert_eq!(detected_by(&out), Some(rule), "{what}");
    assert_eq!(
        class_of(&out, object),
        Some(class),
        "{what}: the class is kept"
    );
    assert_eq!(
        out.injected(meta_ptr(object)).as_deref(),
        Some("resources,otel"),
        "{what}: nothing injected where the class is"
    );
    assert!(
        out.decision.warnings.is_empty(),
        "{what}: {:?}",
        out.decision.warnings
    );
    let twin = admit(engine, &privileged_twin(object, 0));
    assert!(
        is_forbidden(&twin),
        "{what}: privileged twin: {}",
        twin.response
    );
    assert!(
        twin.message().contains("securityContext.privileged=true"),
        "{}",
        twin.message()
    );
}

#[test]
fn s3_rule3b_spin_app_on_spinkube_or_aks_is_wasm_and_keeps_wasmtime_spin_v2() {
    let engine = engine();
    let docs = example("wasm/spin-wasmtime-spin-v2.yaml");
    // The RuntimeClass the app names, with its node selector, as AKS writes it: passed unchanged.
    let rc = docs
        .iter()
        .find(|d| d["kind"] == "RuntimeClass")
        .expect("a RuntimeClass");
    assert_eq!(rc["handler"], "spin");
    assert!(rc["scheduling"]["nodeSelector"].is_object());
    let rc_out = admit_op(&engine, rc, "CREATE", None);
    assert!(rc_out.allowed() && !rc_out.patched());

    let d = example_workload("wasm/spin-wasmtime-spin-v2.yaml");
    assert_wasm_kept_quietly_and_twin_denied(&engine, &d, "wasmtime-spin-v2", "runtime-class-name");
    // The Spin shim's first class name, and the same app as a bare Pod, count the same way.
    let mut older = d.clone();
    set(
        &mut older,
        "/spec/template/spec/runtimeClassName",
        json!("wasmtime-spin"),
    );
    assert_wasm_kept_quietly_and_twin_denied(
        &engine,
        &older,
        "wasmtime-spin",
        "runtime-class-name",
    );
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "spin-orders-7d9f", "namespace": "shop"},
        "spec": d["spec"]["template"]["spec"].clone()
    });
    assert_wasm_kept_quietly_and_twin_denied(
        &engine,
        &pod,
        "wasmtime-spin-v2",
        "runtime-class-name",
    );
}

#[test]
fn s3_rule3b_runwasi_class_wasm_with_a_linux_sidecar_is_wasm_never_mixed() {
    // Image patterns that call only the app Wasm: rules 5/6 alone would make this pod mixed.
    let engine = engine_with("detection:\n  imagePatterns: ['ghcr.io/acme/*-wasm:*']\n");
    let d = example_workload("wasm/runwasi-sidecar.yaml");
    assert_wasm_kept_quietly_and_twin_denied(&engine, &d, "wasm", "runtime-class-name");
    let out = admit(&engine, &d);
    // The sidecar is part of the Wasm pod: it gets the defaults and the variables too.
    for i in 0..2 {
        let c = &out.object["spec"]["template"]["spec"]["containers"][i];
        assert_eq!(c["resources"]["limits"]["memory"], "128Mi", "{c}");
        assert!(env_of(&out.object, i, "OTEL_SERVICE_NAME").is_some(), "{c}");
    }
    // A privileged sidecar in a Wasm pod is denied as well, and named.
    let twin = admit(&engine, &privileged_twin(&d, 1));
    assert!(is_forbidden(&twin), "{}", twin.response);
    assert!(
        twin.message().contains("container \"log-shipper\""),
        "{}",
        twin.message()
    );
}

#[test]
fn s3_rule4_wasmedge_on_crun_deployment_and_job_are_wasm_without_a_warning() {
    let engine = engine();
    for path in [
        "wasm/wasmedge-crun-deployment.yaml",
        "wasm/wasmedge-crun-job.yaml",
    ] {
        let w = example_workload(path);
        assert_eq!(
            w.pointer(&format!(
                "{}/annotations/module.wasm.image~1variant",
                meta_ptr(&w)
            )),
            Some(&json!("compat-smart")),
            "{path}"
        );
        assert_wasm_kept_quietly_and_twin_denied(&engine, &w, "crun", "variant-annotation");
    }
}

#[test]
fn s3_rule3b_kwasm_style_job_is_wasm_and_keeps_wasmedge() {
    let engine = engine();
    let job = example_workload("wasm/kwasm-job.yaml");
    assert_wasm_kept_quietly_and_twin_denied(&engine, &job, "wasmedge", "runtime-class-name");
}

#[test]
fn s3_rule3b_every_default_class_and_the_configured_runtime_class_count() {
    let engine = engine();
    for class in [
        "wasm",
        "wasmedge",
        "wasmtime",
        "wasmer",
        "spin",
        "wasmtime-spin",
        "wasmtime-spin-v2",
        "wws",
        "slight",
        "lunatic",
    ] {
        let out = admit(&engine, &deployment_naming(class));
        assert_eq!(detected_by(&out), Some("runtime-class-name"), "{class}");
    }
    // Not a Wasm class: a plain pod stays plain.
    for class in ["runc", "crun", "kata", "gvisor", "wamr"] {
        let out = admit(&engine, &deployment_naming(class));
        assert!(
            !out.patched() && out.decision.warnings.is_empty(),
            "{class}"
        );
    }
    // The configured runtimeClassName always counts, even with the list emptied.
    let engine = engine_with("runtimeClassName: wasm-nodes\ndetection:\n  runtimeClasses: []\n");
    let out = admit(&engine, &deployment_naming("wasm-nodes"));
    assert_eq!(detected_by(&out), Some("runtime-class-name"));
    assert!(!admit(&engine, &deployment_naming("wasmtime-spin-v2")).patched());
}

#[test]
fn s3_rule3b_a_custom_class_counts_only_through_its_handler_in_the_cluster() {
    let engine = engine();
    let d = deployment_naming("my-spin");
    // `check` (no cluster): only configured names count.
    assert!(!admit(&engine, &d).patched());
    assert!(admit(&engine, &privileged_twin(&d, 0)).allowed());
    // `serve` with the watch: `my-spin` runs the `spin` handler.
    let cluster = cluster_classes(&[("my-spin", "spin"), ("gvisor", "runsc")]);
    let out = admit_in_cluster(&engine, &d, &cluster);
    assert_eq!(detected_by(&out), Some("runtime-class-name"));
    assert_eq!(class_of(&out, &d), Some("my-spin"));
    assert!(
        out.decision.warnings.is_empty(),
        "{:?}",
        out.decision.warnings
    );
    assert!(is_forbidden(&admit_in_cluster(
        &engine,
        &privileged_twin(&d, 0),
        &cluster
    )));
    // A class whose handler is not a Wasm one, or that the cluster does not have: not Wasm.
    assert!(!admit_in_cluster(&engine, &deployment_naming("gvisor"), &cluster).patched());
    assert!(!admit_in_cluster(&engine, &deployment_naming("my-wws"), &cluster).patched());
    // Configured handlers only: `spin` off, `my-spin` is no longer Wasm.
    let engine = engine_with("detection:\n  runtimeHandlers: [wasmedge]\n");
    assert!(!admit_in_cluster(&engine, &d, &cluster).patched());
}

#[test]
fn s3_rule3b_off_when_runtime_classes_and_handlers_are_emptied() {
    let engine = engine_with("detection:\n  runtimeClasses: []\n  runtimeHandlers: []\n");
    let cluster = cluster_classes(&[("wasmtime-spin-v2", "spin"), ("my-spin", "spin")]);
    for path in [
        "wasm/spin-wasmtime-spin-v2.yaml",
        "wasm/kwasm-job.yaml",
        "wasm/runwasi-sidecar.yaml",
    ] {
        let w = example_workload(path);
        // `wasm` is the configured runtimeClassName, which always counts.
        if path.contains("runwasi") {
            assert_eq!(detected_by(&admit(&engine, &w)), Some("runtime-class-name"));
            continue;
        }
        for out in [admit(&engine, &w), admit_in_cluster(&engine, &w, &cluster)] {
            assert!(out.allowed() && !out.patched(), "{path}");
            assert!(out.decision.warnings.is_empty(), "{path}");
        }
        // Not Wasm, so not judged: the privileged twin is allowed by this webhook.
        assert!(admit(&engine, &privileged_twin(&w, 0)).allowed(), "{path}");
    }
    // Rule 4 is untouched: WasmEdge on crun is still Wasm.
    let crun = example_workload("wasm/wasmedge-crun-job.yaml");
    assert_eq!(
        detected_by(&admit(&engine, &crun)),
        Some("variant-annotation")
    );
}

/// Rule 1 on a pod spec that names a Wasm class opts out of §4 only: §5's boundary still denies
/// (behaviour.md §5, issue 28 item 3).
#[test]
fn s3_rule1_wasm_false_on_a_wasm_class_opts_out_of_mutation_only() {
    let engine = engine();
    let cluster = cluster_classes(&[("my-spin", "spin")]);
    for class in ["wasmtime-spin-v2", "my-spin"] {
        for on_template in [true, false] {
            let mut clean = deployment_naming(class);
            annotate(&mut clean, on_template, "wasm-admission.io/wasm", "false");
            let out = admit_in_cluster(&engine, &clean, &cluster);
            assert!(
                out.allowed() && !out.patched(),
                "{class} on template={on_template}"
            );
            assert!(out.decision.warnings.is_empty());
            let mut d = privileged_twin(&deployment_naming(class), 0);
            annotate(&mut d, on_template, "wasm-admission.io/wasm", "false");
            let out = admit_in_cluster(&engine, &d, &cluster);
            assert!(
                !out.allowed() && out.message().contains("securityContext.privileged=true"),
                "{class} on template={on_template}: {}",
                out.message()
            );
        }
    }
}

#[test]
fn s3_rules_2_and_3_come_before_rule3b_and_a_wasm_class_is_kept_quietly() {
    let engine = engine();
    // Rule 2 decides; the pod's own Wasm class is kept without a warning.
    let mut d = deployment_naming("wasmtime-spin-v2");
    annotate(&mut d, true, "wasm-admission.io/wasm", "true");
    let out = admit(&engine, &d);
    assert_eq!(detected_by(&out), Some("annotation"));
    assert_eq!(class_of(&out, &d), Some("wasmtime-spin-v2"));
    assert!(
        out.decision.warnings.is_empty(),
        "{:?}",
        out.decision.warnings
    );
    // Rule 3 decides; the class the pod names wins over the annotation's, quietly.
    let mut d = deployment_naming("wasmtime-spin-v2");
    annotate(&mut d, false, "wasm-admission.io/runtime-class", "spin");
    let out = admit(&engine, &d);
    assert_eq!(detected_by(&out), Some("runtime-class-annotation"));
    assert_eq!(class_of(&out, &d), Some("wasmtime-spin-v2"));
    assert!(
        out.decision.warnings.is_empty(),
        "{:?}",
        out.decision.warnings
    );
}

#[test]
fn s3_rule3b_comes_before_rule4_and_the_image_rules() {
    let engine = engine_with("detection:\n  imagePatterns: ['docker.io/library/nginx:*']\n");
    let mut d = deployment_naming("wasmedge");
    assert_eq!(detected_by(&admit(&engine, &d)), Some("runtime-class-name"));
    annotate(&mut d, true, "module.wasm.image/variant", "compat-smart");
    assert_eq!(detected_by(&admit(&engine, &d)), Some("runtime-class-name"));
    // A class that does not run Wasm leaves the decision to the later rules.
    let d = deployment_naming("runc");
    let out = admit(&engine, &d);
    assert_eq!(detected_by(&out), Some("image-pattern"));
    assert_eq!(class_of(&out, &d), Some("runc"));
}
