use std::process::ExitCode;

use clap::Parser;
use wasm_admission::commands::{self, Cli, Command};

/// mimalloc: a review makes dozens of small, short-lived allocations, often freed on another
/// worker thread than the one that made them. With glibc's allocator that was about a third of
/// `serve`'s instructions per review, and musl's allocator (the static container image) made a
/// review about four times slower than glibc's (docs/performance.md). Built with `no_thp`
/// (Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Audit(args) => commands::audit::run(args),
        Command::Certs(args) => commands::certs::run(args),
        Command::Config(args) => commands::config::run(args),
        Command::Policies(args) => commands::policies::run(args),
    }
}
