//! behaviour.md §6: where the webhook acts.

mod common;

use common::*;
use serde_json::json;
use wasm_admission::core::config::Config;
use wasm_admission::core::engine::Engine;

#[test]
fn s6_excluded_namespaces_are_never_touched_denials_included() {
    let engine = engine();
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        for name in ["deployment-wasm", "pod-wasm-privileged"] {
            let mut object = fixture(name);
            object["metadata"]["namespace"] = json!(ns);
            let out = admit(&engine, &object);
            assert!(
                out.allowed() && !out.patched() && out.decision.warnings.is_empty(),
                "{ns}/{name}"
            );
        }
    }
}

#[test]
fn s6_the_webhooks_own_namespace_is_excluded() {
    let engine = Engine::new(Config::default().with_own_namespace(Some("wasm-admission"))).unwrap();
    let mut object = fixture("pod-wasm-privileged");
    object["metadata"]["namespace"] = json!("wasm-admission");
    assert!(admit(&engine, &object).allowed());
    // Configured exclusions replace the defaults, and the own namespace is still added.
    let config = Config::from_yaml("excludedNamespaces: [legacy]\n")
        .unwrap()
        .with_own_namespace(Some("wasm-admission"));
    let engine = Engine::new(config).unwrap();
    for ns in ["legacy", "wasm-admission"] {
        object["metadata"]["namespace"] = json!(ns);
        assert!(admit(&engine, &object).allowed(), "{ns}");
    }
    object["metadata"]["namespace"] = json!("kube-system");
    assert!(
        !admit(&engine, &object).allowed(),
        "kube-system is no longer excluded once the list is replaced"
    );
}

#[test]
fn s6_skip_label_on_object_or_template_leaves_it_alone() {
    let engine = engine();
    let mut d = fixture("deployment-wasm");
    set(&mut d, "/spec/template/spec/hostNetwork", json!(true));
    for on in ["/metadata", "/spec/template/metadata"] {
        let mut object = d.clone();
        set(
            &mut object,
            &format!("{on}/labels/wasm-admission.io~1skip"),
            json!("true"),
        );
        let out = admit(&engine, &object);
        assert!(out.allowed() && !out.patched(), "{on}");
    }
    let mut pod = fixture("pod-wasm-privileged");
    set(
        &mut pod,
        "/metadata/labels/wasm-admission.io~1skip",
        json!("true"),
    );
    assert!(admit(&engine, &pod).allowed());
    set(
        &mut pod,
        "/metadata/labels/wasm-admission.io~1skip",
        json!("false"),
    );
    assert!(!admit(&engine, &pod).allowed());
}

#[test]
fn s6_mutate_templates_false_mutates_only_pods_but_still_denies_templates() {
    let engine = engine_with("mutateTemplates: false\n");
    let out = admit(&engine, &fixture("deployment-wasm"));
    assert!(out.allowed() && !out.patched());
    let out = admit(&engine, &fixture("pod-wasm"));
    assert!(out.patched());
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/spec/template/spec/containers/0/securityContext/privileged",
        json!(true),
    );
    assert!(!admit(&engine, &d).allowed());
}
