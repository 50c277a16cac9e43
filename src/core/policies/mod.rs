//! Native admission policies (behaviour.md §10): the configuration's rules as a
//! MutatingAdmissionPolicy and a ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`,
//! Kubernetes 1.36+), each with its binding, for kube-apiserver to enforce in CEL without the
//! webhook.
//!
//! Generated from the same [`Config`] the engine reads, and from the same constants (annotation
//! keys, baseline lists, OpenTelemetry names), never written by hand. What needs I/O cannot be
//! expressed: a configuration that asks for it is refused with [`PolicyError`], naming the key.
//! What the policies leave to the webhook without a key to refuse (RuntimeClasses found through
//! their handler, the missing-RuntimeClass warning, every warning) is listed by
//! [`webhook_only`].

mod cel;
mod common;
pub mod match_conditions;
mod mutating;
mod validating;

use serde_json::{Value, json};

use crate::core::config::Config;

pub const MUTATING_NAME: &str = "wasm-admission-mutate";
pub const VALIDATING_NAME: &str = "wasm-admission-validate";
const API_VERSION: &str = "admissionregistration.k8s.io/v1";

/// A configuration the policies cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "detection.registry.enabled is true: registry inspection (rule 6) reads image manifests over \
         the network, which an admission policy cannot do; set it to false, or generate the policies \
         for the chart's mode both with --webhook-does-io (the webhook keeps registry inspection)"
    )]
    RegistryInspection,
}

/// How the mutating policy answers when its expressions fail (`failurePolicy`). The validating
/// policy always fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// The four objects, in apply order (each policy before its binding). `webhook_does_io`: the
/// webhook runs beside the policies (the chart's mode both) and keeps registry inspection.
pub fn generate(
    config: &Config,
    failure: FailurePolicy,
    webhook_does_io: bool,
) -> Result<Vec<Value>, PolicyError> {
    if config.detection.registry.enabled && !webhook_does_io {
        return Err(PolicyError::RegistryInspection);
    }
    let labels = json!({"app.kubernetes.io/name": "wasm-admission", "app.kubernetes.io/component": "native-policy"});
    let object = |kind: &str, name: &str, spec: Value| {
        json!({
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        })
    };
    let binding = |policy: &str, extra: Value| {
        let mut spec = json!({"policyName": policy});
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        spec
    };
    Ok(vec![
        object(
            "MutatingAdmissionPolicy",
            MUTATING_NAME,
            mutating::spec(config, failure.as_str()),
        ),
        object(
            "MutatingAdmissionPolicyBinding",
            MUTATING_NAME,
            binding(MUTATING_NAME, json!({})),
        ),
        object(
            "ValidatingAdmissionPolicy",
            VALIDATING_NAME,
            validating::spec(config),
        ),
        object(
            "ValidatingAdmissionPolicyBinding",
            VALIDATING_NAME,
            binding(VALIDATING_NAME, json!({"validationActions": ["Deny"]})),
        ),
    ])
}

/// What stays with the webhook under this configuration, one line each (for the command's
/// standard error and the README's table).
pub fn webhook_only(config: &Config) -> Vec<String> {
    let mut out = vec![
        "warnings (a policy's mutation cannot warn): mixed pods, a kept runtimeClassName, a missing RuntimeClass".to_string(),
    ];
    if config.detection.registry.enabled {
        out.push("detection.registry: registry inspection (rule 6) needs I/O".to_string());
    }
    if !config.detection.runtime_handlers.is_empty() {
        out.push(
            "detection.runtimeHandlers: classes that run Wasm through their handler need the cluster's \
             RuntimeClasses; the policies know the names in detection.runtimeClasses only"
                .to_string(),
        );
    }
    out
}

/// The objects as one YAML stream.
pub fn to_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(object).unwrap_or_default());
    }
    out
}
