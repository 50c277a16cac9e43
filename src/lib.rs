//! `wasm-admission`: a Kubernetes admission webhook for clusters that run WebAssembly workloads
//! beside containers. docs/behaviour.md is the behaviour reference; README.md says how to use it.
//!
//! Three layers, each importing only from the layers below it (tests/layers_import_downwards.rs
//! checks this, and that no module imports in a circle):
//! - [`core`]: every behaviour rule, pure (no I/O): kinds, detection, mutations, the baseline,
//!   the decision order, the configuration's keys, patches, quantities. Its module documentation
//!   lists where each rule lives.
//! - [`adapters`]: the I/O that hands facts to the core: registry inspection, the RuntimeClass
//!   watch, TLS and certificate material, the configuration file.
//! - [`commands`]: the doors a user runs, `serve`, `check`, `certs` and `config`, each thin, with
//!   its own command-line arguments.

pub mod adapters;
pub mod commands;
pub mod core;
