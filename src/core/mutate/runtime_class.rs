//! behaviour.md §4.1: `runtimeClassName`.

use crate::core::detection::ClusterRuntimeClasses;
use crate::core::model::PodView;
use crate::core::patch::{Node, PatchBuilder};
use crate::core::warning::warning;

/// Adds `runtimeClassName: wanted` when the pod spec has none. A pod that names another class
/// keeps it, with a warning unless `runs_wasm` says that class is known to run this pod as Wasm.
/// When the cluster's RuntimeClasses are known and `wanted` is not among them, it is still
/// injected and a warning says why the pods will not start.
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
