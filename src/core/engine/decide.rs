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
use crate::core::verdict::{RuleId, RuleResult, Status, denial_message};
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
    /// An UPDATE of a Pod or Job, whose pod spec is immutable but for its images: judged like a
    /// CREATE when it changes an image or an annotation a rule reads, never patched (behaviour.md §2,
    /// §5).
    immutable_update: bool,
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
    // The pod spec of a Pod or Job is immutable: a patch would make the apiserver refuse
    // unrelated updates such as a label change. Their images and annotations are not.
    let immutable_update =
        request.operation == Operation::Update && !ephemeral && !kind.pod_spec_mutable_on_update();
    Ok(Some(InScope {
        kind,
        ephemeral,
        immutable_update,
        object,
    }))
}

/// behaviour.md §5: whether an UPDATE of a Pod or Job changes what the rules read, an image (of
/// any of the three container lists) or an annotation a rule reads, so that it is judged like a
/// CREATE. An old object that is missing or unreadable counts as changed: never failed open.
fn update_is_judged(kind: WorkloadKind, view: &PodView<'_, '_>, request: &Request<'_>) -> bool {
    let Some(old) = request.old_object.and_then(|o| model::parse(o.get()).ok()) else {
        return true;
    };
    let old_view = PodView::new(kind, &old);
    images_of(view) != images_of(&old_view) || read_annotations(view) != read_annotations(&old_view)
}

/// Every container's name and image, in the order of the three lists.
fn images_of<'v>(view: &'v PodView<'_, '_>) -> Vec<(&'v str, &'v str)> {
    let spec = view.spec;
    spec.containers()
        .iter()
        .chain(spec.init_containers())
        .chain(spec.ephemeral_containers())
        .map(|c| (&*c.name, c.image.as_deref().unwrap_or("")))
        .collect()
}

/// The annotations a rule reads (this project's, the variant annotation, AppArmor's), on the
/// object and its pod template.
fn read_annotations<'v>(view: &'v PodView<'_, '_>) -> Vec<(&'v str, &'v str)> {
    let read = |k: &str| {
        k.starts_with("wasm-admission.io/")
            || k == detection::ANN_WASM_VARIANT
            || k.starts_with(baseline::APPARMOR_ANNOTATION_PREFIX)
    };
    let own = view.meta.annotations.iter().flatten();
    let pod = view.pod_annotations().iter();
    own.chain(pod)
        .filter(|(k, _)| read(k))
        .map(|(k, v)| (&**k, &**v))
        .collect()
}

/// Why behaviour.md §5 applies to a pod spec whatever the pod itself says (the boundary).
enum Boundary {
    /// Its own `runtimeClassName` runs Wasm (rule 3b), or its images are Wasm (rules 5–6).
    Wasm,
    /// It names a class that is not Wasm by name while `serve` has no complete list of the
    /// cluster's RuntimeClasses: the class is unknown, so it is checked (deny by default).
    PendingClass(String),
}

fn boundary(
    view: &PodView<'_, '_>,
    inputs: &detection::DetectionInputs<'_>,
    facts: &Facts<'_>,
) -> Option<Boundary> {
    if detection::names_wasm_class(view, inputs) {
        return Some(Boundary::Wasm);
    }
    if facts.runtime_classes_pending
        && let Some(name) = view
            .spec
            .runtime_class_name
            .as_deref()
            .filter(|s| !s.is_empty())
    {
        return Some(Boundary::PendingClass(name.to_string()));
    }
    // Warnings of rule 6 were given by detection already, or belong to a pod that opted out.
    let mut ignored = Vec::new();
    matches!(
        detection::by_images(view, inputs, &mut ignored),
        Detection::Wasm { .. }
    )
    .then_some(Boundary::Wasm)
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
    if scope.immutable_update && !update_is_judged(scope.kind, &view, request) {
        return Vec::new();
    }
    let skipped = view.label_anywhere(LABEL_SKIP, "true");
    let facts = Facts {
        runtime_classes,
        ..Facts::default()
    };
    detection::registry_images(&view, &engine.detection_inputs(&facts), skipped)
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
        immutable_update,
        object,
    }) = in_scope(engine, request)?
    else {
        return Ok(Decision::allow());
    };
    let view = PodView::new(kind, &object);
    if immutable_update && !update_is_judged(kind, &view, request) {
        return Ok(Decision::allow());
    }
    // The opt-outs (the skip label, rule 1) opt out of detection for §4; §5's boundary below
    // does not read them.
    let skipped = view.label_anywhere(LABEL_SKIP, "true");

    let mut decision = Decision::allow();
    let inputs = engine.detection_inputs(facts);
    let detected = if skipped {
        decision.rules.push(RuleResult::new(
            RuleId::DetectSkipLabel,
            Status::Skip,
            "wasm-admission.io/skip=true: not mutated",
        ));
        Detection::NotWasm
    } else {
        let before = decision.warnings.len();
        let detected = detection::detect(&view, &inputs, &mut decision.warnings);
        // Detection speaks only of registry lookups that failed (rule 6).
        speak(&mut decision, before, RuleId::DetectRegistry, Status::Error);
        detected
    };
    let wasm = match detected {
        Detection::NotWasm => {
            if !skipped && detection::opted_out(&view) {
                decision.rules.push(RuleResult::new(
                    RuleId::DetectOptOut,
                    Status::Skip,
                    "wasm-admission.io/wasm=\"false\": not mutated",
                ));
            }
            None
        }
        Detection::Mixed { wasm, other } => {
            let before = decision.warnings.len();
            decision.warnings.push(warning(&format!(
                "mixed pod left unchanged: Wasm containers [{}], other containers [{}]",
                wasm.join(","),
                other.join(",")
            )));
            speak(&mut decision, before, RuleId::DetectMixed, Status::Warn);
            None
        }
        Detection::Wasm {
            rule,
            runtime_class,
        } => {
            decision
                .audit_annotations
                .insert("wasm-detected-by".into(), rule.as_str().into());
            let (id, message) = detected_by(rule);
            decision
                .rules
                .push(RuleResult::new(id, Status::Pass, message));
            Some((
                rule,
                runtime_class.unwrap_or_else(|| config.runtime_class_name.clone()),
            ))
        }
    };
    // behaviour.md §5, the boundary: a pod spec on a Wasm class, or whose images are Wasm, is
    // checked whatever its labels and annotations say.
    let boundary = match wasm {
        Some(_) => None,
        None => boundary(&view, &inputs, facts),
    };
    if wasm.is_none() && boundary.is_none() {
        return Ok(only_warnings(decision, endpoint));
    }
    let pending_note = match &boundary {
        Some(Boundary::PendingClass(name)) => {
            let before = decision.warnings.len();
            decision.warnings.push(warning(&format!(
                "RuntimeClass \"{name}\" is checked as Wasm: the cluster's RuntimeClasses are not listed yet"
            )));
            speak(
                &mut decision,
                before,
                RuleId::BoundaryPendingClass,
                Status::Warn,
            );
            format!(
                " (RuntimeClass \"{name}\" counts as Wasm until the cluster's RuntimeClasses are listed)"
            )
        }
        Some(Boundary::Wasm) => {
            decision.rules.push(RuleResult::new(
                RuleId::BoundaryWasm,
                Status::Pass,
                "checked against the baseline whatever the pod's opt-outs say: its RuntimeClass or its images are Wasm",
            ));
            String::new()
        }
        None => String::new(),
    };
    if boundary.is_some() {
        decision
            .audit_annotations
            .insert("baseline-boundary".into(), "true".into());
    }
    let exempt = config.security.exemptions.exempt(
        request.username,
        request.namespace,
        view.spec.runtime_class_name.as_deref(),
    );
    if exempt {
        decision
            .audit_annotations
            .insert("baseline-exempt".into(), "true".into());
        decision.rules.push(RuleResult::new(
            RuleId::BaselineExempt,
            Status::Skip,
            "security.exemptions: the baseline is not checked",
        ));
    }
    // Denials (behaviour.md §5), on both endpoints and whatever `mutateTemplates` says. The words of a
    // denial are only put together for one.
    if ephemeral {
        if exempt {
            return Ok(only_warnings(decision, endpoint));
        }
        let subject = subject(&view, request);
        return Ok(decide_ephemeral(
            engine,
            &view,
            request,
            subject,
            decision,
            endpoint,
            &pending_note,
        ));
    }
    let violations = if exempt {
        Vec::new()
    } else {
        baseline::violations(
            view.spec,
            view.pod_annotations(),
            &config.security,
            &Scope::WholePod,
        )
    };
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
        fail(&mut decision, violations);
        return Ok(deny(decision, &format!("{} is", what()), &pending_note));
    }
    // The rest is §4's, for pods detected as Wasm; an UPDATE of a Pod or Job is never patched.
    let Some((rule, runtime_class)) = wasm else {
        return Ok(only_warnings(decision, endpoint));
    };
    if immutable_update {
        decision.rules.push(RuleResult::new(
            RuleId::MutateImmutableUpdate,
            Status::Skip,
            "an UPDATE of a Pod or Job is judged, never patched",
        ));
        return Ok(only_warnings(decision, endpoint));
    }
    let profile = match resource_profile(engine, &view) {
        Ok(p) => p,
        Err(message) => {
            decision.rules.push(RuleResult::new(
                RuleId::ProfileUnknown,
                Status::Fail,
                message,
            ));
            return Ok(deny(decision, &format!("{} is", what()), ""));
        }
    };

    if endpoint == Endpoint::Validate {
        return Ok(only_warnings(decision, endpoint));
    }
    if kind.is_template() && !config.mutate_templates {
        decision.rules.push(RuleResult::new(
            RuleId::MutateTemplatesOff,
            Status::Skip,
            "mutateTemplates is false: the pod template is not mutated",
        ));
        return Ok(only_warnings(decision, endpoint));
    }

    // Mutations (behaviour.md §4).
    let mut patch = PatchBuilder::new(&*object);
    let mut changes = BTreeSet::new();
    let mut before = decision.warnings.len();
    // behaviour.md §4.1: a class the pod already names is kept quietly when it is known to run Wasm.
    let runs_wasm = |class: &str| {
        inputs.wasm_classes.runs_wasm(class, facts.runtime_classes)
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
        &mut decision.warnings,
    ) {
        changes.insert(Change::RuntimeClass);
        decision.rules.push(RuleResult::new(
            RuleId::MutateRuntimeClass,
            Status::Pass,
            format!("runtimeClassName {runtime_class} added"),
        ));
    }
    speak(
        &mut decision,
        before,
        RuleId::MutateRuntimeClass,
        Status::Warn,
    );
    // behaviour.md §11: the class the pod will run with, injected or its own.
    let class = match view.spec.runtime_class_name.as_deref() {
        None | Some("") => runtime_class.as_str(),
        Some(own) => own,
    };
    if let (Some(classes), Some(nodes)) = (facts.runtime_classes, facts.nodes)
        && let Some(info) = classes.get(class)
        && let Some(w) = schedulability::unschedulable_warning(class, &info.node_selector, nodes)
    {
        before = decision.warnings.len();
        decision.warnings.push(w);
        speak(&mut decision, before, RuleId::ScheduleNoNode, Status::Warn);
    }
    before = decision.warnings.len();
    if mutate::resources::apply(&view, profile, &mut patch, &mut decision.warnings) {
        changes.insert(Change::Resources);
        let message: Cow<'static, str> = match view.annotation(ANN_RESOURCE_PROFILE) {
            Some(name) => format!("default requests and limits added (profile {name})").into(),
            None => "default requests and limits added (resources)".into(),
        };
        decision.rules.push(RuleResult::new(
            RuleId::MutateResources,
            Status::Pass,
            message,
        ));
    }
    speak(&mut decision, before, RuleId::MutateResources, Status::Warn);
    let otel_skipped = if !config.otel.enabled {
        Some("otel.enabled is false")
    } else if view.annotation(ANN_OTEL) == Some("false") {
        Some("wasm-admission.io/otel=\"false\"")
    } else if mutate::otel::already_injected(&view) {
        Some("the OpenTelemetry Operator's injection is present")
    } else {
        None
    };
    match otel_skipped {
        Some(reason) => {
            decision
                .rules
                .push(RuleResult::new(RuleId::MutateOtel, Status::Skip, reason))
        }
        None => {
            let endpoint = view
                .annotation(ANN_OTEL_ENDPOINT)
                .filter(|e| !e.is_empty())
                .unwrap_or(&config.otel.endpoint);
            if mutate::otel::apply(&view, request.namespace, request.name, endpoint, &mut patch) {
                changes.insert(Change::Otel);
                decision.rules.push(RuleResult::new(
                    RuleId::MutateOtel,
                    Status::Pass,
                    "OpenTelemetry environment added",
                ));
            }
        }
    }
    if mutate::annotations::apply(&view, &config.pod_annotations, &mut patch) {
        changes.insert(Change::Annotations);
        decision.rules.push(RuleResult::new(
            RuleId::MutateAnnotations,
            Status::Pass,
            "podAnnotations added",
        ));
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
    pending_note: &str,
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
    let mut decision = decision;
    fail(&mut decision, violations);
    deny(
        decision,
        &format!("ephemeral containers of Wasm pod {subject} are"),
        pending_note,
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

/// Each baseline violation as a failing rule, in the order found.
fn fail(decision: &mut Decision, violations: Vec<baseline::Violation>) {
    decision.rules.extend(
        violations
            .into_iter()
            .map(|v| RuleResult::new(v.rule, Status::Fail, v.text)),
    );
}

/// Denies, with the message of behaviour.md §5 built from the failing rules' messages
/// (`subject` ends with its verb: `... is`, `... are`).
fn deny(mut decision: Decision, subject: &str, note: &str) -> Decision {
    decision.allowed = false;
    decision.message = Some(denial_message(subject, &decision.rules, note));
    decision.patch = Patch::default();
    decision
}

/// The warnings added since `before`, each as a rule's word with `status`.
fn speak(decision: &mut Decision, before: usize, id: RuleId, status: Status) {
    let Decision {
        warnings, rules, ..
    } = decision;
    rules.extend(
        warnings
            .iter()
            .skip(before)
            .map(|w| RuleResult::new(id, status, w.clone())),
    );
}

/// The rule id and message of the detection rule that found a pod spec Wasm (behaviour.md §3).
fn detected_by(rule: Rule) -> (RuleId, &'static str) {
    match rule {
        Rule::WasmAnnotation => (
            RuleId::DetectAnnotation,
            "Wasm by wasm-admission.io/wasm=\"true\"",
        ),
        Rule::RuntimeClassAnnotation => (
            RuleId::DetectRuntimeClassAnnotation,
            "Wasm by wasm-admission.io/runtime-class",
        ),
        Rule::RuntimeClassName => (
            RuleId::DetectRuntimeClassName,
            "Wasm by its runtimeClassName, a class that runs Wasm",
        ),
        Rule::VariantAnnotation => (
            RuleId::DetectVariantAnnotation,
            "Wasm by module.wasm.image/variant",
        ),
        Rule::ImagePattern => (
            RuleId::DetectImagePattern,
            "Wasm by detection.imagePatterns: every container's image matches",
        ),
        Rule::Registry => (
            RuleId::DetectRegistry,
            "Wasm by registry inspection of its images",
        ),
    }
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
