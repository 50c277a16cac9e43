//! behaviour.md §4.2: default requests and limits for every container and init container.

use smallvec::SmallVec;

use crate::core::config::ResourceDefaults;
use crate::core::model::PodView;
use crate::core::model::{Container, QuantityText};
use crate::core::patch::{Node, PatchBuilder};
use crate::core::quantity::Quantity;
use crate::core::warning::warning;

/// Adds each default that a container lacks. A default request never exceeds the container's
/// limit (the limit's value is used instead); a default limit is not added below the
/// container's request.
pub fn apply<'v>(
    view: &PodView<'v, '_>,
    defaults: &'v ResourceDefaults,
    patch: &mut PatchBuilder<'v>,
    warnings: &mut Vec<String>,
) -> bool {
    let mut changed = false;
    let all = [
        ("containers", view.spec.containers()),
        ("initContainers", view.spec.init_containers()),
    ];
    for (list, containers) in all {
        for (index, container) in containers.iter().enumerate() {
            let mut digits = itoa::Buffer::new();
            let index = digits.format(index);
            for (resource, section, text) in container_defaults(container, defaults, warnings) {
                let path = view.spec_path(&[list, index, "resources", section, resource]);
                patch.add(&path, Node::str(text));
                changed = true;
            }
        }
    }
    changed
}

/// `(resource, section, value)`: one value to add to a container.
type Addition<'v> = (&'v str, &'static str, &'v str);

/// The values to add to one container, borrowed from the defaults or the container.
fn container_defaults<'v>(
    container: &'v Container<'_>,
    defaults: &'v ResourceDefaults,
    warnings: &mut Vec<String>,
) -> SmallVec<[Addition<'v>; 4]> {
    let resources = container.resources.as_ref();
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
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

    let mut out = SmallVec::new();
    // Each resource named by a default, once: the requests' names, then the limits' others.
    let names = defaults.requests.keys().chain(
        defaults
            .limits
            .keys()
            .filter(|r| !defaults.requests.contains_key(*r)),
    );
    for resource in names {
        let request = requests.and_then(|m| m.get(resource.as_str()));
        let limit = limits.and_then(|m| m.get(resource.as_str()));
        // An existing value that is not a quantity leaves this resource alone.
        let request_q = match request.map(|q| parse("requests", resource, q)) {
            Some(None) => continue,
            other => other.flatten(),
        };
        let limit_q = match limit.map(|q| parse("limits", resource, q)) {
            Some(None) => continue,
            other => other.flatten(),
        };
        let mut effective_request = request_q.as_ref();
        if request.is_none()
            && let Some(default) = defaults.requests.get(resource)
        {
            let (text, value) = match (&limit_q, limit) {
                (Some(l), Some(raw)) if default > l => (&*raw.0, l),
                _ => (default.as_str(), default),
            };
            out.push((resource.as_str(), "requests", text));
            effective_request = Some(value);
        }
        if limit.is_none()
            && let Some(default) = defaults.limits.get(resource)
            && effective_request.is_none_or(|r| r <= default)
        {
            out.push((resource.as_str(), "limits", default.as_str()));
        }
    }
    out
}
