//! SPEC §4.2: default requests and limits for every container and init container.

use std::collections::BTreeMap;

use crate::config::ResourceDefaults;
use crate::engine::model::{Container, QuantityText, Str};
use crate::engine::{PodView, warning};
use crate::patch::{Node, PatchBuilder};
use crate::quantity::Quantity;

/// Adds each default that a container lacks. A default request never exceeds the container's
/// limit (the limit's value is used instead); a default limit is not added below the
/// container's request.
pub fn apply(
    view: &PodView<'_, '_>,
    defaults: &ResourceDefaults,
    patch: &mut PatchBuilder<'_>,
    warnings: &mut Vec<String>,
) -> bool {
    let mut changed = false;
    let all = [
        ("containers", view.spec.containers()),
        ("initContainers", view.spec.init_containers()),
    ];
    for (list, containers) in all {
        for (index, container) in containers.iter().enumerate() {
            let index = index.to_string();
            for (resource, value) in container_defaults(container, defaults, warnings) {
                let (section, text) = value;
                let path = view.spec_path(&[list, &index, "resources", section, resource]);
                patch.add(&path, Node::str(text));
                changed = true;
            }
        }
    }
    changed
}

type Addition<'d> = (&'d str, (&'static str, String));

/// The `(resource, (section, value))` pairs to add to one container.
fn container_defaults<'d>(
    container: &Container<'_>,
    defaults: &'d ResourceDefaults,
    warnings: &mut Vec<String>,
) -> Vec<Addition<'d>> {
    let empty: BTreeMap<Str<'_>, QuantityText<'_>> = BTreeMap::new();
    let resources = container.resources.as_ref();
    let requests = resources
        .and_then(|r| r.requests.as_ref())
        .unwrap_or(&empty);
    let limits = resources.and_then(|r| r.limits.as_ref()).unwrap_or(&empty);
    let mut parse = |section: &str, resource: &str, q: &QuantityText<'_>| match Quantity::parse(
        &q.0,
    ) {
        Ok(q) => Some(q),
        Err(_) => {
            warnings.push(warning(&format!(
                "container \"{}\": resources.{section}.{resource} {:?} is not a quantity; no default set",
                container.name, q.0
            )));
            None
        }
    };

    let mut out = Vec::new();
    let names = defaults.requests.keys().chain(defaults.limits.keys());
    let mut seen = std::collections::BTreeSet::new();
    for resource in names.filter(|r| seen.insert(r.as_str())) {
        let request = requests.get(resource.as_str());
        let limit = limits.get(resource.as_str());
        // An existing value that is not a quantity leaves this resource alone.
        let request_q = match request.map(|q| parse("requests", resource, q)) {
            Some(None) => continue,
            other => other.flatten(),
        };
        let limit_q = match limit.map(|q| parse("limits", resource, q)) {
            Some(None) => continue,
            other => other.flatten(),
        };
        let mut effective_request = request_q;
        if request.is_none()
            && let Some(default) = defaults.requests.get(resource)
        {
            let (text, value) = match (&limit_q, limit) {
                (Some(l), Some(raw)) if default > l => (raw.0.to_string(), l.clone()),
                _ => (default.as_str().to_string(), default.clone()),
            };
            out.push((resource.as_str(), ("requests", text)));
            effective_request = Some(value);
        }
        if limit.is_none()
            && let Some(default) = defaults.limits.get(resource)
            && effective_request.as_ref().is_none_or(|r| r <= default)
        {
            out.push((resource.as_str(), ("limits", default.as_str().to_string())));
        }
    }
    out
}
