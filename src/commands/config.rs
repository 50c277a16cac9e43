//! `wasm-admission config`: prints the configuration file with every default (behaviour.md §8),
//! or one of the files generated from the configuration reference (src/core/config_reference.rs).

use std::process::ExitCode;

use clap::{ArgGroup, Args};

use crate::core::config::Config;
use crate::core::config_reference;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("form").args(["reference", "example", "chart_values"])))]
pub struct ConfigArgs {
    /// Print the configuration reference as Markdown (docs/config.md): every key, its type,
    /// default and meaning.
    #[arg(long)]
    pub reference: bool,
    /// Print the whole file with every default and each key's meaning as comments
    /// (docs/config.example.yaml).
    #[arg(long)]
    pub example: bool,
    /// Print the chart's `config:` block of values.yaml (the example, indented under `config:`).
    #[arg(long)]
    pub chart_values: bool,
}

pub fn run(args: ConfigArgs) -> ExitCode {
    if args.reference {
        print!("{}", config_reference::markdown());
    } else if args.example {
        print!("{}", config_reference::example());
    } else if args.chart_values {
        print!("config:\n{}", config_reference::annotated_yaml(2));
    } else {
        print!("{}", Config::default_yaml());
    }
    ExitCode::SUCCESS
}
