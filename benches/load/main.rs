//! Load benchmark of `serve` next to two floors on the same stack, and a third server
//! that sends `serve`'s own answer as a reference.
//!
//! ```sh
//! cargo bench --bench load               # 5 s per run
//! cargo bench --bench load -- --quick    # 2 s per run
//! cargo bench --bench load -- --duration 10 --starts 20
//! cargo bench --bench load -- --rounds 3     # each run 3 times, servers interleaved; medians
//! cargo bench --bench load -- --serve-bin target/x86_64-unknown-linux-musl/release/wasm-admission
//! cargo bench --bench load -- --callgrind   # instructions per request, by part, under valgrind
//! CALLGRIND_DIR=/tmp/cg cargo bench --bench load -- --callgrind   # and keep the dumps
//! cargo bench --bench load -- --cache-sim   # and cache misses, branch mispredictions per request
//! cargo bench --bench load -- --pinned      # servers on CPU 1, the load generator on CPU 0
//! cargo bench --bench load -- --tail-budget --rounds 5   # the p99 target's CPU budget
//! ```
//!
//! In one run it starts four HTTPS servers on 127.0.0.1, each in its own process so that CPU and
//! memory can be read per server from /proc:
//! - `serve`: the release `wasm-admission` binary, with certificates from `wasm-admission certs`
//!   (ECDSA P-256) and `--log-format json`; its standard error is a pipe that this benchmark
//!   reads and drops, as a container runtime reads a container's (see [`start`]);
//! - the *transport floor*: this binary again, axum + axum-server on rustls (ring), the same
//!   certificate and the same tokio worker count (the default: one per core), reading the body and
//!   answering a fixed AdmissionReview;
//! - the *answer floor*: the transport floor answering `serve`'s own answer to the review (fetched
//!   from `serve` once at start, about 2 KB with its patch, against the transport floor's 150
//!   bytes). Not one of the required floors: it shows what sending this answer costs the server and
//!   the client, so `serve ÷ answer floor` is the cost of deciding alone;
//! - the *DOM floor*: the same, but it parses the body into a `serde_json::Value` and echoes
//!   `request.uid` in an allowed response (the simplest correct webhook).
//!
//! It drives all four with the same load from `oha` (installed by `scripts/bench-tools.sh`, or
//! `$OHA`): HTTP/1.1 keep-alive at 1, 8, 25 and 64 connections, a fixed rate at 50% of the
//! transport floor's maximum at 25 connections (latencies from the time each request was due,
//! `--latency-correction`, in steady state: the first second, while oha opens its connections,
//! is left out; see [`steady_state`]), and a new connection per request. For each
//! server and run it prints requests/s, p50, p99 and p99.9, CPU µs per request (and the kernel's
//! part of it), the server threads' involuntary context switches per request and peak RSS, the
//! ratios of `serve` to each floor, the time from spawning `serve` to `/readyz` answering 200,
//! and the targets with pass or fail.
//!
//! `--tail-budget` runs only the 25-connection runs (full speed, then the fixed rate), on the
//! transport floor twice, a lean floor that reads only `request.uid`, the transport floor plus
//! known amounts of CPU work per request, the DOM floor and `serve` (see [`tail_budget`]): how
//! much CPU per request a server may add to the transport floor's and keep the p99 target.
//!
//! Not part of the test suite: `cargo test --all-targets` runs this binary without `--bench`, and
//! it returns at once.

mod callgrind;
mod driver;
mod floors;
mod report;
mod servers;
mod tail_budget;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

use callgrind::*;
use driver::*;
use floors::*;
use report::*;
use servers::*;
use tail_budget::*;

/// The Service name in the certificate `wasm-admission certs` writes; sent as SNI and checked.
pub(crate) const HOST: &str = "wasm-admission.wasm-admission.svc";
/// Selects a floor server in a re-executed copy of this binary.
pub(crate) const FLOOR_ENV: &str = "WASM_ADMISSION_LOADBENCH_FLOOR";
pub(crate) const FLOOR_CERT_ENV: &str = "WASM_ADMISSION_LOADBENCH_CERT";
pub(crate) const FLOOR_KEY_ENV: &str = "WASM_ADMISSION_LOADBENCH_KEY";
pub(crate) const FLOOR_LISTEN_ENV: &str = "WASM_ADMISSION_LOADBENCH_LISTEN";
/// The answer floor's answer: a file with `serve`'s answer to the review.
pub(crate) const FLOOR_ANSWER_ENV: &str = "WASM_ADMISSION_LOADBENCH_ANSWER";
pub(crate) const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";
/// The transport floor's answer, whatever the request.
pub(crate) const FIXED_ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

/// The floors run on the allocator `serve` uses (src/main.rs), so the stack is the same.
#[global_allocator]
pub(crate) static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Ok(mode) = std::env::var(FLOOR_ENV) {
        floor_main(&mode);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs benches without --bench: this one is not a test.
        println!("load benchmark: not run as a test (cargo bench --bench load)");
        return;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("load benchmark: {e}");
            eprintln!(
                "usage: cargo bench --bench load -- [--quick] [--duration SECS] [--starts N] [--rounds N] [--serve-bin PATH] [--callgrind] [--cache-sim] [--pinned] [--tail-budget]"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&options) {
        eprintln!("load benchmark failed: {e}");
        std::process::exit(1);
    }
}

pub(crate) type Error = Box<dyn std::error::Error>;

pub(crate) struct Options {
    /// Another `wasm-admission` binary to measure (a musl build, an older commit).
    pub(crate) serve_bin: Option<PathBuf>,
    /// Count instructions per request under callgrind instead of the load runs.
    pub(crate) callgrind: bool,
    /// With `callgrind`: simulate the caches and branch predictors too.
    pub(crate) cache_sim: bool,
    /// The servers on CPU 1 and the load generator on CPU 0 (see [`PINNED`]).
    pub(crate) pinned: bool,
    /// Only the 25-connection runs, on floors that add known work (see [`tail_budget`]).
    pub(crate) tail_budget: bool,
    pub(crate) duration: u64,
    /// Each run this many times, servers interleaved; the median is printed.
    pub(crate) rounds: usize,
    pub(crate) starts: usize,
    pub(crate) warmup: u64,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self, Error> {
        let mut options = Options {
            serve_bin: None,
            callgrind: false,
            cache_sim: false,
            pinned: false,
            tail_budget: false,
            duration: 5,
            rounds: 1,
            starts: 10,
            warmup: 2,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--bench" => {}
                "--quick" => {
                    options.duration = 2;
                    options.warmup = 1;
                }
                "--duration" => {
                    options.duration = it.next().ok_or("--duration needs seconds")?.parse()?;
                    if !(1..=60).contains(&options.duration) {
                        return Err("--duration must be 1 to 60 seconds".into());
                    }
                }
                "--callgrind" => options.callgrind = true,
                "--pinned" => options.pinned = true,
                "--tail-budget" => options.tail_budget = true,
                "--cache-sim" => {
                    options.callgrind = true;
                    options.cache_sim = true;
                }
                "--rounds" => {
                    options.rounds = it.next().ok_or("--rounds needs a number")?.parse()?;
                    if !(1..=10).contains(&options.rounds) {
                        return Err("--rounds must be 1 to 10".into());
                    }
                }
                "--serve-bin" => {
                    options.serve_bin = Some(it.next().ok_or("--serve-bin needs a path")?.into());
                }
                "--starts" => {
                    options.starts = it.next().ok_or("--starts needs a number")?.parse()?;
                    if !(1..=100).contains(&options.starts) {
                        return Err("--starts must be 1 to 100".into());
                    }
                }
                // A filter that cargo may pass along: ignored.
                other if !other.starts_with('-') => {}
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(options)
    }
}
