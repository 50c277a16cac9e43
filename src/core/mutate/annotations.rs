//! behaviour.md §4.4: pod annotations from `podAnnotations`, each only where absent.

use std::collections::BTreeMap;

use crate::core::model::view::PodView;
use crate::core::patch::{Node, PatchBuilder};

pub fn apply<'v>(
    view: &PodView<'_, '_>,
    wanted: &'v BTreeMap<String, String>,
    patch: &mut PatchBuilder<'v>,
) -> bool {
    let existing = view.pod_annotations();
    let mut changed = false;
    for (key, value) in wanted {
        if !existing.contains_key(key.as_str()) {
            patch.add(
                &view.pod_meta_path(&["annotations", key]),
                Node::str(value.as_str()),
            );
            changed = true;
        }
    }
    changed
}
