//! behaviour.md §2: which objects and operations the webhook acts on.

mod common;

use common::*;
use serde_json::{Value, json};
use wasm_admission::core::engine::{Endpoint, Facts};
use wasm_admission::core::review;

const WASM_KINDS: [&str; 7] = [
    "pod-wasm",
    "deployment-wasm",
    "statefulset-wasm",
    "daemonset-wasm",
    "replicaset-wasm",
    "job-wasm",
    "cronjob-wasm",
];

#[test]
fn s2_every_kind_is_mutated_at_its_pod_spec_path_on_create() {
    let engine = engine();
    for name in WASM_KINDS {
        let object = fixture(name);
        let out = admit(&engine, &object);
        assert!(out.allowed(), "{name}: {}", out.message());
        let class = out
            .object
            .pointer(&format!("{}/runtimeClassName", spec_ptr(&object)));
        assert_eq!(class, Some(&json!("wasm")), "{name}");
        assert!(
            out.injected(meta_ptr(&object)).is_some(),
            "{name}: injected annotation on the pod metadata"
        );
    }
}

#[test]
fn s2_update_of_workload_templates_is_mutated() {
    let engine = engine();
    for name in [
        "deployment-wasm",
        "statefulset-wasm",
        "daemonset-wasm",
        "replicaset-wasm",
        "cronjob-wasm",
    ] {
        let object = fixture(name);
        let out = admit_op(&engine, &object, "UPDATE", Some(&object));
        assert!(
            out.patched(),
            "{name}: templates are mutable, so UPDATE is mutated"
        );
    }
}

#[test]
fn s2_update_of_pods_and_jobs_is_allowed_without_patch() {
    let engine = engine();
    for name in ["pod-wasm", "job-wasm"] {
        let object = fixture(name);
        let out = admit_op(&engine, &object, "UPDATE", Some(&object));
        assert!(out.allowed() && !out.patched(), "{name}");
        // Not even a privileged Pod is refused on UPDATE: its spec was admitted at creation.
        let mut privileged = object.clone();
        set(
            &mut privileged,
            &format!(
                "{}/containers/0/securityContext/privileged",
                spec_ptr(&object)
            ),
            json!(true),
        );
        let out = admit_op(&engine, &privileged, "UPDATE", Some(&object));
        assert!(out.allowed() && !out.patched(), "{name}");
    }
}

#[test]
fn s2_delete_and_connect_are_allowed_without_patch() {
    let engine = engine();
    let object = fixture("pod-wasm-privileged");
    let mut review = review_for(&object, "DELETE", Some(&object), None);
    review["request"]["object"] = Value::Null;
    let out = admit_review(
        &engine,
        &review,
        wasm_admission::core::engine::Endpoint::Mutate,
    );
    assert!(out.allowed() && !out.patched());
    let mut review = review_for(&object, "CONNECT", None, Some("exec"));
    review["request"]["object"] =
        json!({"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh"]});
    let out = admit_review(
        &engine,
        &review,
        wasm_admission::core::engine::Endpoint::Mutate,
    );
    assert!(out.allowed() && !out.patched());
}

#[test]
fn s2_other_kinds_are_allowed_without_patch() {
    let engine = engine();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cart", "namespace": "shop", "annotations": {"wasm-admission.io/wasm": "true"}},
        "spec": {"ports": [{"port": 80}]}
    });
    let out = admit(&engine, &service);
    assert!(out.allowed() && !out.patched());
    // A Deployment of an older API version is not one of the seven kinds.
    let mut old = fixture("deployment-wasm");
    old["apiVersion"] = json!("apps/v1beta1");
    let out = admit(&engine, &old);
    assert!(out.allowed() && !out.patched());
}

#[test]
fn s2_subresources_other_than_ephemeral_containers_are_allowed_without_patch() {
    let engine = engine();
    let object = fixture("pod-wasm-privileged");
    for sub in ["status", "binding", "eviction"] {
        let review = review_for(&object, "UPDATE", Some(&object), Some(sub));
        let out = admit_review(
            &engine,
            &review,
            wasm_admission::core::engine::Endpoint::Mutate,
        );
        assert!(out.allowed() && !out.patched(), "{sub}");
    }
    let deployment = fixture("deployment-wasm");
    let review = review_for(&deployment, "UPDATE", Some(&deployment), Some("scale"));
    let out = admit_review(
        &engine,
        &review,
        wasm_admission::core::engine::Endpoint::Mutate,
    );
    assert!(out.allowed() && !out.patched());
}

#[test]
fn s2_dry_run_gets_exactly_the_answer_of_a_real_request() {
    let engine = engine();
    for name in ["deployment-wasm", "pod-wasm-privileged", "pod-plain"] {
        let object = fixture(name);
        let real = review_for(&object, "CREATE", None, None);
        let mut dry = real.clone();
        dry["request"]["dryRun"] = json!(true);
        let a = admit_review(
            &engine,
            &real,
            wasm_admission::core::engine::Endpoint::Mutate,
        );
        let b = admit_review(
            &engine,
            &dry,
            wasm_admission::core::engine::Endpoint::Mutate,
        );
        assert_eq!(a.response, b.response, "{name}");
    }
}

#[test]
fn s2_response_echoes_uid_and_carries_patch_type_only_with_a_patch() {
    let engine = engine();
    let out = admit(&engine, &fixture("deployment-wasm"));
    let r = &out.response;
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["kind"], "AdmissionReview");
    assert_eq!(r["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r["response"]["patchType"], "JSONPatch");
    assert!(r["response"]["patch"].is_string());
    let out = admit(&engine, &fixture("pod-plain"));
    assert!(out.response["response"].get("patchType").is_none());
    assert!(out.response["response"].get("patch").is_none());
    assert_eq!(out.response["response"]["allowed"], true);
}

/// `serve` reads the object into the engine's model in the same pass as the review; an object
/// that model cannot read is not refused on that account when its kind is not one the webhook
/// looks at.
#[test]
fn s2_an_unreadable_object_of_another_kind_is_allowed_without_patch() {
    let engine = engine();
    // A custom resource whose `spec.containers` is not a list of containers.
    let object = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "shop", "labels": {"a": 1}},
        "spec": {"containers": "three", "template": [1, 2]}
    });
    let out = admit(&engine, &object);
    assert!(out.allowed(), "{}", out.message());
    assert!(!out.patched());
}

/// The same object shape in a kind the webhook looks at is a client error that names the field.
#[test]
fn s2_an_unreadable_object_of_a_workload_kind_is_refused_naming_the_field() {
    let engine = engine();
    let mut object = fixture("deployment-wasm");
    object["spec"]["template"]["spec"]["containers"] = json!("three");
    let body = serde_json::to_vec(&review_for(&object, "CREATE", None, None)).unwrap();
    let error = match review::handle(&engine, &body, Endpoint::Mutate, &Facts::default()) {
        Ok(reply) => panic!("answered: {:?}", reply.decision),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("spec.template.spec.containers"),
        "the message names the field: {error}"
    );
}
