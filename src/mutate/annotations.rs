//! SPEC §4.4: pod annotations from `podAnnotations`, each only where absent.

use std::collections::BTreeMap;

use serde_json::json;

use crate::engine::PodView;
use crate::patch::PatchBuilder;

pub fn apply(
    view: &PodView<'_, '_>,
    wanted: &BTreeMap<String, String>,
    patch: &mut PatchBuilder<'_>,
) -> bool {
    let existing = view.pod_annotations();
    let mut changed = false;
    for (key, value) in wanted {
        if !existing.contains_key(key.as_str()) {
            patch.add(&view.pod_meta_path(&["annotations", key]), json!(value));
            changed = true;
        }
    }
    changed
}
