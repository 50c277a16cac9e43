//! SPEC §4.3: OpenTelemetry environment for every container (never init containers).

use crate::engine::PodView;
use crate::engine::model::Str;
use crate::kinds::WorkloadKind;
use crate::patch::{APPEND, Node, PatchBuilder};

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

/// Appends the variables each container lacks, in SPEC order.
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
        let attributes = resource_attributes(
            &container.name,
            namespace,
            view.kind
                .otel_name_attribute()
                .zip(workload_name.as_deref()),
        );
        let value = |name: &'static str, value: Node<'v>| {
            Node::obj([("name", Node::str(name)), ("value", value)])
        };
        let vars: [(&str, Node<'v>); 5] = [
            (
                SERVICE_NAME,
                value(SERVICE_NAME, Node::str(service.clone())),
            ),
            (ENDPOINT, value(ENDPOINT, Node::str(endpoint))),
            (POD_NAME, field_ref(POD_NAME, "metadata.name")),
            (NODE_NAME, field_ref(NODE_NAME, "spec.nodeName")),
            (
                RESOURCE_ATTRIBUTES,
                value(RESOURCE_ATTRIBUTES, Node::str(attributes)),
            ),
        ];
        let mut digits = itoa::Buffer::new();
        let index = digits.format(index);
        for (name, var) in vars {
            if !defined(name) {
                patch.add(&view.spec_path(&["containers", index, "env", APPEND]), var);
                changed = true;
            }
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
    #[test]
    fn references_name_the_variables() {
        assert_eq!(super::POD_NAME_REF, format!("$({})", super::POD_NAME));
        assert_eq!(super::NODE_NAME_REF, format!("$({})", super::NODE_NAME));
    }
}
