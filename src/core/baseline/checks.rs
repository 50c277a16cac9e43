//! The field checks, each writing `field=value` for what it refuses. Which version a check or an
//! allowance applies from is decided by the caller or by the lists in `mod.rs`.

use crate::core::model::{
    Capabilities, Handler, Map, Profile, SeLinuxOptions, Spec, Sysctl, WindowsOptions,
};
use crate::core::verdict::RuleId;

use super::{
    BASELINE_CAPABILITIES, BaselineVersion, PROBE_HOST_SINCE, PROC_MOUNT_USER_NAMESPACE_SINCE,
    Violation, selinux_type_is_allowed, sysctl_is_safe,
};

pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// A value as shown in a message: an empty one as `""`, so that it can be seen.
fn shown(value: &str) -> &str {
    if value.is_empty() { "\"\"" } else { value }
}

/// `capabilities.add` outside the baseline list.
pub(super) fn capabilities(
    prefix: &str,
    caps: Option<&Capabilities<'_>>,
    out: &mut Vec<Violation>,
) {
    let Some(add) = caps.and_then(|c| c.add.as_ref()) else {
        return;
    };
    let extra: Vec<&str> = add
        .iter()
        .map(|c| &**c)
        .filter(|cap| !BASELINE_CAPABILITIES.contains(cap))
        .collect();
    if !extra.is_empty() {
        out.push(Violation::new(
            RuleId::BaselineCapabilities,
            format!("{prefix}.capabilities.add=[{}]", extra.join(",")),
        ));
    }
}

/// `procMount` other than `Default`; from v1.35 any value in a pod with `hostUsers: false`.
pub(super) fn proc_mount(
    prefix: &str,
    proc_mount: Option<&str>,
    spec: &Spec<'_>,
    version: BaselineVersion,
    out: &mut Vec<Violation>,
) {
    let user_namespace =
        version.at_least(PROC_MOUNT_USER_NAMESPACE_SINCE) && spec.host_users == Some(false);
    if let Some(pm) = proc_mount.filter(|pm| *pm != "Default" && !user_namespace) {
        out.push(Violation::new(
            RuleId::BaselineProcMount,
            format!("{prefix}.procMount={}", shown(pm)),
        ));
    }
}

/// `windowsOptions.hostProcess: true`.
pub(super) fn windows(prefix: &str, w: Option<&WindowsOptions>, out: &mut Vec<Violation>) {
    if w.and_then(|w| w.host_process) == Some(true) {
        out.push(Violation::new(
            RuleId::BaselineWindowsHostProcess,
            format!("{prefix}.windowsOptions.hostProcess=true"),
        ));
    }
}

/// A seccomp profile other than `RuntimeDefault` and `Localhost` (`Unconfined`, in practice).
pub(super) fn seccomp(prefix: &str, p: Option<&Profile<'_>>, out: &mut Vec<Violation>) {
    if let Some(p) = p.filter(|p| p.type_ != "RuntimeDefault" && p.type_ != "Localhost") {
        out.push(Violation::new(
            RuleId::BaselineSeccomp,
            format!("{prefix}.seccompProfile.type={}", shown(&p.type_)),
        ));
    }
}

/// An AppArmor profile other than `RuntimeDefault` and `Localhost`.
pub(super) fn apparmor(prefix: &str, p: Option<&Profile<'_>>, out: &mut Vec<Violation>) {
    if let Some(p) = p.filter(|p| p.type_ != "RuntimeDefault" && p.type_ != "Localhost") {
        out.push(Violation::new(
            RuleId::BaselineAppArmor,
            format!("{prefix}.appArmorProfile.type={}", shown(&p.type_)),
        ));
    }
}

/// The deprecated AppArmor annotations: empty, `runtime/default` and `localhost/*` are allowed.
pub(super) fn apparmor_annotations(annotations: &Map<'_>, out: &mut Vec<Violation>) {
    for (key, value) in annotations {
        if let Some(container) = key.strip_prefix(APPARMOR_ANNOTATION_PREFIX)
            && !value.is_empty()
            && **value != *"runtime/default"
            && !value.starts_with("localhost/")
        {
            out.push(Violation::new(
                RuleId::BaselineAppArmor,
                format!("metadata.annotations[{APPARMOR_ANNOTATION_PREFIX}{container}]={value}"),
            ));
        }
    }
}

/// SELinux: a type outside the version's list, or any user or role.
pub(super) fn selinux(
    prefix: &str,
    o: Option<&SeLinuxOptions<'_>>,
    version: BaselineVersion,
    out: &mut Vec<Violation>,
) {
    let Some(o) = o else { return };
    if let Some(t) = o
        .type_
        .as_deref()
        .filter(|t| !selinux_type_is_allowed(t, version))
    {
        out.push(Violation::new(
            RuleId::BaselineSeLinux,
            format!("{prefix}.seLinuxOptions.type={t}"),
        ));
    }
    if let Some(u) = o.user.as_deref().filter(|u| !u.is_empty()) {
        out.push(Violation::new(
            RuleId::BaselineSeLinux,
            format!("{prefix}.seLinuxOptions.user={u}"),
        ));
    }
    if let Some(r) = o.role.as_deref().filter(|r| !r.is_empty()) {
        out.push(Violation::new(
            RuleId::BaselineSeLinux,
            format!("{prefix}.seLinuxOptions.role={r}"),
        ));
    }
}

/// Pod sysctls outside the version's safe set.
pub(super) fn sysctls(
    prefix: &str,
    sysctls: Option<&[Sysctl<'_>]>,
    version: BaselineVersion,
    out: &mut Vec<Violation>,
) {
    let unsafe_sysctls: Vec<&str> = sysctls
        .unwrap_or_default()
        .iter()
        .map(|s| &*s.name)
        .filter(|n| !sysctl_is_safe(n, version))
        .map(shown)
        .collect();
    if !unsafe_sysctls.is_empty() {
        out.push(Violation::new(
            RuleId::BaselineSysctls,
            format!("{prefix}.sysctls=[{}]", unsafe_sysctls.join(",")),
        ));
    }
}

/// A probe or lifecycle handler whose `httpGet` or `tcpSocket` names a host (from v1.34; the
/// caller decides).
pub(super) fn handler_hosts(field: &str, handler: Option<&Handler<'_>>, out: &mut Vec<Violation>) {
    let Some(h) = handler else { return };
    for (action, a) in [("httpGet", &h.http_get), ("tcpSocket", &h.tcp_socket)] {
        if let Some(host) = a
            .as_ref()
            .and_then(|a| a.host.as_deref())
            .filter(|h| !h.is_empty())
        {
            out.push(Violation::new(
                RuleId::BaselineProbeHost,
                format!("{field}.{action}.host={host} (baseline since v1.{PROBE_HOST_SINCE})"),
            ));
        }
    }
}
