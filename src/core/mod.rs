//! The pure core: every behaviour rule, with no I/O. It reads a request and the facts the
//! adapters found, and returns a decision; it imports nothing from `adapters` or `commands`.
//!
//! Where each rule lives (sections of docs/behaviour.md):
//! - `kinds`: the seven kinds and where each keeps its pod spec (§2)
//! - `detection`: when a pod spec counts as Wasm, rules 1 to 6 (§3)
//! - `mutate`: one module per mutation (§4)
//! - `baseline`: the Pod Security Standards baseline checks, by version (§5)
//! - `engine`: the decision order that ties them together: scope, detection, mutations, denials
//!   (§2, §5, §6)
//! - `config`: the configuration's keys, defaults and validation (§8)
//! - `review`: the AdmissionReview request and answer (§9)
//! - `schedulability`: whether any node satisfies a RuntimeClass's `nodeSelector` (§11)
//! - `model`: the lean model of an object, and the pod view the rules read it through
//! - `patch`: JSON Patch building against the object as received
//! - `policies`: the same rules as native admission policies in CEL (§10)
//! - `quantity`: resource quantities compared by value
//! - `verdict`: the rule ids, statuses and messages a decision lists (behaviour.md, "Rule ids")
//! - `warning`: a warning's text as kubectl shows it; `json_text`: JSON string escaping

pub mod baseline;
pub mod config;
pub mod config_reference;
pub mod detection;
pub mod engine;
pub mod json_text;
pub mod kinds;
pub mod model;
pub mod mutate;
pub mod patch;
pub mod policies;
pub mod quantity;
pub mod review;
pub mod runtime_class_manifest;
pub mod schedulability;
pub mod verdict;
pub mod warning;
