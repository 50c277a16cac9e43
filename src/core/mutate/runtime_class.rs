//! behaviour.md §4.1: `runtimeClassName`.

use std::borrow::Cow;

use crate::core::detection::{ClusterRuntimeClasses, RuntimeClassInfo};
use crate::core::kinds::WorkloadKind;
use crate::core::model::PodView;
use crate::core::patch::{APPEND, Node, PatchBuilder};
use crate::core::warning::warning;

/// Adds `runtimeClassName: wanted` when the pod spec has none. A pod that names another class
/// keeps it, with a warning unless `runs_wasm` says that class is known to run this pod as Wasm.
/// When the cluster's RuntimeClasses are known and `wanted` is not among them, it is still
/// injected and a warning says why the pods will not start; when it is among them, a Pod also
/// gets the class's scheduling and overhead ([`class_scheduling`]).
pub fn apply<'v>(
    view: &PodView<'_, '_>,
    wanted: &'v str,
    known: Option<&ClusterRuntimeClasses>,
    runs_wasm: impl Fn(&str) -> bool,
    patch: &mut PatchBuilder<'v>,
    warnings: &mut Vec<String>,
) -> bool {
    match view.spec.runtime_class_name.as_deref() {
        None | Some("") => {
            patch.add(&view.spec_path(&["runtimeClassName"]), Node::str(wanted));
            if let Some(info) = known.and_then(|k| k.get(wanted)) {
                class_scheduling(view, info, patch);
            }
            if known.is_some_and(|k| !k.contains_key(wanted)) {
                warnings.push(warning(&format!(
                    "RuntimeClass \"{wanted}\" does not exist in this cluster; its pods will not start"
                )));
            }
            true
        }
        Some(existing) if existing != wanted && !runs_wasm(existing) => {
            warnings.push(warning(&format!(
                "runtimeClassName \"{existing}\" kept; the Wasm default \"{wanted}\" was not applied"
            )));
            false
        }
        Some(_) => false,
    }
}

/// The injected class's `scheduling` (node selector, tolerations) and `overhead.podFixed`,
/// added to a Pod (not a template) where it lacks them, as the RuntimeClass admission plugin
/// would merge them one step later. Written here, the plugin's second pass finds nothing to
/// change, so the apiserver does not call `/mutate` a second time for a Pod whose class the
/// webhook injected (behaviour.md §6, "Reinvocation"). A node-selector key the Pod already sets
/// is left as it is (the plugin refuses a different value, with its own message).
fn class_scheduling(view: &PodView<'_, '_>, info: &RuntimeClassInfo, patch: &mut PatchBuilder<'_>) {
    if view.kind != WorkloadKind::Pod {
        return;
    }
    match &view.spec.node_selector {
        None if !info.node_selector.is_empty() => {
            if let Some(node) = json(&info.node_selector) {
                patch.add(&view.spec_path(&["nodeSelector"]), node);
            }
        }
        Some(existing) => {
            for (key, value) in &info.node_selector {
                if !existing.contains_key(key) {
                    patch.add(
                        &view.spec_path(&["nodeSelector", key]),
                        Node::str(value.clone()),
                    );
                }
            }
        }
        None => {}
    }
    match &view.spec.tolerations {
        None if !info.tolerations.is_empty() => {
            if let Some(node) = json(&info.tolerations) {
                patch.add(&view.spec_path(&["tolerations"]), node);
            }
        }
        Some(existing) => {
            let missing = info
                .tolerations
                .iter()
                .filter(|t| !existing.contains(t))
                .filter_map(json);
            patch.add_all(&view.spec_path(&["tolerations", APPEND]), missing);
        }
        None => {}
    }
    if view.spec.overhead.is_none()
        && !info.overhead.is_empty()
        && let Some(node) = json(&info.overhead)
    {
        patch.add(&view.spec_path(&["overhead"]), node);
    }
}

/// A value as compact JSON, for the patch.
fn json<'v>(value: &impl serde::Serialize) -> Option<Node<'v>> {
    serde_json::to_string(value)
        .ok()
        .map(|text| Node::Json(Cow::Owned(text)))
}
