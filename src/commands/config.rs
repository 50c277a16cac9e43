//! `wasm-admission config`: prints the configuration file with every default (behaviour.md §8).

use std::process::ExitCode;

use crate::core::config::Config;

pub fn run() -> ExitCode {
    print!("{}", Config::default_yaml());
    ExitCode::SUCCESS
}
