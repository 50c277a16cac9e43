//! The Pod Security Standards "baseline" checks for Wasm pod specs (behaviour.md §5), versioned as Pod
//! Security Admission versions them (`security.baselineVersion`, [`BaselineVersion`]).
//!
//! Each violation is reported as the container (if any) and the field with its value, e.g.
//! `container "app": securityContext.privileged=true` or `spec.hostNetwork=true`; a check that
//! exists only from some version on says so, e.g. `(baseline since v1.34)`.
//!
//! What each check allows, per version, follows the upstream `k8s.io/pod-security-admission`
//! policy package; the versions where a line moved are the `since` numbers below.

mod checks;
mod version;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

pub use checks::APPARMOR_ANNOTATION_PREFIX;
pub use version::{BaselineVersion, LATEST_MINOR, OLDEST_MINOR};

use crate::core::model::{Container, ContainerPort, Handler, Map, SecurityContext, Spec};
use crate::core::verdict::RuleId;

/// One thing a check refuses: the check's rule id and the words of the denial message
/// (`container "app": securityContext.privileged=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: RuleId,
    pub text: String,
}

impl Violation {
    pub fn new(rule: RuleId, text: String) -> Self {
        Self { rule, text }
    }
}

/// The `security` section of the configuration (behaviour.md §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecurityConfig {
    pub policy: SecurityPolicy,
    /// The Pod Security Standards version of the baseline checks, as PSA's `enforce-version`.
    pub baseline_version: BaselineVersion,
    /// Who and what the baseline checks never apply to: the cluster administrator's, as Pod
    /// Security Admission's `AdmissionConfiguration` exemptions (behaviour.md §5, the boundary).
    pub exemptions: Exemptions,
}

/// `security.exemptions`: requests the baseline checks (behaviour.md §5) never apply to. Only the
/// administrator's configuration can say this; nothing on the pod can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Exemptions {
    /// Authenticated user names (the request's `userInfo.username`), e.g. a controller's
    /// `system:serviceaccount:NS:NAME`.
    pub usernames: Vec<String>,
    /// Namespaces whose pods are not checked (they are still mutated).
    pub namespaces: Vec<String>,
    /// RuntimeClass names: a pod spec whose own `runtimeClassName` is one of these is not checked.
    pub runtime_classes: Vec<String>,
}

impl Exemptions {
    /// Whether a request is exempt: by its user, its namespace, or the class its pod spec names.
    pub fn exempt(
        &self,
        username: Option<&str>,
        namespace: &str,
        runtime_class: Option<&str>,
    ) -> bool {
        username.is_some_and(|u| self.usernames.iter().any(|x| x == u))
            || self.namespaces.iter().any(|x| x == namespace)
            || runtime_class
                .is_some_and(|c| !c.is_empty() && self.runtime_classes.iter().any(|x| x == c))
    }

    pub fn is_empty(&self) -> bool {
        self.usernames.is_empty() && self.namespaces.is_empty() && self.runtime_classes.is_empty()
    }
}

/// Which Pod Security Standards level Wasm pods must meet (behaviour.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecurityPolicy {
    /// Every baseline check.
    #[default]
    Baseline,
    /// Only `securityContext.privileged` is checked.
    Privileged,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            policy: SecurityPolicy::Baseline,
            baseline_version: BaselineVersion::Latest,
            exemptions: Exemptions::default(),
        }
    }
}

/// Capabilities a baseline pod may add (unchanged since v1.0).
pub const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The safe sysctls, each with the minor version from which it is safe (`0`: before v1.30).
pub const SAFE_SYSCTLS: [(&str, u32); 14] = [
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
    ("net.ipv4.tcp_slow_start_after_idle", 37),
    ("net.ipv4.tcp_notsent_lowat", 37),
];

/// The SELinux types a baseline pod may set (empty = unset), each with the minor from which it is
/// allowed.
pub const SELINUX_TYPES: [(&str, u32); 5] = [
    ("", 0),
    ("container_t", 0),
    ("container_init_t", 0),
    ("container_kvm_t", 0),
    ("container_engine_t", 31),
];

/// From this minor, a probe or lifecycle handler must not name a `host`.
pub const PROBE_HOST_SINCE: u32 = 34;

/// From this minor, any `procMount` is allowed in a pod with `hostUsers: false`.
pub const PROC_MOUNT_USER_NAMESPACE_SINCE: u32 = 35;

/// Whether `name` is a safe sysctl at `version`.
pub fn sysctl_is_safe(name: &str, version: BaselineVersion) -> bool {
    SAFE_SYSCTLS
        .iter()
        .any(|(safe, since)| *safe == name && version.at_least(*since))
}

/// Whether `seLinuxOptions.type` may be `t` at `version`.
pub fn selinux_type_is_allowed(t: &str, version: BaselineVersion) -> bool {
    SELINUX_TYPES
        .iter()
        .any(|(allowed, since)| *allowed == t && version.at_least(*since))
}

/// What part of the pod spec to check.
pub enum Scope<'a> {
    /// Everything: pod-level fields and all three container lists.
    WholePod,
    /// Only ephemeral containers whose names are not in the set (those being added by
    /// `kubectl debug`; ephemeral containers are immutable once added).
    NewEphemeralContainers(HashSet<&'a str>),
}

/// A container of any of the three lists, as the checks see it.
struct ContainerRef<'a> {
    list: &'static str,
    name: &'a str,
    security_context: Option<&'a SecurityContext<'a>>,
    ports: &'a [ContainerPort],
    container: &'a Container<'a>,
}

impl<'a> ContainerRef<'a> {
    fn new(list: &'static str, c: &'a Container<'a>) -> Self {
        Self {
            list,
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            container: c,
        }
    }

    /// The probes and lifecycle handlers, with their field names.
    fn handlers(&self) -> [(&'static str, Option<&'a Handler<'a>>); 5] {
        let c = self.container;
        let lifecycle = c.lifecycle.as_ref();
        [
            ("livenessProbe", c.liveness_probe.as_ref()),
            ("readinessProbe", c.readiness_probe.as_ref()),
            ("startupProbe", c.startup_probe.as_ref()),
            (
                "lifecycle.postStart",
                lifecycle.and_then(|l| l.post_start.as_ref()),
            ),
            (
                "lifecycle.preStop",
                lifecycle.and_then(|l| l.pre_stop.as_ref()),
            ),
        ]
    }
}

/// Every violation in `spec`, in a stable order: containers in order (as behaviour.md §5's example
/// message lists them), then pod-level fields.
pub fn violations(
    spec: &Spec<'_>,
    pod_annotations: &Map<'_>,
    security: &SecurityConfig,
    scope: &Scope<'_>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let baseline = security.policy == SecurityPolicy::Baseline;
    let version = security.baseline_version;
    for c in containers(spec, scope) {
        let mut found = Vec::new();
        let sc = c.security_context;
        if sc.and_then(|s| s.privileged) == Some(true) {
            found.push(Violation::new(
                RuleId::BaselinePrivileged,
                "securityContext.privileged=true".to_string(),
            ));
        }
        if baseline {
            container_level(spec, &c, version, &mut found);
        }
        out.extend(found.into_iter().map(|f| Violation {
            rule: f.rule,
            text: format!("{} \"{}\": {}", c.list, c.name, f.text),
        }));
    }
    if baseline && matches!(scope, Scope::WholePod) {
        pod_level(spec, pod_annotations, version, &mut out);
    }
    out
}

fn containers<'a>(spec: &'a Spec<'a>, scope: &Scope<'_>) -> Vec<ContainerRef<'a>> {
    let mut out = Vec::new();
    if matches!(scope, Scope::WholePod) {
        out.extend(
            spec.containers()
                .iter()
                .map(|c| ContainerRef::new("container", c)),
        );
        out.extend(
            spec.init_containers()
                .iter()
                .map(|c| ContainerRef::new("initContainer", c)),
        );
    }
    for c in spec.ephemeral_containers() {
        if let Scope::NewEphemeralContainers(existing) = scope
            && existing.contains(&*c.name)
        {
            continue;
        }
        out.push(ContainerRef::new("ephemeralContainer", c));
    }
    out
}

fn pod_level(
    spec: &Spec<'_>,
    annotations: &Map<'_>,
    version: BaselineVersion,
    out: &mut Vec<Violation>,
) {
    for (set, field) in [
        (spec.host_network, "spec.hostNetwork"),
        (spec.host_pid, "spec.hostPID"),
        (spec.host_ipc, "spec.hostIPC"),
    ] {
        if set == Some(true) {
            out.push(Violation::new(
                RuleId::BaselineHostNamespaces,
                format!("{field}=true"),
            ));
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(hp) = &v.host_path {
            out.push(Violation::new(
                RuleId::BaselineHostPathVolumes,
                format!("volume \"{}\": hostPath={}", v.name, hp.path),
            ));
        }
    }
    if let Some(sc) = &spec.security_context {
        let prefix = "spec.securityContext";
        checks::windows(prefix, sc.windows_options.as_ref(), out);
        checks::seccomp(prefix, sc.seccomp_profile.as_ref(), out);
        checks::apparmor(prefix, sc.app_armor_profile.as_ref(), out);
        checks::selinux(prefix, sc.se_linux_options.as_ref(), version, out);
        checks::sysctls(prefix, sc.sysctls.as_deref(), version, out);
    }
    checks::apparmor_annotations(annotations, out);
}

fn container_level(
    spec: &Spec<'_>,
    c: &ContainerRef<'_>,
    version: BaselineVersion,
    out: &mut Vec<Violation>,
) {
    for p in c.ports {
        if let Some(host_port) = p.host_port.filter(|p| *p != 0) {
            out.push(Violation::new(
                RuleId::BaselineHostPorts,
                format!("ports.hostPort={host_port}"),
            ));
        }
    }
    if let Some(sc) = c.security_context {
        let prefix = "securityContext";
        checks::capabilities(prefix, sc.capabilities.as_ref(), out);
        checks::proc_mount(prefix, sc.proc_mount.as_deref(), spec, version, out);
        checks::windows(prefix, sc.windows_options.as_ref(), out);
        checks::seccomp(prefix, sc.seccomp_profile.as_ref(), out);
        checks::apparmor(prefix, sc.app_armor_profile.as_ref(), out);
        checks::selinux(prefix, sc.se_linux_options.as_ref(), version, out);
    }
    if version.at_least(PROBE_HOST_SINCE) {
        for (field, handler) in c.handlers() {
            checks::handler_hosts(field, handler, out);
        }
    }
}
