//! The MutatingAdmissionPolicy: behaviour.md §4 as one JSON Patch expression, computed from the
//! object as received, like the webhook's patch.
//!
//! Where the webhook adds a value under a parent that does not exist, the expression adds the
//! parent whole (`resources`, `resources.requests`, `env`, `annotations`, the template's
//! `metadata`), so the stored object is the same.

use serde_json::{Value, json};

use super::cel;
use super::common::{self, Variables, annotation, pod_entry};
use crate::core::config::{Config, ResourceDefaults};
use crate::core::engine::{ANN_INJECTED, ANN_OTEL, ANN_OTEL_ENDPOINT};
use crate::core::kinds::WorkloadKind;
use crate::core::mutate::Change;
use crate::core::mutate::otel::{
    ANN_SERVICE_NAME, ENDPOINT, LABEL_APP_NAME, NODE_NAME, POD_NAME, RESOURCE_ATTRIBUTES,
    SERVICE_NAME,
};

/// The variables and the one mutation of the policy.
pub fn spec(config: &Config, failure_policy: &str) -> Value {
    let mut vars = Variables::default();
    common::locate(&mut vars);
    common::detect(config, &mut vars);
    common::profile(config, &mut vars);
    resources(config, &mut vars);
    otel(config, &mut vars);
    annotations(config, &mut vars);
    // Variables cannot name the JSONPatch type: they build `{'path', 'value'}` maps, every
    // operation an `add`.
    let patch = "!variables.isWasm || !variables.profileKnown ? [] : \
                 (variables.classPatch + variables.resourcePatch + variables.otelPatch + \
                 variables.annotationPatch).map(p, JSONPatch{op: 'add', path: p.path, value: p.value})";
    json!({
        "failurePolicy": failure_policy,
        "reinvocationPolicy": "IfNeeded",
        "matchConstraints": {
            "resourceRules": common::resource_rules(config.mutate_templates, false, false),
            "namespaceSelector": common::namespace_selector(config),
            "objectSelector": common::object_selector(),
        },
        "matchConditions": common::match_conditions(config, true),
        "variables": vars.to_json(),
        "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": patch}}],
    })
}

/// `profile`: the defaults chosen by `wasm-admission.io/resource-profile`, else `resources`, as
/// a map `{'requests': {...}, 'limits': {...}}` of quantity strings.
fn profile_map(defaults: &ResourceDefaults) -> String {
    let section = |m: &std::collections::BTreeMap<String, crate::core::quantity::Quantity>| {
        cel::string_map(m.iter().map(|(k, q)| (k.as_str(), q.as_str())))
    };
    format!(
        "{{'requests': dyn({}), 'limits': dyn({})}}",
        section(&defaults.requests),
        section(&defaults.limits)
    )
}

/// behaviour.md §4.2. `resourceAdds`/`initResourceAdds`: per container, the requests and limits to add
/// (`{'requests': {...}, 'limits': {...}}`); `resourcePatch`: the operations.
fn resources(config: &Config, vars: &mut Variables) {
    let profiles: Vec<String> = config
        .resource_profiles
        .iter()
        .map(|(name, p)| format!("{}: {}", cel::string(name), profile_map(p)))
        .collect();
    vars.add(
        "profile",
        format!(
            "variables.profileKnown && variables.profileName.hasValue() ? \
             {{{}}}[variables.profileName.value()] : {}",
            profiles.join(", "),
            profile_map(&config.resources)
        ),
    );
    // A default request never above the container's limit; a default limit never below the
    // container's request (or the request being added, which is the default request here).
    let req = "c.?resources.?requests.orValue({})";
    let lim = "c.?resources.?limits.orValue({})";
    let adds = format!(
        "{{'requests': dyn(variables.profile.requests.transformMap(r, d, !(r in {req}), \
         r in {lim} && quantity(d).compareTo(quantity({lim}[r])) > 0 ? {lim}[r] : d)), \
         'limits': dyn(variables.profile.limits.transformMap(r, d, !(r in {lim}) && \
         (r in {req} ? quantity({req}[r]).compareTo(quantity(d)) <= 0 : \
         !(r in variables.profile.requests) || quantity(variables.profile.requests[r]).compareTo(quantity(d)) <= 0), d))}}"
    );
    let mut parts = Vec::new();
    for (list, var) in [
        ("containers", "resourceAdds"),
        ("initContainers", "initResourceAdds"),
    ] {
        vars.add(
            var,
            format!("variables.spec.?{list}.orValue([]).map(c, {adds})"),
        );
        let at = format!("variables.specPath + '/{list}/' + string(x) + '/resources'");
        let a = format!("variables.{var}[x]");
        let section = |name: &str| {
            format!(
                "(size({a}.{name}) == 0 ? [] : !has(c.resources.{name}) ? \
                 [dyn({{'path': dyn({at} + '/{name}'), 'value': dyn({a}.{name})}})] : \
                 {a}.{name}.transformList(r, q, dyn({{'path': dyn({at} + '/{name}/' + r.replace('~', '~0').replace('/', '~1')), 'value': dyn(q)}})))"
            )
        };
        parts.push(format!(
            "variables.spec.?{list}.orValue([]).transformList(x, c, \
             size({a}.requests) + size({a}.limits) == 0 ? [] : \
             !has(c.resources) ? [dyn({{'path': dyn({at}), 'value': dyn(\
             {{?'requests': size({a}.requests) > 0 ? optional.of({a}.requests) : optional.none(), \
             ?'limits': size({a}.limits) > 0 ? optional.of({a}.limits) : optional.none()}})}})] : \
             {} + {}).flatten()",
            section("requests"),
            section("limits")
        ));
    }
    vars.add("resourcePatch", parts.join(" + "));
    vars.add(
        "resourcesChanged",
        "variables.resourceAdds.exists(a, size(a.requests) + size(a.limits) > 0) || \
         variables.initResourceAdds.exists(a, size(a.requests) + size(a.limits) > 0)",
    );
}

/// behaviour.md §4.3: the OpenTelemetry variables each container lacks (`otelAdds`), and
/// `otelPatch`.
fn otel(config: &Config, vars: &mut Variables) {
    if !config.otel.enabled {
        vars.add("otelAdds", "[]");
        vars.add("otelPatch", "[]");
        return;
    }
    vars.add(
        "otelOn",
        format!(
            "{}.orValue('') != 'false' && !variables.spec.?containers.orValue([]).exists(c, \
             c.?env.orValue([]).exists(e, e.name == {}))",
            annotation(ANN_OTEL),
            cel::string(NODE_NAME)
        ),
    );
    vars.add(
        "otelEndpoint",
        format!(
            "{ann}.orValue('') != '' ? {ann}.value() : {}",
            cel::string(&config.otel.endpoint),
            ann = annotation(ANN_OTEL_ENDPOINT)
        ),
    );
    vars.add(
        "objectName",
        "request.?name.orValue('') != '' ? request.name : object.metadata.?name.orValue('')",
    );
    // The controlling owner, else the first; a ReplicaSet named `<deployment>-<pod-template-hash>`
    // gives the Deployment's name.
    vars.add("owners", "object.metadata.?ownerReferences.orValue([])");
    vars.add(
        "owner",
        "variables.owners.exists(o, o.?controller.orValue(false)) ? \
         variables.owners.filter(o, o.?controller.orValue(false))[0] : \
         size(variables.owners) > 0 ? variables.owners[0] : {}",
    );
    vars.add(
        "ownerName",
        format!(
            "variables.owner.?kind.orValue('') == 'ReplicaSet' && {hash} != '' && \
             variables.owner.?name.orValue('').endsWith('-' + {hash}) && \
             size(variables.owner.name) > size({hash}) + 1 ? \
             variables.owner.name.substring(0, size(variables.owner.name) - size({hash}) - 1) : \
             variables.owner.?name.orValue('')",
            hash = pod_entry("podLabels", "pod-template-hash")
        ),
    );
    let service_ann = pod_entry("podAnnotations", ANN_SERVICE_NAME);
    let app_label = pod_entry("podLabels", LABEL_APP_NAME);
    vars.add(
        "serviceName",
        format!(
            "{service_ann} != '' ? {service_ann} : {app_label} != '' ? {app_label} : \
             request.kind.kind == 'Pod' && variables.ownerName != '' ? variables.ownerName : \
             variables.objectName != '' ? variables.objectName : \
             object.metadata.?generateName.orValue('').find('^.*[^-]')"
        ),
    );
    let kind_attrs: Vec<(&str, &str)> = WorkloadKind::ALL
        .into_iter()
        .filter_map(|k| k.otel_name_attribute().map(|a| (k.as_str(), a)))
        .collect();
    vars.add(
        "workloadAttribute",
        format!(
            "variables.objectName != '' ? {}[?request.kind.kind].orValue('') : ''",
            cel::string_map(kind_attrs)
        ),
    );
    let field = |name: &str, path: &str| {
        format!(
            "dyn({{'name': dyn({}), 'valueFrom': dyn({{'fieldRef': {{'fieldPath': {}}}}})}})",
            cel::string(name),
            cel::string(path)
        )
    };
    let value = |name: &str, value: &str| {
        format!(
            "dyn({{'name': dyn({}), 'value': dyn({value})}})",
            cel::string(name)
        )
    };
    // Sorted as whole `key=value` strings: no key is a prefix of another, so this is the order
    // by key.
    let attributes = "(['k8s.container.name=' + c.name, 'k8s.namespace.name=' + request.namespace, \
         'k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)', 'k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)'] + \
         (variables.workloadAttribute != '' ? [variables.workloadAttribute + '=' + variables.objectName] : [])).sort().join(',')";
    vars.add(
        "otelAdds",
        format!(
            "!variables.otelOn ? [] : variables.spec.?containers.orValue([]).map(c, [{}, {}, {}, {}, {}]\
             .filter(v, !c.?env.orValue([]).exists(e, e.name == v.name)))",
            value(SERVICE_NAME, "variables.serviceName"),
            value(ENDPOINT, "variables.otelEndpoint"),
            field(POD_NAME, "metadata.name"),
            field(NODE_NAME, "spec.nodeName"),
            value(RESOURCE_ATTRIBUTES, attributes),
        ),
    );
    vars.add(
        "otelPatch",
        "size(variables.otelAdds) == 0 ? [] : variables.spec.?containers.orValue([]).transformList(x, c, \
         size(variables.otelAdds[x]) == 0 ? [] : !has(c.env) ? \
         [dyn({'path': dyn(variables.specPath + '/containers/' + string(x) + '/env'), 'value': dyn(variables.otelAdds[x])})] : \
         variables.otelAdds[x].map(v, dyn({'path': dyn(variables.specPath + '/containers/' + string(x) + '/env/-'), 'value': dyn(v)}))).flatten()",
    );
}

/// behaviour.md §4.1, §4.4 and §4.5: `runtimeClassName`, `podAnnotations` and
/// `wasm-admission.io/injected`.
fn annotations(config: &Config, vars: &mut Variables) {
    vars.add(
        "classPatch",
        format!(
            "variables.spec.?runtimeClassName.orValue('') != '' ? [] : \
             [dyn({{'path': dyn(variables.specPath + '/runtimeClassName'), 'value': dyn(\
             variables.runtimeClassAnnotation != '' ? variables.runtimeClassAnnotation : {})}})]",
            cel::string(&config.runtime_class_name)
        ),
    );
    let configured: Vec<&str> = config.pod_annotations.keys().map(String::as_str).collect();
    vars.add(
        "annotationsAdded",
        format!(
            "{}.filter(k, !(k in variables.podAnnotations))",
            cel::strings(configured)
        ),
    );
    vars.add(
        "changes",
        "(size(variables.classPatch) > 0 ? ['runtime-class'] : []) + \
         (variables.resourcesChanged ? ['resources'] : []) + \
         (variables.otelAdds.exists(a, size(a) > 0) ? ['otel'] : []) + \
         (size(variables.annotationsAdded) > 0 ? ['annotations'] : [])",
    );
    let order: Vec<&str> = Change::ALL.iter().map(|c| c.as_str()).collect();
    let injected = cel::string(ANN_INJECTED);
    vars.add(
        "injected",
        format!(
            "{}.filter(k, k in variables.changes || \
             (variables.podAnnotations[?{injected}].hasValue() && \
             k in variables.podAnnotations[{injected}].split(',').map(s, s.trim()))).join(',')",
            cel::strings(order)
        ),
    );
    // Every annotation to add, as one map: the configured ones that are absent, then
    // `injected` (present or not: the webhook replaces it with the union).
    let mut entries: Vec<String> = config
        .pod_annotations
        .iter()
        .map(|(k, v)| {
            let k = cel::string(k);
            format!(
                "?{k}: !({k} in variables.podAnnotations) ? optional.of({}) : optional.none()",
                cel::string(v)
            )
        })
        .collect();
    entries.push(format!("{injected}: variables.injected"));
    vars.add("annotationAdds", format!("{{{}}}", entries.join(", ")));
    vars.add(
        "annotationPatch",
        "size(variables.changes) == 0 ? [] : \
         !has(variables.pod.metadata) ? [dyn({'path': dyn(variables.podMetaPath), 'value': dyn({'annotations': variables.annotationAdds})})] : \
         !has(variables.pod.metadata.annotations) ? [dyn({'path': dyn(variables.podMetaPath + '/annotations'), 'value': dyn(variables.annotationAdds)})] : \
         variables.annotationAdds.transformList(k, v, dyn({'path': dyn(variables.podMetaPath + '/annotations/' + k.replace('~', '~0').replace('/', '~1')), 'value': dyn(v)}))",
    );
}
