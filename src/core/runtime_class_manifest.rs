//! RuntimeClass documents in `check`'s input (behaviour.md §3 rule 3b, §11): what the rules read of
//! each, exactly as `serve`'s RuntimeClass watch keeps it ([`RuntimeClassInfo`]: the handler,
//! `scheduling` and `overhead.podFixed`), so that a bundle that ships its classes beside its workloads gets
//! the same answers from `check` as from `serve` once the classes are applied.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::core::detection::RuntimeClassInfo;

/// The top-level fields of a `node.k8s.io/v1` RuntimeClass.
const FIELDS: [&str; 6] = [
    "apiVersion",
    "kind",
    "metadata",
    "handler",
    "overhead",
    "scheduling",
];

/// The fields of its `scheduling`.
const SCHEDULING_FIELDS: [&str; 2] = ["nodeSelector", "tolerations"];

/// A RuntimeClass document read for the rules: its name and what the watch would keep, or why it
/// cannot be used; and the problems worth a warning line either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassDocument {
    /// `None` when the document cannot be used (no name, no handler).
    pub class: Option<(String, RuntimeClassInfo)>,
    /// Problems to report, each a short sentence.
    pub problems: Vec<String>,
}

/// Whether `object` is a RuntimeClass (`node.k8s.io`, any version).
pub fn is_runtime_class(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("RuntimeClass")
        && object
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("node.k8s.io/"))
}

/// Reads a RuntimeClass document. Unknown fields are reported and ignored (the apiserver would
/// refuse them, so the class may not look as written once applied); a class without a name or a
/// handler is reported and not used.
pub fn read(object: &Value) -> ClassDocument {
    let mut problems = Vec::new();
    if let Some(map) = object.as_object() {
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !FIELDS.contains(k))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!(
                "unknown field(s) {} (a RuntimeClass has {}); ignored",
                unknown.join(", "),
                FIELDS.join(", ")
            ));
        }
    }
    let scheduling = object.get("scheduling");
    if let Some(map) = scheduling.and_then(Value::as_object) {
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !SCHEDULING_FIELDS.contains(k))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!(
                "unknown field(s) scheduling.{} (scheduling has nodeSelector, tolerations); ignored",
                unknown.join(", scheduling.")
            ));
        }
    }
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let handler = object
        .get("handler")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let mut node_selector = BTreeMap::new();
    match scheduling.and_then(|s| s.get("nodeSelector")) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match value.as_str() {
                    Some(v) => {
                        node_selector.insert(key.clone(), v.to_string());
                    }
                    None => problems.push(format!(
                        "scheduling.nodeSelector.{key} is not a string; ignored"
                    )),
                }
            }
        }
        Some(_) => problems.push("scheduling.nodeSelector is not a map; ignored".to_string()),
    }
    let tolerations = match scheduling.and_then(|s| s.get("tolerations")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().filter(|t| t.is_object()).cloned().collect(),
        Some(_) => {
            problems.push("scheduling.tolerations is not a list; ignored".to_string());
            Vec::new()
        }
    };
    let mut overhead = BTreeMap::new();
    match object.get("overhead").and_then(|o| o.get("podFixed")) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (resource, quantity) in map {
                match quantity.as_str() {
                    Some(q) => {
                        overhead.insert(resource.clone(), q.to_string());
                    }
                    None => problems.push(format!(
                        "overhead.podFixed.{resource} is not a quantity string; ignored"
                    )),
                }
            }
        }
        Some(_) => problems.push("overhead.podFixed is not a map; ignored".to_string()),
    }
    let class = match (name, handler) {
        (None, _) => {
            problems.push("no metadata.name; not used".to_string());
            None
        }
        (Some(_), None) => {
            problems.push(
                "no handler (a RuntimeClass needs one); not used to recognize Wasm classes"
                    .to_string(),
            );
            None
        }
        (Some(name), Some(handler)) => Some((
            name.to_string(),
            RuntimeClassInfo {
                handler: handler.to_string(),
                node_selector,
                tolerations,
                overhead,
            },
        )),
    };
    ClassDocument { class, problems }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_class_gives_its_handler_and_node_selector_as_the_watch_keeps_them() {
        let doc = read(&json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": "my-spin"}, "handler": "spin",
            "scheduling": {"nodeSelector": {"spin": "yes"}}
        }));
        assert!(doc.problems.is_empty());
        let (name, info) = doc.class.unwrap();
        assert_eq!(name, "my-spin");
        assert_eq!(info.handler, "spin");
        assert_eq!(
            info.node_selector.get("spin").map(String::as_str),
            Some("yes")
        );
    }

    #[test]
    fn a_class_without_handler_is_reported_and_not_used() {
        let doc = read(&json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "x"}
        }));
        assert_eq!(doc.class, None);
        assert!(doc.problems[0].contains("no handler"), "{:?}", doc.problems);
    }

    #[test]
    fn unknown_fields_are_reported_and_the_class_still_used() {
        let doc = read(&json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "x"},
            "handler": "wasm", "spec": {"handler": "wasm"}, "scheduling": {"nodeSelektor": {}}
        }));
        assert!(doc.class.is_some());
        assert!(
            doc.problems.iter().any(|p| p.contains("spec")),
            "{:?}",
            doc.problems
        );
        assert!(
            doc.problems
                .iter()
                .any(|p| p.contains("scheduling.nodeSelektor"))
        );
    }

    #[test]
    fn only_node_k8s_io_runtime_classes_count() {
        assert!(is_runtime_class(
            &json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass"})
        ));
        assert!(!is_runtime_class(
            &json!({"apiVersion": "example.com/v1", "kind": "RuntimeClass"})
        ));
    }
}
