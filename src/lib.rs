//! `wasm-admission`: a Kubernetes admission webhook for clusters that run WebAssembly workloads
//! beside containers. docs/behaviour.md is the behaviour reference; README.md says how to use it.
//!
//! Three layers, each importing only from the layers below it (tests/layers_import_downwards.rs
//! checks this, that no module imports in a circle, and that no command imports another):
//! - [`core`]: every behaviour rule, pure (no I/O): kinds, detection, mutations, the baseline,
//!   the decision order, the typed verdicts (rule ids), the configuration's keys, patches,
//!   quantities, the native policies. Its module documentation lists where each rule lives.
//! - [`adapters`]: the I/O that hands facts to the core: registry inspection and the one
//!   inspect-then-decide step the doors share (`registry`, `inspect`), the RuntimeClass and Node
//!   watches (`runtime_classes`, `nodes`), the cluster's objects and PolicyReport writes
//!   (`cluster_objects`), TLS and certificate material (`tls`), the configuration file
//!   (`config_file`), and the reports `check` and `audit` write (`report`).
//! - [`commands`]: the doors a user runs, `serve`, `check`, `audit`, `certs`, `config` and
//!   `policies`, each thin, with its own command-line arguments; no door imports another.

pub mod adapters;
pub mod commands;
pub mod core;
