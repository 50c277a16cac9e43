//! The Pod Security Standards "baseline" checks for Wasm pod specs (SPEC §5).
//!
//! Each violation is reported as the container (if any) and the field with its value, e.g.
//! `container "app": securityContext.privileged=true` or `spec.hostNetwork=true`.

use std::collections::HashSet;

use crate::config::SecurityPolicy;
use crate::engine::model::{
    Container, ContainerPort, Map, Profile, SeLinuxOptions, SecurityContext, Spec, WindowsOptions,
};

/// Capabilities a baseline pod may add.
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

/// The safe sysctl set of the Kubernetes 1.30 baseline policy.
pub const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types a baseline pod may set (empty = unset).
pub const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

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
}

impl<'a> ContainerRef<'a> {
    fn new(list: &'static str, c: &'a Container<'a>) -> Self {
        Self {
            list,
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        }
    }
}

/// Every violation in `spec`, in a stable order: containers in order (as SPEC §5's example
/// message lists them), then pod-level fields.
pub fn violations(
    spec: &Spec<'_>,
    pod_annotations: &Map<'_>,
    policy: SecurityPolicy,
    scope: &Scope<'_>,
) -> Vec<String> {
    let mut out = Vec::new();
    let baseline = policy == SecurityPolicy::Baseline;
    for c in containers(spec, scope) {
        let mut found = Vec::new();
        let sc = c.security_context;
        if sc.and_then(|s| s.privileged) == Some(true) {
            found.push("securityContext.privileged=true".to_string());
        }
        if baseline {
            container_level(&c, &mut found);
        }
        out.extend(
            found
                .into_iter()
                .map(|f| format!("{} \"{}\": {f}", c.list, c.name)),
        );
    }
    if baseline && matches!(scope, Scope::WholePod) {
        pod_level(spec, pod_annotations, &mut out);
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

fn pod_level(spec: &Spec<'_>, annotations: &Map<'_>, out: &mut Vec<String>) {
    for (set, field) in [
        (spec.host_network, "spec.hostNetwork"),
        (spec.host_pid, "spec.hostPID"),
        (spec.host_ipc, "spec.hostIPC"),
    ] {
        if set == Some(true) {
            out.push(format!("{field}=true"));
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(hp) = &v.host_path {
            out.push(format!("volume \"{}\": hostPath={}", v.name, hp.path));
        }
    }
    if let Some(sc) = &spec.security_context {
        let prefix = "spec.securityContext";
        windows(prefix, sc.windows_options.as_ref(), out);
        seccomp(prefix, sc.seccomp_profile.as_ref(), out);
        apparmor(prefix, sc.app_armor_profile.as_ref(), out);
        selinux(prefix, sc.se_linux_options.as_ref(), out);
        let unsafe_sysctls: Vec<&str> = sc
            .sysctls
            .iter()
            .flatten()
            .map(|s| &*s.name)
            .filter(|n| !SAFE_SYSCTLS.contains(n))
            .collect();
        if !unsafe_sysctls.is_empty() {
            out.push(format!("{prefix}.sysctls=[{}]", unsafe_sysctls.join(",")));
        }
    }
    for (key, value) in annotations {
        if let Some(container) = key.strip_prefix(APPARMOR_ANNOTATION_PREFIX)
            && **value != *"runtime/default"
            && !value.starts_with("localhost/")
        {
            out.push(format!(
                "metadata.annotations[{APPARMOR_ANNOTATION_PREFIX}{container}]={value}"
            ));
        }
    }
}

fn container_level(c: &ContainerRef<'_>, out: &mut Vec<String>) {
    for p in c.ports {
        if let Some(host_port) = p.host_port.filter(|p| *p != 0) {
            out.push(format!("ports.hostPort={host_port}"));
        }
    }
    let Some(sc) = c.security_context else {
        return;
    };
    let prefix = "securityContext";
    if let Some(add) = sc.capabilities.as_ref().and_then(|c| c.add.as_ref()) {
        let extra: Vec<&str> = add
            .iter()
            .map(|c| &**c)
            .filter(|cap| !BASELINE_CAPABILITIES.contains(cap))
            .collect();
        if !extra.is_empty() {
            out.push(format!("{prefix}.capabilities.add=[{}]", extra.join(",")));
        }
    }
    if let Some(pm) = sc.proc_mount.as_deref().filter(|pm| *pm != "Default") {
        out.push(format!("{prefix}.procMount={pm}"));
    }
    windows(prefix, sc.windows_options.as_ref(), out);
    seccomp(prefix, sc.seccomp_profile.as_ref(), out);
    apparmor(prefix, sc.app_armor_profile.as_ref(), out);
    selinux(prefix, sc.se_linux_options.as_ref(), out);
}

fn windows(prefix: &str, w: Option<&WindowsOptions>, out: &mut Vec<String>) {
    if w.and_then(|w| w.host_process) == Some(true) {
        out.push(format!("{prefix}.windowsOptions.hostProcess=true"));
    }
}

fn seccomp(prefix: &str, p: Option<&Profile<'_>>, out: &mut Vec<String>) {
    if let Some(p) = p.filter(|p| p.type_ == "Unconfined") {
        out.push(format!("{prefix}.seccompProfile.type={}", p.type_));
    }
}

fn apparmor(prefix: &str, p: Option<&Profile<'_>>, out: &mut Vec<String>) {
    if let Some(p) = p.filter(|p| p.type_ != "RuntimeDefault" && p.type_ != "Localhost") {
        out.push(format!("{prefix}.appArmorProfile.type={}", p.type_));
    }
}

fn selinux(prefix: &str, o: Option<&SeLinuxOptions<'_>>, out: &mut Vec<String>) {
    let Some(o) = o else { return };
    if let Some(t) = o.type_.as_deref().filter(|t| !SELINUX_TYPES.contains(t)) {
        out.push(format!("{prefix}.seLinuxOptions.type={t}"));
    }
    if let Some(u) = o.user.as_deref().filter(|u| !u.is_empty()) {
        out.push(format!("{prefix}.seLinuxOptions.user={u}"));
    }
    if let Some(r) = o.role.as_deref().filter(|r| !r.is_empty()) {
        out.push(format!("{prefix}.seLinuxOptions.role={r}"));
    }
}
