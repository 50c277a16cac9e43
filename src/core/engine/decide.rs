//! The order of behaviour.md §2–§6: which requests are looked at, detection, denials, then mutations.

use std::borrow::Cow;
use std::collections::BTreeSet;

use kube_core::admission::Operation;

use super::{Decision, Endpoint, Engine, EngineError, Facts, ObjectInput, Request};
use crate::core::baseline::{self, Scope};
use crate::core::config::ResourceDefaults;
use crate::core::detection::{self, ClusterRuntimeClasses, Detection, Rule};
use crate::core::kinds::WorkloadKind;
use crate::core::model::{self, Object, PodView};
use crate::core::mutate::{self, Change};
use crate::core::patch::{Node, Patch, PatchBuilder};
use crate::core::schedulability;
use crate::core::warning::warning;

pub const ANN_RESOURCE_PROFILE: &str = "wasm-admission.io/resource-profile";
pub const ANN_OTEL: &str = "wasm-admission.io/otel";
pub const ANN_OTEL_ENDPOINT: &str = "wasm-admission.io/otel-endpoint";
pub const ANN_INJECTED: &str = "wasm-admission.io/injected";
pub const LABEL_SKIP: &str = "wasm-admission.io/skip";

/// The subresource `kubectl debug` writes (behaviour.md §5).
const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";

/// A request the engine looks at further: its kind and parsed object (parsed here, or by the
/// door).
struct InScope<'a> {
    kind: WorkloadKind,
    ephemeral: bool,
    object: Cow<'a, Object<'a>>,
}

/// behaviour.md §2 and §6: which requests are looked at beyond "allowed, unchanged" (`None`). The skip
/// label is the caller's to check, on the [`PodView`] over the object.
fn in_scope<'a>(
    engine: &Engine,
    request: &Request<'a>,
) -> Result<Option<InScope<'a>>, EngineError> {
    let k = request.kind;
    let Some(kind) = WorkloadKind::from_gvk(k.group, k.version, k.kind) else {
        return Ok(None);
    };
    let ephemeral = match (request.sub_resource, &request.operation) {
        (None, Operation::Create | Operation::Update) => false,
        (Some(EPHEMERAL_CONTAINERS), Operation::Update) if kind == WorkloadKind::Pod => true,
        _ => return Ok(None),
    };
    if engine
        .config()
        .excluded_namespaces
        .iter()
        .any(|ns| ns == request.namespace)
    {
        return Ok(None);
    }
    let input = request.object.ok_or_else(|| EngineError::MissingObject {
        operation: request.operation.clone(),
        kind: kind.as_str().to_string(),
    })?;
    let object =
        match input {
            ObjectInput::Parsed(object) => Cow::Borrowed(object),
            ObjectInput::Raw(raw) => Cow::Owned(model::parse(raw.get()).map_err(|message| {
                EngineError::InvalidObject {
                    kind: kind.as_str().to_string(),
                    message,
                }
            })?),
        };
    check_object_kind(kind, &object)?;
    if request.operation == Operation::Update && !ephemeral && !kind.pod_spec_mutable_on_update() {
        // The pod spec of a Pod or Job is immutable: a patch would make the apiserver refuse
        // unrelated updates such as a label change.
        return Ok(None);
    }
    Ok(Some(InScope {
        kind,
        ephemeral,
        object,
    }))
}

/// The images [`decide`] would ask the registry about (behaviour.md §3 rule 6), so that a door can look
/// them up first: none when the request is out of scope or rules 1–4 decide, else the
/// `containers` images that no image pattern matches. A request the engine refuses has none.
pub(super) fn registry_images(
    engine: &Engine,
    request: &Request<'_>,
    runtime_classes: Option<&ClusterRuntimeClasses>,
) -> Vec<String> {
    let Ok(Some(scope)) = in_scope(engine, request) else {
        return Vec::new();
    };
    let view = PodView::new(scope.kind, &scope.object);
    if view.label_anywhere(LABEL_SKIP, "true") {
        return Vec::new();
    }
    let facts = Facts {
        registry: None,
        runtime_classes,
        nodes: None,
        runtime_classes_pending: false,
    };
    detection::registry_images(&view, &engine.signals(&facts))
}

pub(super) fn decide(
    engine: &Engine,
    request: &Request<'_>,
    endpoint: Endpoint,
    facts: &Facts<'_>,
) -> Result<Decision, EngineError> {
    let config = engine.config();
    let Some(InScope {
        kind,
        ephemeral,
        object,
    }) = in_scope(engine, request)?
    else {
        return Ok(Decision::allow());
    };
    let view = PodView::new(kind, &object);
    if view.label_anywhere(LABEL_SKIP, "true") {
        return Ok(Decision::allow());
    }

    let mut decision = Decision::allow();
    let signals = engine.signals(facts);
    let (rule, runtime_class) = match detection::detect(&view, &signals, &mut decision.warnings) {
        Detection::NotWasm => return Ok(only_warnings(decision, endpoint)),
        Detection::Mixed { wasm, other } => {
            decision.warnings.push(warning(&format!(
                "mixed pod left unchanged: Wasm containers [{}], other containers [{}]",
                wasm.join(","),
                other.join(",")
            )));
            return Ok(only_warnings(decision, endpoint));
        }
        Detection::Wasm {
            rule,
            runtime_class,
        } => {
            decision
                .audit_annotations
                .insert("wasm-detected-by".into(), rule.as_str().into());
            (
                rule,
                runtime_class.unwrap_or_else(|| config.runtime_class_name.clone()),
            )
        }
    };
    // Denials (behaviour.md §5), on both endpoints and whatever `mutateTemplates` says. The words of a
    // denial are only put together for one.
    if ephemeral {
        let subject = subject(&view, request);
        return Ok(decide_ephemeral(
            engine, &view, request, subject, decision, endpoint,
        ));
    }
    let violations = baseline::violations(
        view.spec,
        view.pod_annotations(),
        &config.security,
        &Scope::WholePod,
    );
    // "Wasm pod \"ns/name\"" or "Wasm pod template of Deployment \"ns/name\"".
    let what = || {
        let subject = subject(&view, request);
        if kind.is_template() {
            format!("Wasm pod template of {} {subject}", kind.as_str())
        } else {
            format!("Wasm pod {subject}")
        }
    };
    if !violations.is_empty() {
        return Ok(deny(
            decision,
            format!(
                "wasm-admission: {} is not allowed: {}",
                what(),
                violations.join("; ")
            ),
        ));
    }
    let profile = match resource_profile(engine, &view) {
        Ok(p) => p,
        Err(message) => {
            return Ok(deny(
                decision,
                format!("wasm-admission: {} is not allowed: {message}", what()),
            ));
        }
    };

    if endpoint == Endpoint::Validate || (kind.is_template() && !config.mutate_templates) {
        return Ok(only_warnings(decision, endpoint));
    }

    // Mutations (behaviour.md §4).
    let mut patch = PatchBuilder::new(&*object);
    let mut changes = BTreeSet::new();
    let warnings = &mut decision.warnings;
    // behaviour.md §4.1: a class the pod already names is kept quietly when it is known to run Wasm.
    let runs_wasm = |class: &str| {
        signals.wasm_classes.runs_wasm(class, facts.runtime_classes)
            || (rule == Rule::VariantAnnotation
                && config
                    .detection
                    .variant_runtime_classes
                    .iter()
                    .any(|c| c == class))
    };
    if mutate::runtime_class::apply(
        &view,
        &runtime_class,
        facts.runtime_classes,
        runs_wasm,
        &mut patch,
        warnings,
    ) {
        changes.insert(Change::RuntimeClass);
    }
    // behaviour.md §11: the class the pod will run with, injected or its own.
    let class = match view.spec.runtime_class_name.as_deref() {
        None | Some("") => runtime_class.as_str(),
        Some(own) => own,
    };
    if let (Some(classes), Some(nodes)) = (facts.runtime_classes, facts.nodes)
        && let Some(info) = classes.get(class)
        && let Some(w) = schedulability::unschedulable_warning(class, &info.node_selector, nodes)
    {
        warnings.push(w);
    }
    if mutate::resources::apply(&view, profile, &mut patch, warnings) {
        changes.insert(Change::Resources);
    }
    let otel_wanted = config.otel.enabled
        && view.annotation(ANN_OTEL) != Some("false")
        && !mutate::otel::already_injected(&view);
    if otel_wanted {
        let endpoint = view
            .annotation(ANN_OTEL_ENDPOINT)
            .filter(|e| !e.is_empty())
            .unwrap_or(&config.otel.endpoint);
        if mutate::otel::apply(&view, request.namespace, request.name, endpoint, &mut patch) {
            changes.insert(Change::Otel);
        }
    }
    if mutate::annotations::apply(&view, &config.pod_annotations, &mut patch) {
        changes.insert(Change::Annotations);
    }
    if !changes.is_empty() {
        record_changes(&view, &changes, &mut patch);
        let list = join_changes(&changes);
        decision.audit_annotations.insert("injected".into(), list);
    }
    decision.patch = patch.build();
    Ok(decision)
}

/// `kubectl debug` on a Wasm pod: only the ephemeral containers being added are checked; the
/// rest of the pod was admitted when it was created and cannot change.
fn decide_ephemeral(
    engine: &Engine,
    view: &PodView<'_, '_>,
    request: &Request<'_>,
    subject: String,
    decision: Decision,
    endpoint: Endpoint,
) -> Decision {
    let old = request.old_object.and_then(|o| model::parse(o.get()).ok());
    let existing = old
        .as_ref()
        .map(|o| {
            PodView::new(WorkloadKind::Pod, o)
                .spec
                .ephemeral_containers()
        })
        .unwrap_or_default();
    let scope = Scope::NewEphemeralContainers(existing.iter().map(|c| &*c.name).collect());
    let violations = baseline::violations(
        view.spec,
        view.pod_annotations(),
        &engine.config().security,
        &scope,
    );
    if violations.is_empty() {
        return only_warnings(decision, endpoint);
    }
    deny(
        decision,
        format!(
            "wasm-admission: ephemeral containers of Wasm pod {subject} are not allowed: {}",
            violations.join("; ")
        ),
    )
}

/// `wasm-admission.io/injected`: the union of what this and earlier runs changed, in the documented order (behaviour.md §4.5).
fn record_changes(
    view: &PodView<'_, '_>,
    changes: &BTreeSet<Change>,
    patch: &mut PatchBuilder<'_>,
) {
    let path = view.pod_meta_path(&["annotations", ANN_INJECTED]);
    match view.pod_annotations().get(ANN_INJECTED) {
        Some(previous) => {
            let mut all = changes.clone();
            all.extend(previous.split(',').filter_map(|s| Change::parse(s.trim())));
            patch.replace(&path, Node::str(join_changes(&all)));
        }
        None => patch.add(&path, Node::str(join_changes(changes))),
    }
}

fn join_changes(changes: &BTreeSet<Change>) -> String {
    let mut out = String::with_capacity(32);
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(change.as_str());
    }
    out
}

/// The resource defaults: the profile named by annotation, else `resources`.
fn resource_profile<'e>(
    engine: &'e Engine,
    view: &PodView<'_, '_>,
) -> Result<&'e ResourceDefaults, String> {
    let config = engine.config();
    match view.annotation(ANN_RESOURCE_PROFILE) {
        None => Ok(&config.resources),
        Some(name) => config.resource_profiles.get(name).ok_or_else(|| {
            let known: Vec<&str> = config
                .resource_profiles
                .keys()
                .map(String::as_str)
                .collect();
            format!(
                "unknown resource profile \"{name}\" in {ANN_RESOURCE_PROFILE}; known profiles: {}",
                known.join(", ")
            )
        }),
    }
}

/// `"namespace/name"` as the denial message names the object.
fn subject(view: &PodView<'_, '_>, request: &Request<'_>) -> String {
    format!(
        "\"{}/{}\"",
        request.namespace,
        view.display_name(request.name)
    )
}

fn deny(mut decision: Decision, message: String) -> Decision {
    decision.allowed = false;
    decision.message = Some(message);
    decision.patch = Patch::default();
    decision
}

/// `/validate` repeats no warnings: `/mutate` already gave them to the person applying.
fn only_warnings(mut decision: Decision, endpoint: Endpoint) -> Decision {
    if endpoint == Endpoint::Validate {
        decision.warnings.clear();
    }
    decision
}

/// An object that says it is of another kind than the request is refused, not guessed at.
fn check_object_kind(kind: WorkloadKind, object: &Object<'_>) -> Result<(), EngineError> {
    if let (Some(k), Some(api)) = (object.kind.as_deref(), object.api_version.as_deref())
        && WorkloadKind::from_api_version(api, k) != Some(kind)
    {
        return Err(EngineError::KindMismatch {
            expected: kind.as_str().to_string(),
            found: format!("{api}/{k}"),
        });
    }
    Ok(())
}
