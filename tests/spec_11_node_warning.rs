//! behaviour.md §11: a Wasm pod whose RuntimeClass has a `scheduling.nodeSelector` that no node's
//! labels satisfy is admitted with a warning that names the class and the selector.

mod common;

use std::collections::BTreeMap;

use wasm_admission::core::detection::{ClusterRuntimeClasses, RuntimeClassInfo};
use wasm_admission::core::engine::{Endpoint, Facts};
use wasm_admission::core::schedulability::{ClusterNodes, NodeLabels};

use common::{Admitted, admit_review_with, engine, engine_with, fixture, review_for, set};

const SPIN_LABEL: &str = "wasm-admission.io/runtime-spin";
const NO_NODE_SPIN: &str = "wasm-admission: no node matches RuntimeClass \"spin\" (wasm-admission.io/runtime-spin=true); the pod will stay Pending";

fn classes() -> ClusterRuntimeClasses {
    let spin = RuntimeClassInfo {
        handler: "spin".into(),
        node_selector: BTreeMap::from([(SPIN_LABEL.to_string(), "true".to_string())]),
    };
    let wasm = RuntimeClassInfo {
        handler: "wasm".into(),
        node_selector: BTreeMap::new(),
    };
    ClusterRuntimeClasses::from([("spin".to_string(), spin), ("wasm".to_string(), wasm)])
}

fn nodes(labels: &[&[(&str, &str)]]) -> ClusterNodes {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("node-{i}"), NodeLabels::new(l.iter().copied())))
        .collect()
}

fn admit_with(
    object: &serde_json::Value,
    classes: Option<&ClusterRuntimeClasses>,
    nodes: Option<&ClusterNodes>,
    endpoint: Endpoint,
) -> Admitted {
    let facts = Facts {
        registry: None,
        runtime_classes: classes,
        nodes,
    };
    admit_review_with(
        &engine(),
        &review_for(object, "CREATE", None, None),
        endpoint,
        &facts,
    )
}

fn no_node_warnings(out: &Admitted) -> Vec<&String> {
    out.decision
        .warnings
        .iter()
        .filter(|w| w.contains("no node matches"))
        .collect()
}

#[test]
fn injected_class_with_no_matching_node_warns_naming_class_and_selector() {
    let classes = classes();
    let only_plain = nodes(&[&[("kubernetes.io/os", "linux")]]);
    let out = admit_with(
        &fixture("deployment-spin"),
        Some(&classes),
        Some(&only_plain),
        Endpoint::Mutate,
    );
    assert!(out.allowed());
    assert!(out.patched(), "the class is still injected");
    assert_eq!(no_node_warnings(&out), vec![NO_NODE_SPIN]);
}

#[test]
fn a_node_with_the_selector_labels_silences_the_warning() {
    let classes = classes();
    let labelled = nodes(&[
        &[("kubernetes.io/os", "linux")],
        &[("kubernetes.io/os", "linux"), (SPIN_LABEL, "true")],
    ]);
    let out = admit_with(
        &fixture("deployment-spin"),
        Some(&classes),
        Some(&labelled),
        Endpoint::Mutate,
    );
    assert!(
        no_node_warnings(&out).is_empty(),
        "{:?}",
        out.decision.warnings
    );
}

#[test]
fn the_class_a_pod_already_names_is_checked_too() {
    let classes = classes();
    let mut pod = fixture("pod-wasm");
    set(&mut pod, "/spec/runtimeClassName", "spin".into());
    let out = admit_with(&pod, Some(&classes), Some(&nodes(&[])), Endpoint::Mutate);
    assert_eq!(no_node_warnings(&out), vec![NO_NODE_SPIN]);
}

#[test]
fn a_class_without_node_selector_never_warns_even_with_no_nodes() {
    let classes = classes();
    let out = admit_with(
        &fixture("deployment-wasm"),
        Some(&classes),
        Some(&nodes(&[])),
        Endpoint::Mutate,
    );
    assert!(
        no_node_warnings(&out).is_empty(),
        "{:?}",
        out.decision.warnings
    );
}

#[test]
fn without_the_node_watch_nothing_is_looked_up() {
    let classes = classes();
    for (classes, nodes) in [(Some(&classes), None), (None, Some(nodes(&[])))] {
        let out = admit_with(
            &fixture("deployment-spin"),
            classes,
            nodes.as_ref(),
            Endpoint::Mutate,
        );
        assert!(
            no_node_warnings(&out).is_empty(),
            "{:?}",
            out.decision.warnings
        );
    }
}

#[test]
fn non_wasm_pods_are_not_warned() {
    let classes = classes();
    let mut plain = fixture("deployment-plain");
    set(
        &mut plain,
        "/spec/template/spec/runtimeClassName",
        "spin-like-but-unknown".into(),
    );
    let out = admit_with(&plain, Some(&classes), Some(&nodes(&[])), Endpoint::Mutate);
    assert!(no_node_warnings(&out).is_empty());
}

#[test]
fn the_configured_default_class_is_checked_when_injected() {
    let engine = engine_with("runtimeClassName: spin\n");
    let classes = classes();
    let nodes = nodes(&[&[(SPIN_LABEL, "false")]]);
    let facts = Facts {
        registry: None,
        runtime_classes: Some(&classes),
        nodes: Some(&nodes),
    };
    let out = admit_review_with(
        &engine,
        &review_for(&fixture("deployment-wasm"), "CREATE", None, None),
        Endpoint::Mutate,
        &facts,
    );
    assert_eq!(no_node_warnings(&out), vec![NO_NODE_SPIN]);
}
