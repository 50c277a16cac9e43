use std::process::ExitCode;

use clap::Parser;
use wasm_admission::cli::{Cli, Command};

/// mimalloc instead of the C library's allocator. A review makes a few hundred small, short-lived
/// allocations, often freed on another worker thread than the one that made them: with glibc's
/// allocator that was about a third of `serve`'s instructions per review, and musl's allocator
/// (the static container image) made a review about four times slower than glibc's
/// (README, Performance). Built with `no_thp` (Cargo.toml): where the kernel grants transparent
/// huge pages on request, mimalloc's arenas otherwise took 2 MiB pages and the peak resident
/// memory under load went from 14 to 23 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
