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
        ..Default::default()
    };
    let wasm = RuntimeClassInfo {
        handler: "wasm".into(),
        ..Default::default()
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
        runtime_classes_pending: false,
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

fn assert_no_node_warning(out: &Admitted) {
    assert!(
        no_node_warnings(out).is_empty(),
        "{:?}",
        out.decision.warnings
    );
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
    assert_no_node_warning(&out);
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
    assert_no_node_warning(&out);
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
        assert_no_node_warning(&out);
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
        runtime_classes_pending: false,
    };
    let out = admit_review_with(
        &engine,
        &review_for(&fixture("deployment-wasm"), "CREATE", None, None),
        Endpoint::Mutate,
        &facts,
    );
    assert_eq!(no_node_warnings(&out), vec![NO_NODE_SPIN]);
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The figure of docs/operations.md: 5,000 nodes with 15 labels each, as the Node watch keeps
/// them, and the time of one check that finds no node. Run alone (it measures the whole
/// process): `cargo test --test spec_11_node_warning -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run alone"]
fn labels_of_5000_nodes_fit_in_about_ten_megabytes() {
    let before = rss();
    let nodes: ClusterNodes = (0..5000)
        .map(|i| {
            let name = format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i / 250, i % 250);
            let labels = vec![
                ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
                ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
                (
                    "beta.kubernetes.io/instance-type".to_string(),
                    "m6i.2xlarge".to_string(),
                ),
                ("kubernetes.io/arch".to_string(), "amd64".to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/hostname".to_string(), name.clone()),
                (
                    "node.kubernetes.io/instance-type".to_string(),
                    "m6i.2xlarge".to_string(),
                ),
                (
                    "topology.kubernetes.io/region".to_string(),
                    "eu-west-1".to_string(),
                ),
                (
                    "topology.kubernetes.io/zone".to_string(),
                    format!("eu-west-1{}", ["a", "b", "c"][i % 3]),
                ),
                (
                    "failure-domain.beta.kubernetes.io/region".to_string(),
                    "eu-west-1".to_string(),
                ),
                (
                    "failure-domain.beta.kubernetes.io/zone".to_string(),
                    "eu-west-1a".to_string(),
                ),
                (
                    "eks.amazonaws.com/nodegroup".to_string(),
                    format!("workers-{}", i % 10),
                ),
                (
                    "eks.amazonaws.com/capacityType".to_string(),
                    "ON_DEMAND".to_string(),
                ),
                (
                    "k8s.io/cloud-provider-aws".to_string(),
                    "0123456789abcdef0123456789abcdef".to_string(),
                ),
                ("kwasm.sh/kwasm-provisioned".to_string(), "true".to_string()),
            ];
            (name, NodeLabels::new(labels))
        })
        .collect();
    let after = rss();
    let selector = BTreeMap::from([(SPIN_LABEL.to_string(), "true".to_string())]);
    let start = std::time::Instant::now();
    let found = wasm_admission::core::schedulability::any_node_matches(&selector, &nodes);
    let elapsed = start.elapsed();
    assert!(!found);
    let mib = (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0);
    println!(
        "5000 nodes x 15 labels: {mib:.1} MiB resident; a check that finds no node: {elapsed:?}"
    );
    assert!(mib < 16.0, "{mib:.1} MiB");
}
