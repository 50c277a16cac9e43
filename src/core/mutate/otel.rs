//! behaviour.md §4.3: OpenTelemetry environment for every container (never init containers).

use std::borrow::Cow;
use std::sync::LazyLock;

use smallvec::SmallVec;

use crate::core::json_text;
use crate::core::kinds::WorkloadKind;
use crate::core::model::Str;
use crate::core::model::view::PodView;
use crate::core::patch::{APPEND, Node, PatchBuilder};

pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const POD_NAME: &str = "OTEL_RESOURCE_ATTRIBUTES_POD_NAME";
pub const NODE_NAME: &str = "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME";
/// `$(POD_NAME)` and `$(NODE_NAME)`: the kubelet expands these references to the variables above.
const POD_NAME_REF: &str = "$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)";
const NODE_NAME_REF: &str = "$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)";
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

pub const ANN_SERVICE_NAME: &str = "resource.opentelemetry.io/service.name";
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";

/// Whether the pod already carries the OpenTelemetry Operator's injection (or ours).
pub fn already_injected(view: &PodView<'_, '_>) -> bool {
    view.spec
        .containers()
        .iter()
        .any(|c| c.env().iter().any(|e| e.name == NODE_NAME))
}

/// Appends the variables each container lacks, in the documented order (behaviour.md §4.5).
pub fn apply<'v>(
    view: &PodView<'_, '_>,
    namespace: &str,
    request_name: &str,
    endpoint: &'v str,
    patch: &mut PatchBuilder<'v>,
) -> bool {
    let service = service_name(view, request_name);
    let workload_name = object_name(view, request_name);
    let mut changed = false;
    for (index, container) in view.spec.containers().iter().enumerate() {
        let defined = |name: &str| container.env().iter().any(|e| e.name == name);
        let mut missing = SmallVec::<[Node<'v>; 5]>::new();
        for name in [
            SERVICE_NAME,
            ENDPOINT,
            POD_NAME,
            NODE_NAME,
            RESOURCE_ATTRIBUTES,
        ] {
            if defined(name) {
                continue;
            }
            missing.push(match name {
                SERVICE_NAME => value_var(name, &service),
                ENDPOINT => value_var(name, endpoint),
                POD_NAME => Node::Json(Cow::Borrowed(&POD_NAME_VAR)),
                NODE_NAME => Node::Json(Cow::Borrowed(&NODE_NAME_VAR)),
                _ => {
                    let workload = view
                        .kind
                        .otel_name_attribute()
                        .zip(workload_name.as_deref());
                    value_var(
                        name,
                        &resource_attributes(&container.name, namespace, workload),
                    )
                }
            });
        }
        if !missing.is_empty() {
            let mut digits = itoa::Buffer::new();
            let index = digits.format(index);
            patch.add_all(
                &view.spec_path(&["containers", index, "env", APPEND]),
                missing,
            );
            changed = true;
        }
    }
    changed
}

/// `OTEL_RESOURCE_ATTRIBUTES`: the pairs joined with `,`, sorted by key.
fn resource_attributes(container: &str, namespace: &str, workload: Option<(&str, &str)>) -> String {
    let mut pairs = [
        ("k8s.container.name", container),
        ("k8s.namespace.name", namespace),
        ("k8s.node.name", NODE_NAME_REF),
        ("k8s.pod.name", POD_NAME_REF),
        ("", ""),
    ];
    let len = match workload {
        Some(w) => {
            pairs[4] = w;
            5
        }
        None => 4,
    };
    let pairs = &mut pairs[..len];
    pairs.sort_unstable_by_key(|(k, _)| *k);
    let mut out = String::with_capacity(160);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// `{"name":NAME,"value":VALUE}`, written once as JSON text: the variables are values the patch
/// carries whole, and a tree of them was a third of this mutation's instructions.
fn value_var<'v>(name: &str, value: &str) -> Node<'v> {
    let mut text = String::with_capacity(name.len() + value.len() + 24);
    text.push_str(r#"{"name":"#);
    json_text::push_quoted(&mut text, name);
    text.push_str(r#","value":"#);
    json_text::push_quoted(&mut text, value);
    text.push('}');
    Node::Json(Cow::Owned(text))
}

/// The two variables that read a field of the pod, the same for every container.
static POD_NAME_VAR: LazyLock<String> =
    LazyLock::new(|| field_ref(POD_NAME, "metadata.name").to_json());
static NODE_NAME_VAR: LazyLock<String> =
    LazyLock::new(|| field_ref(NODE_NAME, "spec.nodeName").to_json());

fn field_ref(name: &'static str, path: &'static str) -> Node<'static> {
    let field = Node::obj([("fieldPath", Node::str(path))]);
    Node::obj([
        ("name", Node::str(name)),
        ("valueFrom", Node::obj([("fieldRef", field)])),
    ])
}

/// The service name: the pod's `resource.opentelemetry.io/service.name` annotation, else its
/// `app.kubernetes.io/name` label, else the workload's name (for a Pod: its owner's).
pub fn service_name(view: &PodView<'_, '_>, request_name: &str) -> String {
    let non_empty = |s: &&Str<'_>| !s.is_empty();
    if let Some(v) = view
        .pod_annotations()
        .get(ANN_SERVICE_NAME)
        .filter(non_empty)
    {
        return v.to_string();
    }
    if let Some(v) = view.pod_labels().get(LABEL_APP_NAME).filter(non_empty) {
        return v.to_string();
    }
    if view.kind == WorkloadKind::Pod
        && let Some(owner) = pod_owner_name(view)
    {
        return owner;
    }
    object_name(view, request_name)
        .or_else(|| {
            view.meta
                .generate_name
                .as_deref()
                .map(|g| g.trim_end_matches('-').to_string())
                .filter(|g| !g.is_empty())
        })
        .unwrap_or_default()
}

fn object_name(view: &PodView<'_, '_>, request_name: &str) -> Option<String> {
    Some(request_name)
        .filter(|n| !n.is_empty())
        .or(view.meta.name.as_deref())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// The controlling owner's name; a ReplicaSet named `<deployment>-<pod-template-hash>` gives the
/// Deployment's name.
fn pod_owner_name(view: &PodView<'_, '_>) -> Option<String> {
    let owners = view.meta.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())?;
    if owner.kind == "ReplicaSet"
        && let Some(hash) = view.pod_labels().get("pod-template-hash")
        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
        && !deployment.is_empty()
    {
        return Some(deployment.to_string());
    }
    Some(owner.name.to_string()).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_written_as_serde_json_writes_them() {
        let cases = [
            (
                value_var(SERVICE_NAME, "cart \"quoted\"\n"),
                serde_json::json!({"name": SERVICE_NAME, "value": "cart \"quoted\"\n"}),
            ),
            (
                Node::Json(Cow::Borrowed(&NODE_NAME_VAR)),
                serde_json::json!({"name": NODE_NAME,
                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
            ),
            (
                Node::Json(Cow::Borrowed(&POD_NAME_VAR)),
                serde_json::json!({"name": POD_NAME,
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            ),
        ];
        for (node, expected) in cases {
            assert_eq!(node.to_json(), serde_json::to_string(&expected).unwrap());
        }
    }

    #[test]
    fn references_name_the_variables() {
        assert_eq!(super::POD_NAME_REF, format!("$({})", super::POD_NAME));
        assert_eq!(super::NODE_NAME_REF, format!("$({})", super::NODE_NAME));
    }
}
