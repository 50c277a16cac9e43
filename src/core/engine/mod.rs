//! The decision engine: one pure, synchronous function from a request to a decision.
//!
//! `serve` (through [`crate::core::review`]), `check` and `audit` (through
//! [`crate::adapters::report`]) all call [`Engine::decide`], after the registry lookups of
//! [`crate::adapters::inspect`]; none makes a decision of its own, so they cannot disagree.

mod decide;

pub use decide::{ANN_INJECTED, ANN_OTEL, ANN_OTEL_ENDPOINT, ANN_RESOURCE_PROFILE, LABEL_SKIP};

use std::collections::BTreeMap;

use kube_core::admission::Operation;
use serde_json::value::RawValue;

use crate::core::config::{Config, ConfigError};
use crate::core::detection::{
    ClusterRuntimeClasses, DetectionInputs, ImageClassifier, ImagePatterns, WasmRuntimeClasses,
};
use crate::core::model;
use crate::core::schedulability::ClusterNodes;
use crate::core::verdict::{RuleId, RuleResult, Status};

/// Which webhook endpoint asks: `/mutate` answers with mutations and denials, `/validate` with
/// denials only (it runs after every mutating webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

/// An API group, version and kind, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKind<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
}

/// What the engine reads of one admission request; built by each door.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub kind: ApiKind<'a>,
    pub sub_resource: Option<&'a str>,
    pub operation: Operation,
    /// The request's namespace (authoritative: the object's own may be empty on CREATE).
    pub namespace: &'a str,
    /// The request's name (empty for objects created with `generateName`).
    pub name: &'a str,
    /// The object as received; the engine reads it through [`model`].
    pub object: Option<ObjectInput<'a>>,
    pub old_object: Option<&'a RawValue>,
    /// Who asks (the review's `userInfo.username`), for `security.exemptions.usernames`; `None`
    /// where there is no user (`check`, `audit`).
    pub username: Option<&'a str>,
}

/// The object of a request: raw JSON, which the engine parses into its [`model`] only when the
/// request is in scope, or already parsed into that model by a door that read it in the same
/// pass as the rest of the request (`serve`: one scan of the body instead of two).
#[derive(Debug, Clone, Copy)]
pub enum ObjectInput<'a> {
    Raw(&'a RawValue),
    Parsed(&'a model::Object<'a>),
}

/// What the doors found out beforehand, by I/O the engine itself never does.
#[derive(Default, Clone, Copy)]
pub struct Facts<'a> {
    /// Registry inspection results (behaviour.md §3 rule 6), when enabled.
    pub registry: Option<&'a dyn ImageClassifier>,
    /// The RuntimeClasses that exist in the cluster, with their handlers, when `serve` watches
    /// them (behaviour.md §7, §3 rule 3b).
    pub runtime_classes: Option<&'a ClusterRuntimeClasses>,
    /// The labels of the cluster's nodes, when `serve` watches them (behaviour.md §11): with
    /// `runtime_classes`, a warning when no node can run the pod's class.
    pub nodes: Option<&'a ClusterNodes>,
    /// `serve` watches RuntimeClasses but holds no complete list yet (the first list has not arrived, or
    /// it failed): a class that is not Wasm by name is unknown, and §5 is checked as for a Wasm pod.
    pub runtime_classes_pending: bool,
}

/// How a review ended, for logs, metrics and `check`'s report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Mutated,
    Unchanged,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutated => "mutated",
            Self::Unchanged => "unchanged",
            Self::Denied => "denied",
        }
    }
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub allowed: bool,
    /// The denial message (behaviour.md §5), when not allowed.
    pub message: Option<String>,
    /// RFC 6902 operations against the object exactly as received; empty when nothing changes.
    pub patch: crate::core::patch::Patch,
    /// Each at most 120 characters, starting with `wasm-admission: `.
    pub warnings: Vec<String>,
    /// Keys without `/` (the apiserver prefixes the webhook's name).
    pub audit_annotations: BTreeMap<String, String>,
    /// The rules that acted or spoke, in the order they did (docs/behaviour.md, "Rule ids"):
    /// `allowed` is false exactly when one has [`Status::Fail`], and the denial message is built
    /// from those rules' messages ([`crate::core::verdict::denial_message`]).
    pub rules: Vec<RuleResult>,
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        if !self.allowed {
            Outcome::Denied
        } else if self.patch.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::Mutated
        }
    }

    /// The first rule that failed: the one a denial is counted and reported under.
    pub fn failed_rule(&self) -> Option<RuleId> {
        self.rules
            .iter()
            .find(|r| r.status == Status::Fail)
            .map(|r| r.id)
    }

    pub(crate) fn allow() -> Self {
        Self {
            allowed: true,
            ..Self::default()
        }
    }
}

/// A request the engine cannot decide on: the door answers it as a client error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("request for {operation:?} of {kind} carries no object")]
    MissingObject { operation: Operation, kind: String },
    #[error("object is a {found}, but the request is for a {expected}")]
    KindMismatch { expected: String, found: String },
    #[error("{kind} object is not valid: {message}")]
    InvalidObject { kind: String, message: String },
}

/// The configured engine. Cheap to share: hold it in an `Arc` and swap it on reload.
pub struct Engine {
    config: Config,
    patterns: ImagePatterns,
    wasm_classes: WasmRuntimeClasses,
}

impl Engine {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let patterns = ImagePatterns::new(&config.detection.image_patterns).map_err(|message| {
            ConfigError::Invalid {
                path: "<configuration>".into(),
                message,
            }
        })?;
        let detection = &config.detection;
        let wasm_classes = WasmRuntimeClasses::new(
            &detection.runtime_classes,
            &config.runtime_class_name,
            &detection.runtime_handlers,
        );
        Ok(Self {
            config,
            patterns,
            wasm_classes,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decides on one request. Pure: no I/O, no clock, no randomness.
    pub fn decide(
        &self,
        request: &Request<'_>,
        endpoint: Endpoint,
        facts: &Facts<'_>,
    ) -> Result<Decision, EngineError> {
        decide::decide(self, request, endpoint, facts).map(|mut decision| {
            // Every door gets the same list: identical warnings once, at most 20 and a count.
            decision.warnings =
                crate::core::warning::collapse(std::mem::take(&mut decision.warnings));
            decision
        })
    }

    /// The images that [`Engine::decide`] would hand to `Facts::registry` for this request
    /// (behaviour.md §3 rule 6), each once: a door looks these up before deciding, with the cluster's
    /// RuntimeClasses it will hand as `Facts::runtime_classes`. Pure, like `decide`.
    pub fn registry_images(
        &self,
        request: &Request<'_>,
        runtime_classes: Option<&ClusterRuntimeClasses>,
    ) -> Vec<String> {
        decide::registry_images(self, request, runtime_classes)
    }

    /// What detection reads besides the pod (behaviour.md §3).
    fn detection_inputs<'a>(&'a self, facts: &Facts<'a>) -> DetectionInputs<'a> {
        DetectionInputs {
            patterns: &self.patterns,
            wasm_classes: &self.wasm_classes,
            cluster_classes: facts.runtime_classes,
            registry: facts.registry,
        }
    }
}
