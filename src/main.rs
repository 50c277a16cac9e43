use std::process::ExitCode;

use clap::Parser;
use wasm_admission::cli::{Cli, Command};

/// mimalloc (see `wasm_admission::alloc` for why, and why not through its own crate's wrapper).
#[global_allocator]
static GLOBAL: wasm_admission::alloc::Allocator = wasm_admission::alloc::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => wasm_admission::server::run(args),
        Command::Check(args) => wasm_admission::check::run(args),
        Command::Certs(args) => wasm_admission::certs::run(args),
        Command::Config => {
            print!("{}", wasm_admission::config::Config::default_yaml());
            ExitCode::SUCCESS
        }
    }
}
