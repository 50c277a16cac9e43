//! The ValidatingAdmissionPolicy: behaviour.md §5's denials with the webhook's messages, the
//! unknown resource profile (§4.2), and `kubectl debug` (§5, ephemeral containers).
//!
//! The baseline checks are those of `crate::core::baseline` at the configured
//! `security.baselineVersion`, chosen here when the policy is generated; each produces the same
//! `field=value` text, in the same order (containers, init containers, ephemeral containers,
//! then pod-level fields).

use serde_json::{Value, json};

use super::cel;
use super::common::{self, Variables};
use crate::core::baseline::{
    APPARMOR_ANNOTATION_PREFIX, BASELINE_CAPABILITIES, PROBE_HOST_SINCE,
    PROC_MOUNT_USER_NAMESPACE_SINCE, SAFE_SYSCTLS, SELINUX_TYPES, SecurityPolicy,
};
use crate::core::config::Config;
use crate::core::engine::ANN_RESOURCE_PROFILE;

/// The most containers (of the three lists together) and volumes a checked pod spec may have
/// under the native policy: the lists its expressions walk are bounded, so that a padded pod is
/// denied with a message instead of running past the apiserver's CEL cost limit (behaviour.md §10).
pub const MAX_CONTAINERS: usize = 1024;
pub const MAX_VOLUMES: usize = 1024;

/// The validating policy always fails closed (`failurePolicy: Fail`): an expression that errors
/// or runs out of cost denies the request, whatever the mutating policy's setting (behaviour.md §5:
/// a review is never failed open).
pub fn spec(config: &Config) -> Value {
    let mut vars = Variables::default();
    common::locate(&mut vars);
    common::detect(config, &mut vars);
    common::profile(config, &mut vars);
    vars.add(
        "ephemeral",
        "has(request.subResource) && request.subResource == 'ephemeralcontainers'",
    );
    common::boundary(config, &mut vars);
    // The names of the ephemeral containers the pod had, as a map: one lookup per new container,
    // linear in the list (a list `in` was n×m and ran past the cost limit at 1,000 containers).
    vars.add(
        "oldEphemeral",
        "variables.ephemeral && oldObject != null ? \
         oldObject.spec.?ephemeralContainers.orValue([]).transformMapEntry(i, c, {c.name: true}) : {}",
    );
    vars.add(
        "containerCount",
        "size(variables.spec.?containers.orValue([])) + size(variables.spec.?initContainers.orValue([])) + \
         size(variables.spec.?ephemeralContainers.orValue([]))",
    );
    vars.add("volumeCount", "size(variables.spec.?volumes.orValue([]))");
    vars.add(
        "tooLarge",
        format!(
            "variables.containerCount > {MAX_CONTAINERS} || variables.volumeCount > {MAX_VOLUMES}"
        ),
    );
    let checks = Checks::new(config);
    let list = |field: &str, label: &str, filter: &str| {
        format!(
            "variables.spec.?{field}.orValue([]){filter}.map(c, {}.map(f, '{label} \"' + c.name + '\": ' + f)).flatten()",
            checks.container()
        )
    };
    vars.add(
        "violations",
        format!(
            "{} + {} + {} + {}",
            list("containers", "container", ""),
            list("initContainers", "initContainer", ""),
            list("ephemeralContainers", "ephemeralContainer", ""),
            checks.pod(),
        ),
    );
    vars.add(
        "ephemeralViolations",
        list(
            "ephemeralContainers",
            "ephemeralContainer",
            ".filter(c, !(c.name in variables.oldEphemeral))",
        ),
    );
    vars.add(
        "what",
        format!(
            "request.kind.kind == 'Pod' ? 'Wasm pod ' + {s} : 'Wasm pod template of ' + request.kind.kind + ' ' + {s}",
            s = common::subject()
        ),
    );
    let profiles: Vec<&str> = config
        .resource_profiles
        .keys()
        .map(String::as_str)
        .collect();
    let validations = json!([
        {
            "expression": "!variables.mustCheck || !variables.tooLarge",
            "messageExpression": format!(
                "'wasm-admission: ' + variables.what + ' is not allowed: ' + string(variables.containerCount) + \
                 ' containers and ' + string(variables.volumeCount) + ' volumes; the native policy checks at most \
                 {MAX_CONTAINERS} containers and {MAX_VOLUMES} volumes'"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": "!variables.mustCheck || variables.tooLarge || variables.ephemeral || size(variables.violations) == 0",
            "messageExpression":
                "'wasm-admission: ' + variables.what + ' is not allowed: ' + variables.violations.join('; ')",
            "reason": "Forbidden",
        },
        {
            "expression": "!variables.isWasm || variables.skipped || variables.immutableUpdate || variables.ephemeral || \
                 (variables.mustCheck && (variables.tooLarge || size(variables.violations) > 0)) || variables.profileKnown",
            "messageExpression": format!(
                "'wasm-admission: ' + variables.what + ' is not allowed: unknown resource profile \"' + \
                 variables.profileName.value() + '\" in {ANN_RESOURCE_PROFILE}; known profiles: ' + {}",
                cel::string(&profiles.join(", "))
            ),
            "reason": "Forbidden",
        },
        {
            "expression": "!variables.mustCheck || variables.tooLarge || !variables.ephemeral || size(variables.ephemeralViolations) == 0",
            "messageExpression": format!(
                "'wasm-admission: ephemeral containers of Wasm pod ' + {} + ' are not allowed: ' + \
                 variables.ephemeralViolations.join('; ')",
                common::subject()
            ),
            "reason": "Forbidden",
        },
    ]);
    json!({
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": common::resource_rules(true, true, true),
            "namespaceSelector": common::namespace_selector(config),
        },
        "matchConditions": common::match_conditions(config, false),
        "variables": vars.to_json(),
        "validations": validations,
    })
}

/// `cond ? [text] : []`.
fn when(cond: &str, text: &str) -> String {
    format!("({cond} ? [{text}] : [])")
}

/// A value as a message shows it: an empty one as `""` (`checks::shown`).
fn shown(value: &str) -> String {
    format!("({value} == '' ? '\"\"' : {value})")
}

/// The checks that apply at the configured policy and version.
struct Checks {
    baseline: bool,
    probe_hosts: bool,
    proc_mount_user_namespace: bool,
    capabilities: String,
    sysctls: String,
    selinux_types: String,
}

impl Checks {
    fn new(config: &Config) -> Self {
        let version = config.security.baseline_version;
        let at = |since: u32| version.at_least(since);
        Self {
            baseline: config.security.policy == SecurityPolicy::Baseline,
            probe_hosts: at(PROBE_HOST_SINCE),
            proc_mount_user_namespace: at(PROC_MOUNT_USER_NAMESPACE_SINCE),
            capabilities: cel::strings(BASELINE_CAPABILITIES),
            sysctls: cel::strings(
                SAFE_SYSCTLS
                    .iter()
                    .filter(|(_, since)| at(*since))
                    .map(|(name, _)| *name),
            ),
            selinux_types: cel::strings(
                SELINUX_TYPES
                    .iter()
                    .filter(|(_, since)| at(*since))
                    .map(|(name, _)| *name),
            ),
        }
    }

    /// One container's findings (`c`), as a list of strings.
    fn container(&self) -> String {
        let mut parts = vec![when(
            "c.?securityContext.?privileged.orValue(false)",
            "'securityContext.privileged=true'",
        )];
        if self.baseline {
            parts.push(
                "c.?ports.orValue([]).filter(p, p.?hostPort.orValue(0) != 0)\
                 .map(p, 'ports.hostPort=' + string(p.hostPort))"
                    .to_string(),
            );
            let sc = "c.?securityContext";
            let extra = format!(
                "{sc}.?capabilities.?add.orValue([]).filter(x, !(x in {}))",
                self.capabilities
            );
            parts.push(when(
                &format!("size({extra}) > 0"),
                &format!("'securityContext.capabilities.add=[' + {extra}.join(',') + ']'"),
            ));
            let user_namespace = if self.proc_mount_user_namespace {
                " && variables.spec.?hostUsers.orValue(true) != false"
            } else {
                ""
            };
            let pm = format!("{sc}.?procMount.orValue('Default')");
            parts.push(when(
                &format!("{pm} != 'Default'{user_namespace}"),
                &format!("'securityContext.procMount=' + {}", shown(&pm)),
            ));
            parts.extend(self.shared(sc, "securityContext"));
            if self.probe_hosts {
                for field in [
                    "livenessProbe",
                    "readinessProbe",
                    "startupProbe",
                    "lifecycle.postStart",
                    "lifecycle.preStop",
                ] {
                    let path = field.replace('.', ".?");
                    for action in ["httpGet", "tcpSocket"] {
                        let host = format!("c.?{path}.?{action}.?host.orValue('')");
                        parts.push(when(
                            &format!("{host} != ''"),
                            &format!(
                                "'{field}.{action}.host=' + {host} + ' (baseline since v1.{PROBE_HOST_SINCE})'"
                            ),
                        ));
                    }
                }
            }
        }
        format!("({})", parts.join(" + "))
    }

    /// The checks a container's and the pod's security context share: Windows host process,
    /// seccomp, AppArmor, SELinux.
    fn shared(&self, sc: &str, prefix: &str) -> Vec<String> {
        let mut parts = vec![when(
            &format!("{sc}.?windowsOptions.?hostProcess.orValue(false)"),
            &format!("'{prefix}.windowsOptions.hostProcess=true'"),
        )];
        for profile in ["seccompProfile", "appArmorProfile"] {
            let t = format!("{sc}.?{profile}.?type.orValue('')");
            parts.push(when(
                &format!("{sc}.?{profile}.hasValue() && !({t} in ['RuntimeDefault', 'Localhost'])"),
                &format!("'{prefix}.{profile}.type=' + {}", shown(&t)),
            ));
        }
        let se = format!("{sc}.?seLinuxOptions");
        parts.push(when(
            &format!(
                "{se}.?type.hasValue() && !({se}.?type.orValue('') in {})",
                self.selinux_types
            ),
            &format!("'{prefix}.seLinuxOptions.type=' + {se}.?type.orValue('')"),
        ));
        for field in ["user", "role"] {
            let v = format!("{se}.?{field}.orValue('')");
            parts.push(when(
                &format!("{v} != ''"),
                &format!("'{prefix}.seLinuxOptions.{field}=' + {v}"),
            ));
        }
        parts
    }

    /// The pod-level findings, as a list of strings.
    fn pod(&self) -> String {
        if !self.baseline {
            return "[]".to_string();
        }
        let mut parts = Vec::new();
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            parts.push(when(
                &format!("variables.spec.?{field}.orValue(false)"),
                &format!("'spec.{field}=true'"),
            ));
        }
        parts.push(
            "variables.spec.?volumes.orValue([]).filter(v, has(v.hostPath))\
             .map(v, 'volume \"' + v.name + '\": hostPath=' + v.hostPath.?path.orValue(''))"
                .to_string(),
        );
        let sc = "variables.spec.?securityContext";
        parts.extend(self.shared(sc, "spec.securityContext"));
        let unsafe_sysctls = format!(
            "{sc}.?sysctls.orValue([]).map(s, s.?name.orValue('')).filter(n, !(n in {}))",
            self.sysctls
        );
        parts.push(when(
            &format!("size({unsafe_sysctls}) > 0"),
            &format!(
                "'spec.securityContext.sysctls=[' + {unsafe_sysctls}.map(n, {}).join(',') + ']'",
                shown("n")
            ),
        ));
        // Sorted by key, as the apiserver writes the annotations the webhook reads.
        parts.push(format!(
            "variables.podAnnotations.filter(k, k.startsWith({prefix}) && \
             variables.podAnnotations[k] != '' && variables.podAnnotations[k] != 'runtime/default' && \
             !variables.podAnnotations[k].startsWith('localhost/')).sort()\
             .map(k, 'metadata.annotations[' + k + ']=' + variables.podAnnotations[k])",
            prefix = cel::string(APPARMOR_ANNOTATION_PREFIX)
        ));
        format!("({})", parts.join(" + "))
    }
}
