//! `wasm-admission serve`: the HTTPS door onto the engine.

use std::process::ExitCode;

use crate::cli::ServeArgs;

pub fn run(_args: ServeArgs) -> ExitCode {
    eprintln!("wasm-admission serve: not built yet");
    ExitCode::from(2)
}
