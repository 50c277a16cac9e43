//! What both policies share: where the pod spec is (behaviour.md §2), the scope (§6) and Wasm
//! detection (§3 rules 1 to 5), as CEL variables and match conditions.
//!
//! The variables read the object as the apiserver hands it to admission (plain JSON values), so
//! every optional field is read with CEL's `?.` and `orValue`.

use serde_json::{Value, json};

use super::cel;
use crate::core::baseline::APPARMOR_ANNOTATION_PREFIX;
use crate::core::config::Config;
use crate::core::detection::{ANN_RUNTIME_CLASS, ANN_WASM, ANN_WASM_VARIANT, compile_pattern};
use crate::core::engine::{ANN_RESOURCE_PROFILE, LABEL_SKIP};
use crate::core::kinds::WorkloadKind;

/// The opt-in namespace label (behaviour.md §6).
pub const INJECT_LABEL: &str = "wasm-admission.io/inject";

/// Named CEL variables, in the order they may refer to each other.
#[derive(Default)]
pub struct Variables(Vec<(&'static str, String)>);

impl Variables {
    pub fn add(&mut self, name: &'static str, expression: impl Into<String>) {
        self.0.push((name, expression.into()));
    }

    pub fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|(name, expression)| json!({"name": name, "expression": expression}))
                .collect(),
        )
    }
}

/// An annotation read as the engine reads `wasm-admission.io/` annotations: the pod template's
/// value, else the object's own (behaviour.md §3). An optional string.
pub fn annotation(key: &str) -> String {
    let key = cel::string(key);
    format!("variables.podAnnotations[?{key}].or(variables.ownAnnotations[?{key}])")
}

/// The pod's own value of a map entry (`variables.podAnnotations` or `variables.podLabels`),
/// or `''`.
pub fn pod_entry(map: &str, key: &str) -> String {
    format!("variables.{map}[?{}].orValue('')", cel::string(key))
}

/// A JSON-pointer prefix by kind, as a CEL string expression.
fn path_by_kind(path: fn(WorkloadKind) -> &'static [&'static str]) -> String {
    let pointer = |kind| format!("/{}", path(kind).join("/"));
    format!(
        "request.kind.kind == 'Pod' ? {} : request.kind.kind == 'CronJob' ? {} : {}",
        cel::string(&pointer(WorkloadKind::Pod)),
        cel::string(&pointer(WorkloadKind::CronJob)),
        cel::string(&pointer(WorkloadKind::Deployment)),
    )
}

/// The pod template (or the Pod itself), given the CEL text of the object.
pub(super) fn pod_of(object: &str) -> String {
    format!(
        "request.kind.kind == 'Pod' ? {object} : request.kind.kind == 'CronJob' ? \
         {object}.spec.?jobTemplate.?spec.?template.orValue({{}}) : {object}.spec.?template.orValue({{}})"
    )
}

/// The variables that locate the pod and read its annotations and labels.
pub fn locate(vars: &mut Variables) {
    vars.add("pod", pod_of("object"));
    vars.add("spec", "variables.pod.?spec.orValue({})");
    vars.add("specPath", path_by_kind(WorkloadKind::pod_spec_path));
    vars.add("podMetaPath", path_by_kind(WorkloadKind::pod_metadata_path));
    vars.add(
        "podAnnotations",
        "variables.pod.?metadata.?annotations.orValue({})",
    );
    vars.add("podLabels", "variables.pod.?metadata.?labels.orValue({})");
    vars.add("ownAnnotations", "object.metadata.?annotations.orValue({})");
}

/// Wasm detection, rules 1 to 5 (behaviour.md §3), as the variable `rule`: the engine's rule name
/// (`annotation`, `runtime-class-annotation`, `runtime-class-name`, `variant-annotation`,
/// `image-pattern`), `mixed`, or `''` for not Wasm. Also `isWasm` and `runtimeClassAnnotation`.
/// Rule 3b knows the configured class names only (a class's handler needs the cluster).
pub fn detect(config: &Config, vars: &mut Variables) {
    let wasm = cel::string(ANN_WASM);
    vars.add(
        "wasmOff",
        format!(
            "variables.podAnnotations[?{wasm}].orValue('') == 'false' || \
             variables.ownAnnotations[?{wasm}].orValue('') == 'false'"
        ),
    );
    vars.add(
        "runtimeClassAnnotation",
        format!("{}.orValue('')", annotation(ANN_RUNTIME_CLASS)),
    );
    let image_rule = if config.detection.image_patterns.is_empty() {
        "''".to_string()
    } else {
        image_variables(config, vars);
        "size(variables.imageWasm) == 0 ? '' : variables.imageWasm.all(w, w) ? 'image-pattern' : \
         variables.imageWasm.exists(w, w) ? 'mixed' : ''"
            .to_string()
    };
    vars.add(
        "rule",
        format!(
            "variables.wasmOff ? '' : \
             {wasm_ann}.orValue('') == 'true' ? 'annotation' : \
             variables.runtimeClassAnnotation != '' ? 'runtime-class-annotation' : \
             variables.spec.?runtimeClassName.orValue('') in {classes} ? 'runtime-class-name' : \
             {variant}.orValue('') in ['compat', 'compat-smart'] ? 'variant-annotation' : \
             {image_rule}",
            wasm_ann = annotation(ANN_WASM),
            classes = wasm_classes(config),
            variant = annotation(ANN_WASM_VARIANT),
        ),
    );
    vars.add(
        "isWasm",
        "variables.rule != '' && variables.rule != 'mixed'",
    );
}

/// The configured Wasm RuntimeClass names (rule 3b), `runtimeClassName` included, as a CEL list.
fn wasm_classes(config: &Config) -> String {
    let mut classes: Vec<&str> = config
        .detection
        .runtime_classes
        .iter()
        .map(String::as_str)
        .collect();
    if !classes.contains(&config.runtime_class_name.as_str()) {
        classes.push(&config.runtime_class_name);
    }
    cel::strings(classes.into_iter().filter(|c| !c.is_empty()))
}

/// behaviour.md §5's boundary, for the validating policy (after [`locate`] and [`detect`]):
/// `skipped` (the skip label, which opts out of §4 only), `immutableUpdate` and `judged` (a Pod
/// or Job UPDATE is judged when it changes an image or an annotation a rule reads), `exempt`
/// (`security.exemptions`) and `mustCheck`: the pod spec is checked when it names a Wasm class or
/// its images are Wasm, whatever its labels and annotations say, or when detection says Wasm and
/// it is not skipped.
pub fn boundary(config: &Config, vars: &mut Variables) {
    let skip = cel::string(LABEL_SKIP);
    vars.add(
        "skipped",
        format!(
            "object.metadata.?labels[?{skip}].orValue('') == 'true' || \
             variables.podLabels[?{skip}].orValue('') == 'true'"
        ),
    );
    vars.add(
        "immutableUpdate",
        "request.operation == 'UPDATE' && !has(request.subResource) && \
         (request.kind.kind == 'Pod' || request.kind.kind == 'Job')",
    );
    vars.add("oldPod", pod_of("oldObject"));
    let images = |spec: &str| {
        ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .map(|list| {
                format!("{spec}.?{list}.orValue([]).map(c, c.name + '=' + c.?image.orValue(''))")
            })
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let read = format!(
        "k.startsWith('wasm-admission.io/') || k == {} || k.startsWith({})",
        cel::string(ANN_WASM_VARIANT),
        cel::string(APPARMOR_ANNOTATION_PREFIX)
    );
    let annotations = |own: &str, pod: &str| {
        format!(
            "({own}.filter(k, {read}).map(k, k + '=' + {own}[k]) + \
             {pod}.filter(k, {read}).map(k, k + '=' + {pod}[k])).sort()"
        )
    };
    vars.add(
        "judged",
        format!(
            "!variables.immutableUpdate || oldObject == null || \
             {new_images} != {old_images} || {new_ann} != {old_ann}",
            new_images = images("variables.spec"),
            old_images = images("variables.oldPod.?spec.orValue({})"),
            new_ann = annotations("variables.ownAnnotations", "variables.podAnnotations"),
            old_ann = annotations(
                "oldObject.metadata.?annotations.orValue({})",
                "variables.oldPod.?metadata.?annotations.orValue({})"
            ),
        ),
    );
    let exemptions = &config.security.exemptions;
    let mut exempt = Vec::new();
    if !exemptions.namespaces.is_empty() {
        exempt.push(format!(
            "request.namespace in {}",
            cel::strings(exemptions.namespaces.iter().map(String::as_str))
        ));
    }
    if !exemptions.usernames.is_empty() {
        exempt.push(format!(
            "request.userInfo.?username.orValue('') in {}",
            cel::strings(exemptions.usernames.iter().map(String::as_str))
        ));
    }
    if !exemptions.runtime_classes.is_empty() {
        exempt.push(format!(
            "variables.spec.?runtimeClassName.orValue('') in {}",
            cel::strings(exemptions.runtime_classes.iter().map(String::as_str))
        ));
    }
    vars.add(
        "exempt",
        if exempt.is_empty() {
            "false".to_string()
        } else {
            exempt.join(" || ")
        },
    );
    vars.add(
        "classWasm",
        format!(
            "variables.spec.?runtimeClassName.orValue('') in {}",
            wasm_classes(config)
        ),
    );
    vars.add(
        "imagesWasm",
        if config.detection.image_patterns.is_empty() {
            "false"
        } else {
            "size(variables.imageWasm) > 0 && variables.imageWasm.all(w, w)"
        },
    );
    vars.add(
        "mustCheck",
        "variables.judged && !variables.exempt && (variables.classWasm || variables.imagesWasm || \
         (!variables.skipped && variables.isWasm))",
    );
}

/// Rule 5: each container's image matched as written or normalized (`nginx` →
/// `docker.io/library/nginx:latest`, as `detection::normalize_image`), in stages.
fn image_variables(config: &Config, vars: &mut Variables) {
    let regexes: Vec<String> = config
        .detection
        .image_patterns
        .iter()
        // Config validation compiled every pattern already.
        .filter_map(|p| compile_pattern(p).ok())
        .map(|g| format!("(?:{})", cel::glob_regex(&g)))
        .collect();
    let re = cel::string(&regexes.join("|"));
    vars.add(
        "images",
        "variables.spec.?containers.orValue([]).map(c, c.?image.orValue(''))",
    );
    vars.add("imageNames", "variables.images.map(i, i.split('@', 2)[0])");
    vars.add(
        "imageFirst",
        "variables.imageNames.map(n, n.contains('/') ? n.split('/', 2)[0] : '')",
    );
    vars.add(
        "imageBase",
        "variables.imageNames.transformList(x, n, \
         (variables.imageFirst[x] != '' && (variables.imageFirst[x].contains('.') || \
         variables.imageFirst[x].contains(':') || variables.imageFirst[x] == 'localhost')) ? n : \
         variables.imageFirst[x] == '' ? 'docker.io/library/' + (n.contains('/') ? n.split('/', 2)[1] : n) : \
         'docker.io/' + n)",
    );
    vars.add(
        "imageNormal",
        "variables.imageBase.transformList(x, b, b + \
         (!variables.images[x].contains('@') && !b.substring(b.lastIndexOf('/') + 1).contains(':') ? ':latest' : '') + \
         (variables.images[x].contains('@') ? '@' + variables.images[x].split('@', 2)[1] : ''))",
    );
    vars.add(
        "imageWasm",
        format!("variables.images.transformList(x, i, i.matches({re}) || variables.imageNormal[x].matches({re}))"),
    );
}

/// The resource profile (behaviour.md §4.2): `profileKnown`, and `profile`, the defaults to use.
pub fn profile(config: &Config, vars: &mut Variables) {
    vars.add("profileName", annotation(ANN_RESOURCE_PROFILE));
    let names: Vec<&str> = config
        .resource_profiles
        .keys()
        .map(String::as_str)
        .collect();
    vars.add(
        "profileKnown",
        format!(
            "!variables.profileName.hasValue() || variables.profileName.value() in {}",
            cel::strings(names)
        ),
    );
}

/// `"namespace/name"` as a denial names the object: the request's name, else the object's name,
/// else its `generateName`.
pub fn subject() -> &'static str {
    "'\"' + request.namespace + '/' + (request.?name.orValue('') != '' ? request.name : \
     object.metadata.?name.orValue('') != '' ? object.metadata.name : \
     object.metadata.?generateName.orValue('')) + '\"'"
}

/// behaviour.md §6: the excluded namespaces and, with `honour_skip` (the mutating policy only: the
/// skip label opts out of §4, never of §5), the skip label on the object or its pod template.
/// (Match conditions cannot read variables: they run first.)
pub fn match_conditions(config: &Config, honour_skip: bool) -> Value {
    let skip = cel::string(LABEL_SKIP);
    let template_labels = format!(
        "(request.kind.kind == 'CronJob' ? object.spec.?jobTemplate.?spec.?template.?metadata.?labels : \
         object.spec.?template.?metadata.?labels).orValue({{}})[?{skip}].orValue('')"
    );
    let mut conditions = vec![json!({
        "name": "outside-excluded-namespaces",
        "expression": format!(
            "!(request.namespace in {})",
            cel::strings(config.excluded_namespaces.iter().map(String::as_str))
        ),
    })];
    if honour_skip {
        conditions.push(json!({
            "name": "not-skipped",
            "expression": format!(
                "object.metadata.?labels[?{skip}].orValue('') != 'true' && \
                 (request.kind.kind == 'Pod' || {template_labels} != 'true')"
            ),
        }));
    }
    Value::Array(conditions)
}

/// The namespaces a policy acts in: opted in by label, and not excluded (as the webhook
/// configurations select them).
pub fn namespace_selector(config: &Config) -> Value {
    json!({
        "matchLabels": {INJECT_LABEL: "enabled"},
        "matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": config.excluded_namespaces,
        }],
    })
}

/// Objects without the skip label (the mutating webhook configuration's `objectSelector`; the
/// validating one has none, behaviour.md §5).
pub fn object_selector() -> Value {
    json!({
        "matchExpressions": [{"key": LABEL_SKIP, "operator": "NotIn", "values": ["true"]}],
    })
}

/// The `resourceRules` of behaviour.md §2: Pod and Job CREATE, the other workloads' CREATE and
/// UPDATE (their templates are mutable); `templates: false` leaves the workloads out (the
/// mutating policy under `mutateTemplates: false`); `ephemeral` adds `kubectl debug`'s
/// subresource; `pod_updates` adds Pod and Job UPDATE (the validating policy: an UPDATE that
/// changes an image or an annotation a rule reads is judged, behaviour.md §5).
pub fn resource_rules(templates: bool, ephemeral: bool, pod_updates: bool) -> Vec<Value> {
    let rule = |group: &str, resources: &[&str], operations: &[&str]| {
        json!({
            "apiGroups": [group],
            "apiVersions": ["v1"],
            "operations": operations,
            "resources": resources,
            "scope": "Namespaced",
        })
    };
    let pod_operations: &[&str] = if pod_updates {
        &["CREATE", "UPDATE"]
    } else {
        &["CREATE"]
    };
    let mut rules = vec![rule("", &["pods"], pod_operations)];
    if ephemeral {
        rules.push(rule("", &["pods/ephemeralcontainers"], &["UPDATE"]));
    }
    if templates {
        rules.push(rule(
            "apps",
            &["deployments", "statefulsets", "daemonsets", "replicasets"],
            &["CREATE", "UPDATE"],
        ));
        rules.push(rule("batch", &["jobs"], pod_operations));
        rules.push(rule("batch", &["cronjobs"], &["CREATE", "UPDATE"]));
    }
    rules
}
