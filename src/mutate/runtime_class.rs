//! SPEC §4.1: `runtimeClassName`.

use std::collections::HashSet;

use crate::engine::{PodView, warning};
use crate::patch::{Node, PatchBuilder};

/// Adds `runtimeClassName: wanted` when the pod spec has none. A pod that names another class
/// keeps it, with a warning. When the cluster's RuntimeClasses are known and `wanted` is not
/// among them, it is still injected and a warning says why the pods will not start.
pub fn apply<'v>(
    view: &PodView<'_, '_>,
    wanted: &'v str,
    known: Option<&HashSet<String>>,
    patch: &mut PatchBuilder<'v>,
    warnings: &mut Vec<String>,
) -> bool {
    match view.spec.runtime_class_name.as_deref() {
        None | Some("") => {
            patch.add(&view.spec_path(&["runtimeClassName"]), Node::str(wanted));
            if known.is_some_and(|k| !k.contains(wanted)) {
                warnings.push(warning(&format!(
                    "RuntimeClass \"{wanted}\" does not exist in this cluster; its pods will not start"
                )));
            }
            true
        }
        Some(existing) if existing != wanted => {
            warnings.push(warning(&format!(
                "runtimeClassName \"{existing}\" kept; the Wasm default \"{wanted}\" was not applied"
            )));
            false
        }
        Some(_) => false,
    }
}
