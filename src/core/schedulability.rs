//! Whether any node can run a RuntimeClass (behaviour.md §11): a class's `scheduling.nodeSelector`
//! against the label sets of the cluster's nodes, as `serve`'s metadata-only Node watch keeps
//! them. Pure: the adapter hands the labels in, this module answers and words the warning.
//!
//! Only the RuntimeClass's `nodeSelector` is checked. Its `tolerations` are not: node taints are
//! in a Node's `spec`, which a metadata-only watch does not see, and a class's tolerations only
//! ever widen the set of nodes, so ignoring them cannot produce a false warning from taints.
//! The pod's own `nodeSelector` and affinity are not checked either (the warning is about the
//! class).

use std::collections::{BTreeMap, HashMap};

use crate::core::warning::warning;

/// One node's labels, sorted by key: plain data, so the engine stays free of client types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLabels(Box<[(Box<str>, Box<str>)]>);

impl NodeLabels {
    pub fn new<K: Into<Box<str>>, V: Into<Box<str>>>(
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut pairs: Vec<(Box<str>, Box<str>)> = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Self(pairs.into_boxed_slice())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The cluster's nodes by name, with their labels.
pub type ClusterNodes = HashMap<String, NodeLabels>;

/// Whether `labels` satisfy every `key=value` of `selector` (an empty selector matches any node).
pub fn selector_matches(selector: &BTreeMap<String, String>, labels: &NodeLabels) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value.as_str()))
}

/// Whether at least one node satisfies `selector`. An empty selector always does, even with no
/// nodes: the class does not constrain scheduling, so this check has nothing to say.
pub fn any_node_matches(selector: &BTreeMap<String, String>, nodes: &ClusterNodes) -> bool {
    selector.is_empty()
        || nodes
            .values()
            .any(|labels| selector_matches(selector, labels))
}

/// The warning of behaviour.md §11 when no node satisfies the class's `selector`; `None` when one
/// does (or the selector is empty).
pub fn unschedulable_warning(
    class: &str,
    selector: &BTreeMap<String, String>,
    nodes: &ClusterNodes,
) -> Option<String> {
    if any_node_matches(selector, nodes) {
        return None;
    }
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(warning(&format!(
        "no node matches RuntimeClass \"{class}\" ({}); the pod will stay Pending",
        pairs.join(",")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn nodes(sets: &[&[(&str, &str)]]) -> ClusterNodes {
        sets.iter()
            .enumerate()
            .map(|(i, labels)| (format!("node-{i}"), NodeLabels::new(labels.iter().copied())))
            .collect()
    }

    #[test]
    fn a_node_with_every_selector_label_matches() {
        let spin = selector(&[("kubernetes.io/arch", "amd64"), ("spin", "provisioned")]);
        let cluster = nodes(&[
            &[("kubernetes.io/arch", "amd64")],
            &[
                ("kubernetes.io/arch", "amd64"),
                ("spin", "provisioned"),
                ("z", "1"),
            ],
        ]);
        assert!(any_node_matches(&spin, &cluster));
        assert_eq!(unschedulable_warning("spin", &spin, &cluster), None);
    }

    #[test]
    fn labels_spread_over_two_nodes_do_not_match() {
        let spin = selector(&[("kubernetes.io/arch", "amd64"), ("spin", "provisioned")]);
        let cluster = nodes(&[
            &[("kubernetes.io/arch", "amd64")],
            &[("kubernetes.io/arch", "arm64"), ("spin", "provisioned")],
        ]);
        assert!(!any_node_matches(&spin, &cluster));
    }

    #[test]
    fn a_value_must_be_equal_not_a_prefix() {
        let spin = selector(&[("spin", "provisioned")]);
        assert!(!any_node_matches(
            &spin,
            &nodes(&[&[("spin", "provisioned-not")], &[("spin", "")]])
        ));
    }

    #[test]
    fn an_empty_selector_never_warns_even_without_nodes() {
        assert_eq!(
            unschedulable_warning("wasm", &BTreeMap::new(), &ClusterNodes::new()),
            None
        );
    }

    #[test]
    fn no_nodes_at_all_warns_for_a_class_with_a_selector() {
        let spin = selector(&[("wasm-admission.io/runtime-spin", "true")]);
        assert_eq!(
            unschedulable_warning("spin", &spin, &ClusterNodes::new()).as_deref(),
            Some(
                "wasm-admission: no node matches RuntimeClass \"spin\" (wasm-admission.io/runtime-spin=true); the pod will stay Pending"
            )
        );
    }

    #[test]
    fn the_warning_names_every_pair_and_is_cut_to_120_characters() {
        let long = selector(&[
            ("a.example.com/first-long-label", "provisioned"),
            ("b.example.com/second-long-label", "provisioned"),
        ]);
        let w = unschedulable_warning("wasmtime-spin-v2", &long, &ClusterNodes::new())
            .expect("a warning");
        assert_eq!(w.chars().count(), 120, "{w}");
        assert!(w.starts_with(
            "wasm-admission: no node matches RuntimeClass \"wasmtime-spin-v2\" (a.example.com/first-long-label=provisioned,b."
        ));
        assert!(w.ends_with('…'));
    }

    #[test]
    fn node_labels_look_up_by_key_whatever_the_input_order() {
        let labels = NodeLabels::new([("b", "2"), ("a", "1"), ("c", "3")]);
        assert_eq!(labels.get("a"), Some("1"));
        assert_eq!(labels.get("c"), Some("3"));
        assert_eq!(labels.get("d"), None);
        assert_eq!(labels.len(), 3);
    }
}
