//! `wasm-admission`: a Kubernetes admission webhook for clusters that run WebAssembly workloads
//! beside containers. See SPEC.md for the behaviour contract and README.md for its use.
//!
//! Where each rule lives:
//! - `kinds`: the seven kinds and their pod-spec paths (SPEC §2)
//! - `detection`: when a pod spec counts as Wasm (SPEC §3)
//! - `mutate::*`: one module per mutation (SPEC §4)
//! - `baseline`: the Pod Security Standards baseline checks (SPEC §5)
//! - `engine`: the pure decision function that ties them together (SPEC §2, §5, §6)
//! - `patch`: JSON-pointer patch building against the object as received
//! - `quantity`: resource quantities compared by value
//! - `config`: the configuration file (SPEC §8)
//! - `review`: AdmissionReview decoding and encoding; `check`: the CI door; `server`: the HTTPS door
//! - `alloc`: the process's allocator
//! - `registry`: image lookups for SPEC §3 rule 6; `runtime_classes`: the RuntimeClass watch of §7

pub mod alloc;
pub mod baseline;
pub mod certs;
pub mod check;
pub mod cli;
pub mod config;
pub mod detection;
pub mod engine;
pub mod json_text;
pub mod kinds;
pub mod mutate;
pub mod patch;
pub mod quantity;
pub mod registry;
pub mod review;
pub mod runtime_classes;
pub mod server;
