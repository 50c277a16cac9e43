//! `wasm-admission policies`: prints the native admission policies generated from the
//! configuration (behaviour.md §10). Standard output carries only the YAML; a configuration the
//! policies cannot express, or one that cannot be read, is exit code 2 with nothing printed there.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::adapters::config_file;
use crate::core::config::Config;
use crate::core::policies::{self, FailurePolicy, match_conditions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailurePolicyArg {
    Fail,
    Ignore,
}

#[derive(Debug, Clone, Args)]
pub struct PoliciesArgs {
    /// Configuration file (behaviour.md §8); the defaults without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The namespace the policies never act in besides `excludedNamespaces`, as the webhook
    /// excludes its own (the chart's release namespace). Only this flag names it: `POD_NAMESPACE`
    /// in the environment is not read (an exclusion must never come from the environment unseen).
    #[arg(long)]
    pub namespace: Option<String>,
    /// What the apiserver does when the mutating policy's expression fails. The validating policy
    /// always has `Fail`: a denial is never skipped because an expression failed.
    #[arg(long, value_enum, default_value = "fail")]
    pub failure_policy: FailurePolicyArg,
    /// The webhook runs beside the policies (the chart's mode both) and keeps what needs I/O:
    /// a configuration with registry inspection is accepted, and rule 6 stays with the webhook.
    #[arg(long)]
    pub webhook_does_io: bool,
    /// Print instead the `matchConditions` of both webhook configurations (a YAML list):
    /// the CEL that lets the apiserver skip objects no rule can make Wasm, and UPDATEs that
    /// change nothing the rules read (behaviour.md §6, "Which objects reach the webhook").
    #[arg(long, conflicts_with_all = ["failure_policy", "webhook_does_io"])]
    pub match_conditions: bool,
}

/// `--match-conditions`: the conditions on standard output, what still reaches the webhook on
/// standard error; a pattern CEL cannot read is exit code 2 with the key named.
fn print_match_conditions(config: &Config) -> ExitCode {
    match match_conditions::generate(config) {
        Ok(conditions) => {
            for line in &conditions.notes {
                eprintln!("wasm-admission policies: {line}");
            }
            print!("{}", match_conditions::to_yaml(&conditions));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasm-admission policies: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn run(args: PoliciesArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => match config_file::read(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wasm-admission policies: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Ok(env) = std::env::var("POD_NAMESPACE")
        && !env.is_empty()
        && args.namespace.is_none()
    {
        eprintln!(
            "wasm-admission policies: POD_NAMESPACE={env} is set but not used; pass --namespace {env} \
             to exclude that namespace too"
        );
    }
    if let Some(ns) = args.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        eprintln!(
            "wasm-admission policies: namespace {ns:?} (--namespace) is excluded: nothing in it is mutated or checked"
        );
    }
    let config = config.with_own_namespace(args.namespace.as_deref());
    if args.match_conditions {
        return print_match_conditions(&config);
    }
    let failure = match args.failure_policy {
        FailurePolicyArg::Fail => FailurePolicy::Fail,
        FailurePolicyArg::Ignore => FailurePolicy::Ignore,
    };
    match policies::generate(&config, failure, args.webhook_does_io) {
        Ok(objects) => {
            for line in policies::webhook_only(&config) {
                eprintln!("wasm-admission policies: left to the webhook: {line}");
            }
            print!("{}", policies::to_yaml(&objects));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasm-admission policies: {e}");
            ExitCode::from(2)
        }
    }
}
