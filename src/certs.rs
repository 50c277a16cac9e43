//! `wasm-admission certs`: a CA and an ECDSA P-256 serving certificate for the webhook Service.

use std::process::ExitCode;

use crate::cli::CertsArgs;

pub fn run(_args: CertsArgs) -> ExitCode {
    eprintln!("wasm-admission certs: not built yet");
    ExitCode::from(2)
}
