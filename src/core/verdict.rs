//! Typed verdicts: which rules acted or spoke in a decision, each with a stable id, a status and
//! its message (docs/behaviour.md, "Rule ids"). The doors read these instead of the denial's
//! words: `check -o json` lists them, JUnit and PolicyReports name the failing rule, and `serve`
//! labels its denial count and log line with it.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

/// Every rule that can act or speak in a decision. The ids are part of the contract
/// (docs/behaviour.md, "Rule ids"): a metric label and PolicyReport `rule` take only these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// behaviour.md §6: the skip label opted the object out of the mutations.
    DetectSkipLabel,
    /// §3 rule 1: `wasm-admission.io/wasm: "false"`.
    DetectOptOut,
    /// §3 rule 2: `wasm-admission.io/wasm: "true"`.
    DetectAnnotation,
    /// §3 rule 3: `wasm-admission.io/runtime-class`.
    DetectRuntimeClassAnnotation,
    /// §3 rule 3b: the pod spec's own `runtimeClassName` runs Wasm.
    DetectRuntimeClassName,
    /// §3 rule 4: `module.wasm.image/variant`.
    DetectVariantAnnotation,
    /// §3 rule 5: `detection.imagePatterns`.
    DetectImagePattern,
    /// §3 rule 6: registry inspection (`error` when a lookup failed).
    DetectRegistry,
    /// §3: containers partly Wasm, partly not: left unchanged.
    DetectMixed,
    /// §5, the boundary: checked against the baseline whatever the pod's opt-outs say.
    BoundaryWasm,
    /// §5, the boundary: a class not Wasm by name, while the cluster's classes are not listed yet.
    BoundaryPendingClass,
    /// §5: `security.exemptions` spares the request the baseline checks.
    BaselineExempt,
    /// §5: `securityContext.privileged: true`.
    BaselinePrivileged,
    /// §5: `hostNetwork`, `hostPID`, `hostIPC`.
    BaselineHostNamespaces,
    /// §5: `hostPath` volumes.
    BaselineHostPathVolumes,
    /// §5: non-zero `hostPort`s.
    BaselineHostPorts,
    /// §5: `capabilities.add` outside the baseline list.
    BaselineCapabilities,
    /// §5: `procMount` other than `Default`.
    BaselineProcMount,
    /// §5: `windowsOptions.hostProcess: true`.
    BaselineWindowsHostProcess,
    /// §5: seccomp `Unconfined`.
    BaselineSeccomp,
    /// §5: AppArmor `unconfined` (field or annotation).
    BaselineAppArmor,
    /// §5: SELinux options beyond the baseline's.
    BaselineSeLinux,
    /// §5: sysctls outside the safe set.
    BaselineSysctls,
    /// §5, from v1.34: a probe or lifecycle handler with a `host`.
    BaselineProbeHost,
    /// §4.2: an unknown `wasm-admission.io/resource-profile`.
    ProfileUnknown,
    /// §2: an UPDATE of a Pod or Job is judged but never patched.
    MutateImmutableUpdate,
    /// §6: `mutateTemplates: false` leaves workload templates unchanged.
    MutateTemplatesOff,
    /// §4.1: `runtimeClassName`.
    MutateRuntimeClass,
    /// §11: no node matches the RuntimeClass's `nodeSelector`.
    ScheduleNoNode,
    /// §4.2: default requests and limits.
    MutateResources,
    /// §4.3: the OpenTelemetry environment.
    MutateOtel,
    /// §4.4: `podAnnotations`.
    MutateAnnotations,
    /// `serve`: a review larger than it decides is denied, not admitted unchecked.
    ReviewTooLarge,
}

impl RuleId {
    pub const ALL: [RuleId; 33] = [
        Self::DetectSkipLabel,
        Self::DetectOptOut,
        Self::DetectAnnotation,
        Self::DetectRuntimeClassAnnotation,
        Self::DetectRuntimeClassName,
        Self::DetectVariantAnnotation,
        Self::DetectImagePattern,
        Self::DetectRegistry,
        Self::DetectMixed,
        Self::BoundaryWasm,
        Self::BoundaryPendingClass,
        Self::BaselineExempt,
        Self::BaselinePrivileged,
        Self::BaselineHostNamespaces,
        Self::BaselineHostPathVolumes,
        Self::BaselineHostPorts,
        Self::BaselineCapabilities,
        Self::BaselineProcMount,
        Self::BaselineWindowsHostProcess,
        Self::BaselineSeccomp,
        Self::BaselineAppArmor,
        Self::BaselineSeLinux,
        Self::BaselineSysctls,
        Self::BaselineProbeHost,
        Self::ProfileUnknown,
        Self::MutateImmutableUpdate,
        Self::MutateTemplatesOff,
        Self::MutateRuntimeClass,
        Self::ScheduleNoNode,
        Self::MutateResources,
        Self::MutateOtel,
        Self::MutateAnnotations,
        Self::ReviewTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DetectSkipLabel => "detect.skip-label",
            Self::DetectOptOut => "detect.opt-out",
            Self::DetectAnnotation => "detect.annotation",
            Self::DetectRuntimeClassAnnotation => "detect.runtime-class-annotation",
            Self::DetectRuntimeClassName => "detect.runtime-class-name",
            Self::DetectVariantAnnotation => "detect.variant-annotation",
            Self::DetectImagePattern => "detect.image-pattern",
            Self::DetectRegistry => "detect.registry",
            Self::DetectMixed => "detect.mixed",
            Self::BoundaryWasm => "boundary.wasm",
            Self::BoundaryPendingClass => "boundary.pending-class",
            Self::BaselineExempt => "baseline.exempt",
            Self::BaselinePrivileged => "baseline.privileged",
            Self::BaselineHostNamespaces => "baseline.host-namespaces",
            Self::BaselineHostPathVolumes => "baseline.host-path-volumes",
            Self::BaselineHostPorts => "baseline.host-ports",
            Self::BaselineCapabilities => "baseline.capabilities",
            Self::BaselineProcMount => "baseline.proc-mount",
            Self::BaselineWindowsHostProcess => "baseline.windows-host-process",
            Self::BaselineSeccomp => "baseline.seccomp",
            Self::BaselineAppArmor => "baseline.apparmor",
            Self::BaselineSeLinux => "baseline.selinux",
            Self::BaselineSysctls => "baseline.sysctls",
            Self::BaselineProbeHost => "baseline.probe-host",
            Self::ProfileUnknown => "profile.unknown",
            Self::MutateImmutableUpdate => "mutate.immutable-update",
            Self::MutateTemplatesOff => "mutate.templates-off",
            Self::MutateRuntimeClass => "mutate.runtime-class",
            Self::ScheduleNoNode => "schedule.no-node",
            Self::MutateResources => "mutate.resources",
            Self::MutateOtel => "mutate.otel",
            Self::MutateAnnotations => "mutate.annotations",
            Self::ReviewTooLarge => "review.too-large",
        }
    }

    /// The id named `s`, if there is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a rule said, as Kyverno's rule responses and PolicyReport results say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The rule applied and acted (detected, mutated) or found nothing wrong.
    Pass,
    /// The rule denies the object.
    Fail,
    /// The rule let the object through with a warning.
    Warn,
    /// The rule was not applied (an opt-out, an exemption, a setting).
    Skip,
    /// The rule could not be evaluated (a registry lookup failed); the object is not denied for it.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Warn => "warn",
            Self::Skip => "skip",
            Self::Error => "error",
        }
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One rule's word in a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    #[serde(rename = "rule")]
    pub id: RuleId,
    pub status: Status,
    pub message: Cow<'static, str>,
}

impl RuleResult {
    pub fn new(id: RuleId, status: Status, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            id,
            status,
            message: message.into(),
        }
    }
}

/// The denial message of behaviour.md §5, put together from the failing rules' messages:
/// `wasm-admission: SUBJECT not allowed: FAIL; FAIL...NOTE`, where `subject` ends with its verb
/// (`Wasm pod "shop/web" is`, `ephemeral containers of Wasm pod "shop/web" are`). The engine
/// builds every denial through this, so the message cannot drift from the rules it lists.
pub fn denial_message<'r>(
    subject: &str,
    failures: impl IntoIterator<Item = &'r RuleResult>,
    note: &str,
) -> String {
    let mut out = format!("wasm-admission: {subject} not allowed: ");
    for (i, r) in failures
        .into_iter()
        .filter(|r| r.status == Status::Fail)
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&r.message);
    }
    out.push_str(note);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for id in RuleId::ALL {
            assert!(seen.insert(id.as_str()), "{id} twice");
            assert_eq!(RuleId::parse(id.as_str()), Some(id));
        }
    }

    #[test]
    fn every_rule_id_is_in_the_behaviour_documents_table() {
        let doc = include_str!("../../docs/behaviour.md");
        let table = doc
            .split_once("## 14. Rule ids")
            .map(|(_, t)| t)
            .unwrap_or_default();
        for id in RuleId::ALL {
            assert!(
                table.contains(&format!("| `{id}` |")),
                "docs/behaviour.md, \"Rule ids\", does not list {id}"
            );
        }
    }
}
