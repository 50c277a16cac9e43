//! The doors: the subcommands a user runs, each a thin layer that reads its arguments, asks
//! the adapters for facts and the core for decisions, and answers. The command line is behaviour.md
//! §7 and §9; each door's arguments live with the door.

pub mod audit;
pub mod certs;
pub mod check;
pub mod config;
pub mod policies;
pub mod serve;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wasm-admission",
    // `--version`: the version, the git commit and the target triple (build.rs), as one line:
    // wasm-admission 0.1.0 (commit 0123…cdef, target x86_64-unknown-linux-musl)
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("WASM_ADMISSION_GIT_COMMIT"),
        ", target ",
        env!("WASM_ADMISSION_TARGET"),
        ")"
    ),
    about = "Kubernetes admission webhook for WebAssembly workloads"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook.
    Serve(serve::ServeArgs),
    /// Dry-run the webhook over manifest files, for CI pipelines.
    Check(check::CheckArgs),
    /// Report what the webhook would change or deny in the objects a cluster already has.
    Audit(audit::AuditArgs),
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(certs::CertsArgs),
    /// Print the configuration file with every default, or its reference (--reference).
    Config(config::ConfigArgs),
    /// Print native admission policies (MutatingAdmissionPolicy, ValidatingAdmissionPolicy)
    /// generated from the configuration.
    Policies(policies::PoliciesArgs),
}
