//! Load benchmark of `serve` next to two floors on the same stack (issue 7), and a third server
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
//!   bytes). Not one of issue 7's floors: it shows what sending this answer costs the server and
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

/// The Service name in the certificate `wasm-admission certs` writes; sent as SNI and checked.
const HOST: &str = "wasm-admission.wasm-admission.svc";
/// Selects a floor server in a re-executed copy of this binary.
const FLOOR_ENV: &str = "WASM_ADMISSION_LOADBENCH_FLOOR";
const FLOOR_CERT_ENV: &str = "WASM_ADMISSION_LOADBENCH_CERT";
const FLOOR_KEY_ENV: &str = "WASM_ADMISSION_LOADBENCH_KEY";
const FLOOR_LISTEN_ENV: &str = "WASM_ADMISSION_LOADBENCH_LISTEN";
/// The answer floor's answer: a file with `serve`'s answer to the review.
const FLOOR_ANSWER_ENV: &str = "WASM_ADMISSION_LOADBENCH_ANSWER";
const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";
/// The transport floor's answer, whatever the request.
const FIXED_ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

/// The floors run on the allocator `serve` uses (src/main.rs), so the stack is the same.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

type Error = Box<dyn std::error::Error>;

struct Options {
    /// Another `wasm-admission` binary to measure (a musl build, an older commit).
    serve_bin: Option<PathBuf>,
    /// Count instructions per request under callgrind instead of the load runs.
    callgrind: bool,
    /// With `callgrind`: simulate the caches and branch predictors too.
    cache_sim: bool,
    /// The servers on CPU 1 and the load generator on CPU 0 (see [`PINNED`]).
    pinned: bool,
    /// Only the 25-connection runs, on floors that add known work (see [`tail_budget`]).
    tail_budget: bool,
    duration: u64,
    /// Each run this many times, servers interleaved; the median is printed.
    rounds: usize,
    starts: usize,
    warmup: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Error> {
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

// ---------------------------------------------------------------------------------------------
// The floors (in a re-executed copy of this binary)

fn floor_main(mode: &str) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let cert = var(FLOOR_CERT_ENV);
    let key = var(FLOOR_KEY_ENV);
    let listen: SocketAddr = var(FLOOR_LISTEN_ENV).parse().expect("listen address");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(&cert)
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(&key).expect("private key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let app = match mode {
        "transport" => Router::new().route("/mutate", post(transport_floor)),
        "answer" => {
            let answer = Bytes::from(std::fs::read(var(FLOOR_ANSWER_ENV)).expect("answer file"));
            Router::new().route(
                "/mutate",
                post(move |body: Bytes| answer_floor(body, answer.clone())),
            )
        }
        "dom" => Router::new().route("/mutate", post(dom_floor)),
        "lean" => Router::new().route("/mutate", post(lean_floor)),
        spin if spin.starts_with(SPIN_PREFIX) => {
            let micros: u32 = spin[SPIN_PREFIX.len()..]
                .parse()
                .expect("spin microseconds");
            let rounds = Spin::calibrate().rounds_for(micros);
            Router::new().route(
                "/mutate",
                post(move |body: Bytes| async move {
                    std::hint::black_box(Spin::run(rounds));
                    transport_floor(body).await
                }),
            )
        }
        other => panic!("unknown floor {other}"),
    }
    .route("/readyz", get(|| async { "ok\n" }));
    // The same runtime as `serve`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
        // SIGTERM ends the process normally, as it ends `serve` (so that exit handlers run, such
        // as those writing a profile under `-Cprofile-generate`).
        let handle = axum_server::Handle::new();
        let on_term = handle.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
            on_term.shutdown();
        });
        axum_server::from_tcp_rustls(listener, tls)
            .handle(handle)
            .serve(app.into_make_service())
            .await
            .expect("serve");
    });
}

/// Reads the body, answers a fixed review.
async fn transport_floor(body: Bytes) -> Response {
    std::hint::black_box(&body);
    ([(header::CONTENT_TYPE, "application/json")], FIXED_ANSWER).into_response()
}

/// Reads the body, answers `serve`'s answer to the review (fixed bytes).
async fn answer_floor(body: Bytes, answer: Bytes) -> Response {
    std::hint::black_box(&body);
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

/// Parses the body into a DOM and echoes `request.uid`, allowed.
async fn dom_floor(body: Bytes) -> Response {
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    allowed(&review["request"]["uid"])
}

/// An allowed AdmissionReview answering `uid`.
fn allowed(uid: &impl serde::Serialize) -> Response {
    let answer = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&answer).expect("serialize"),
    )
        .into_response()
}

/// The least a correct webhook does: reads `request.uid` from the review (serde_json checks and
/// skips everything else) and echoes it, allowed.
async fn lean_floor(body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        uid: std::borrow::Cow<'a, str>,
    }
    let review: Review = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    allowed(&review.request.uid)
}

/// The floor mode `spin-N`: the transport floor plus N µs of CPU work per request.
const SPIN_PREFIX: &str = "spin-";

/// A fixed amount of CPU work: a chain of dependent multiply-adds, calibrated at start so that
/// a number of rounds takes a known time on this machine when the core is free. Work, not a
/// clock: when the thread is preempted the work waits, as a server's real work would.
struct Spin {
    rounds_per_us: f64,
}

impl Spin {
    fn run(rounds: u64) -> u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..rounds {
            x = std::hint::black_box(x)
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
        x
    }

    /// The fastest of 20 timed runs of 200,000 rounds.
    fn calibrate() -> Self {
        const ROUNDS: u64 = 200_000;
        let fastest = (0..20)
            .map(|_| {
                let since = Instant::now();
                std::hint::black_box(Self::run(ROUNDS));
                since.elapsed()
            })
            .min()
            .unwrap_or(Duration::from_millis(1));
        Spin {
            rounds_per_us: ROUNDS as f64 / (fastest.as_secs_f64() * 1e6),
        }
    }

    fn rounds_for(&self, micros: u32) -> u64 {
        (self.rounds_per_us * f64::from(micros)).round() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// The driver

/// The review posted: a CREATE of a Wasm Deployment as the apiserver sends it (defaults filled in,
/// no managedFields), from tests/fixtures/deployment-wasm.json.
fn review_body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/deployment-wasm.json"
    );
    let mut object: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture");
    let metadata = object["metadata"].as_object_mut().expect("metadata");
    metadata.remove("managedFields");
    metadata.insert("generation".into(), json!(1));
    metadata["labels"]["app.kubernetes.io/instance"] = json!("shop-cart");
    metadata["labels"]["app.kubernetes.io/managed-by"] = json!("argocd");
    metadata.insert(
        "annotations".into(),
        json!({"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/cart"}),
    );
    object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "CART_STORE_URL", "value": "redis://cart-store.shop.svc:6379"},
        {"name": "LOG_LEVEL", "value": "info"}
    ]);
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "cart",
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:argocd:argocd-application-controller",
                "uid": "8d7c6b5a-1f2e-4d3c-9b8a-7f6e5d4c3b2a",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"],
                "extra": {
                    "authentication.kubernetes.io/pod-name": ["argocd-application-controller-0"],
                    "authentication.kubernetes.io/pod-uid": ["0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"]
                }
            },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "argocd-controller"}
        }
    }))
    .expect("serialize")
}

/// One server process under test.
struct Target {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Target {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Kills every child still running when dropped (also on a panic or an early error).
#[derive(Default)]
struct Reaper(Vec<Target>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for target in &mut self.0 {
            stop(&mut target.child);
        }
    }
}

/// SIGTERM, then SIGKILL after 5 s.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `--pinned`: each server runs on CPU 1 alone (so tokio starts one worker) and the load
/// generator on CPU 0, so that the client's threads, woken by each answer, no longer preempt the
/// server's. A diagnostic of how much of a server's cost comes from sharing its cores with the
/// client; the targets are measured without it.
static PINNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Under `--pinned`, runs the command on `cpu` alone.
fn pin(command: &mut Command, cpu: usize) {
    if !PINNED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    // SAFETY: sched_setaffinity is a plain system call; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The child gets SIGKILL when this process dies, so no server outlives the benchmark.
fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn free_addr() -> Result<SocketAddr, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

fn make_certs(bin: &Path) -> Result<Certs, Error> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin)
        .args(["certs", "--out-dir"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(format!("wasm-admission certs failed: {}", out.status).into());
    }
    let ca = dir.path().join("ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca)? {
        roots.add(cert?)?;
    }
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certs {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        ca,
        _dir: dir,
        client: Arc::new(client),
    })
}

fn serve_command(bin: &Path, certs: &Certs, addr: SocketAddr) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--tls-cert-file")
        .arg(&certs.cert)
        .arg("--tls-private-key-file")
        .arg(&certs.key)
        .args(["--log-format", "json", "--namespace", "wasm-admission"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    clean_env(&mut command);
    die_with_parent(&mut command);
    pin(&mut command, 1);
    command
}

fn floor_command(mode: &str, certs: &Certs, addr: SocketAddr) -> Result<Command, Error> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(FLOOR_ENV, mode)
        .env(FLOOR_CERT_ENV, &certs.cert)
        .env(FLOOR_KEY_ENV, &certs.key)
        .env(FLOOR_LISTEN_ENV, addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    clean_env(&mut command);
    die_with_parent(&mut command);
    pin(&mut command, 1);
    Ok(command)
}

/// Nothing from the caller's environment changes the servers: no log filter, worker count or
/// `serve` flag.
fn clean_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str == "RUST_LOG"
            || name_str == "TOKIO_WORKER_THREADS"
            || name_str.starts_with("WASM_ADMISSION_")
        {
            command.env_remove(&name);
        }
    }
}

/// A minimal blocking HTTPS/1.1 client (one request per connection), for readiness and for
/// checking each server's answer before the load.
fn https(
    client: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from(HOST).expect("server name");
    let conn =
        rustls::ClientConnection::new(client.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes())?;
    tls.write_all(body)?;
    tls.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if let Some(length) = length
                && buf.len() >= end + 4 + length
            {
                return Ok((status, buf[end + 4..end + 4 + length].to_vec()));
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Polls `/readyz` until it answers 200; returns the time since `since`.
fn wait_ready(
    client: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    child: &mut Child,
    since: Instant,
) -> Result<Duration, Error> {
    loop {
        if let Ok((200, _)) = https(client, addr, "GET", "/readyz", b"") {
            return Ok(since.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("server on {addr} exited before it was ready: {status}").into());
        }
        if since.elapsed() > Duration::from_secs(20) {
            return Err(format!("server on {addr} not ready after 20 s").into());
        }
        std::thread::sleep(Duration::from_micros(250));
    }
}

fn start(
    name: &'static str,
    mut command: Command,
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
) -> Result<(Target, Duration), Error> {
    let since = Instant::now();
    let mut child = command.spawn()?;
    // serve's log: read and dropped, as a container runtime reads a container's standard error.
    if let Some(mut log) = child.stderr.take() {
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    }
    match wait_ready(client, addr, &mut child, since) {
        Ok(ready) => Ok((Target { name, child, addr }, ready)),
        Err(e) => {
            stop(&mut child);
            Err(e)
        }
    }
}

/// CPU time of a process in microseconds: user and kernel (`utime`, `stime`); and how often its
/// threads were switched out while they could still run.
struct Cpu {
    user: f64,
    kernel: f64,
    preempted: f64,
}

fn cpu_us(pid: u32) -> Result<Cpu, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').ok_or("bad /proc stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields[11].parse()?;
    let stime: f64 = fields[12].parse()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(Cpu {
        user: utime * 1e6 / ticks,
        kernel: stime * 1e6 / ticks,
        preempted: preemptions(pid)? as f64,
    })
}

/// The involuntary context switches of all of a process's threads (`nonvoluntary_ctxt_switches`
/// in `/proc/PID/task/TID/status`): each is a thread that could have gone on running being
/// switched out, here mostly for a load generator thread its answer has just woken.
fn preemptions(pid: u32) -> Result<u64, Error> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM".into())
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so each run reports its own peak.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

#[derive(Clone, Copy)]
struct Load {
    connections: usize,
    rate: Option<f64>,
    keep_alive: bool,
    /// How long the measured part of the run lasts.
    seconds: u64,
    /// A fixed number of requests instead of `seconds` (the callgrind profile).
    count: Option<u64>,
}

/// The first seconds of a fixed-rate run, while oha opens its connections; sent but not counted
/// in its latencies (see [`steady_state`]).
const RATE_SETTLE_SECS: u64 = 1;

impl Load {
    /// oha's `-z`: a fixed-rate run lasts [`RATE_SETTLE_SECS`] longer than its measured part.
    fn oha_seconds(&self) -> u64 {
        match self.rate {
            Some(_) => self.seconds + RATE_SETTLE_SECS,
            None => self.seconds,
        }
    }
}

/// What one run measured on one server.
#[derive(Clone, Default)]
struct Figures {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    cpu_us_per_req: f64,
    /// The kernel's part of `cpu_us_per_req` (system time: TCP, syscalls, wake-ups).
    kernel_us_per_req: f64,
    /// Involuntary context switches of the server's threads per request.
    preempted_per_req: f64,
    peak_rss_kib: u64,
    failures: u64,
    failure_detail: String,
}

struct Driver {
    oha: PathBuf,
    body_path: PathBuf,
    ca: PathBuf,
}

impl Driver {
    /// Runs oha against `target`: a JSON summary, or for a fixed rate one CSV line per answered
    /// request (see [`steady_state`]).
    fn oha(&self, target: &Target, load: Load) -> Result<String, Error> {
        let port = target.addr.port();
        let mut command = Command::new(&self.oha);
        command
            .arg(format!("https://{HOST}:{port}/mutate?timeout=10s"))
            .arg("--connect-to")
            .arg(format!("{HOST}:{port}:127.0.0.1:{port}"))
            .arg("--cacert")
            .arg(&self.ca)
            .args(["--http-version", "1.1", "-m", "POST"])
            .args(["-H", "Content-Type: application/json"])
            .arg("-D")
            .arg(&self.body_path)
            .args(["-c", &load.connections.to_string()])
            .args(["--no-tui", "--output-format"])
            .arg(if load.rate.is_some() { "csv" } else { "json" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match load.count {
            Some(n) => command.args(["-n", &n.to_string()]),
            None => command.args(["-z", &format!("{}s", load.oha_seconds())]),
        };
        if let Some(rate) = load.rate {
            command
                .args(["-q", &format!("{rate:.0}")])
                .arg("--latency-correction");
        }
        if !load.keep_alive {
            command.arg("--disable-keepalive");
        }
        command.env_remove("TOKIO_WORKER_THREADS");
        die_with_parent(&mut command);
        pin(&mut command, 0);
        let mut child = command.spawn()?;
        // Bounded: oha stops itself after -z; it is killed if it has not 30 s later.
        let deadline = Instant::now()
            + Duration::from_secs(if load.count.is_some() {
                300
            } else {
                load.oha_seconds() + 30
            });
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        });
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("oha did not stop in time".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = reader.join().expect("reader");
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("oha failed ({status}): {err}").into());
        }
        Ok(out)
    }

    fn measure(&self, target: &Target, load: Load) -> Result<Figures, Error> {
        let pid = target.pid();
        reset_peak_rss(pid);
        let cpu_before = cpu_us(pid)?;
        let out = self.oha(target, load)?;
        let cpu_after = cpu_us(pid)?;
        let peak = peak_rss_kib(pid)?;
        let answered = match load.rate {
            Some(_) => steady_state(&out, load.seconds)?,
            None => summary(&out, load.seconds)?,
        };
        let per_request = |us: f64| {
            if answered.ok_in_run > 0 {
                us / answered.ok_in_run as f64
            } else {
                f64::NAN
            }
        };
        Ok(Figures {
            requests: answered.ok_in_run,
            rps: answered.rps,
            p50_us: answered.p50_us,
            p99_us: answered.p99_us,
            p999_us: answered.p999_us,
            cpu_us_per_req: per_request(
                cpu_after.user + cpu_after.kernel - cpu_before.user - cpu_before.kernel,
            ),
            kernel_us_per_req: per_request(cpu_after.kernel - cpu_before.kernel),
            preempted_per_req: per_request(cpu_after.preempted - cpu_before.preempted),
            peak_rss_kib: peak,
            failures: answered.failures,
            failure_detail: answered.failure_detail,
        })
    }
}

/// What oha reported for one run.
struct Answered {
    /// Requests answered 200 in the whole run (what the server's CPU time is divided by).
    ok_in_run: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    failures: u64,
    failure_detail: String,
}

/// oha's JSON summary of a run at full speed.
fn summary(out: &str, seconds: u64) -> Result<Answered, Error> {
    let report: Value = serde_json::from_str(out)?;
    let ok = report["statusCodeDistribution"]["200"]
        .as_u64()
        .unwrap_or(0);
    let mut failures = 0;
    let mut detail = Vec::new();
    if let Some(codes) = report["statusCodeDistribution"].as_object() {
        for (code, n) in codes {
            if code != "200" {
                let n = n.as_u64().unwrap_or(0);
                failures += n;
                detail.push(format!("HTTP {code}: {n}"));
            }
        }
    }
    if let Some(errors) = report["errorDistribution"].as_object() {
        for (error, n) in errors {
            // Requests cut off by -z at the end of the run are not failures.
            if error.contains("deadline") {
                continue;
            }
            let n = n.as_u64().unwrap_or(0);
            failures += n;
            detail.push(format!("{error}: {n}"));
        }
    }
    let elapsed = report["summary"]["total"]
        .as_f64()
        .filter(|t| *t > 0.0)
        .unwrap_or(seconds as f64);
    let pct = |key: &str| {
        report["latencyPercentiles"][key]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1e6
    };
    Ok(Answered {
        ok_in_run: ok,
        rps: ok as f64 / elapsed,
        p50_us: pct("p50"),
        p99_us: pct("p99"),
        p999_us: pct("p99.9"),
        failures,
        failure_detail: detail.join("; "),
    })
}

/// A fixed-rate run in steady state: oha's CSV (one line per answered request, sorted by start:
/// `request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status`, times in
/// seconds) with the requests sent in the first [`RATE_SETTLE_SECS`] left out.
///
/// Why: oha's rate clock starts before its connections exist, and the first request on each
/// connection takes 50 to 100 ms inside oha (measured with one connection and curl: the server
/// answers a new connection's first request in about 3 ms). Under `--latency-correction` the
/// requests queued meanwhile carry that wait, and they drain over the next 200 to 300 ms; at
/// 50% load that is 1 to 2% of a 5 s run, so the whole-run p99 measured oha's start, and was
/// 20 to 70 ms for every server alike. Requests later in the run keep their correction: a server
/// that falls behind still shows the queueing it caused. The CSV lists answered requests only, so
/// connection errors are not counted as failures here; they show as req/s below the rate.
fn steady_state(out: &str, seconds: u64) -> Result<Answered, Error> {
    let mut ok_in_run = 0u64;
    let mut failures = 0u64;
    let mut statuses: Vec<(String, u64)> = Vec::new();
    let mut latencies: Vec<f64> = Vec::new();
    for line in out.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [start, _, _, _, duration, _, status] = fields[..] else {
            return Err(format!("oha CSV line with {} fields: {line}", fields.len()).into());
        };
        let start: f64 = start.parse()?;
        let duration: f64 = duration.parse()?;
        if status != "200" {
            failures += 1;
            match statuses.iter_mut().find(|(s, _)| s == status) {
                Some((_, n)) => *n += 1,
                None => statuses.push((status.to_string(), 1)),
            }
            continue;
        }
        ok_in_run += 1;
        if start >= RATE_SETTLE_SECS as f64 {
            latencies.push(duration);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1] * 1e6
    };
    Ok(Answered {
        ok_in_run,
        rps: latencies.len() as f64 / seconds as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        failures,
        failure_detail: statuses
            .iter()
            .map(|(s, n)| format!("HTTP {s}: {n}"))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn oha_path() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("OHA") {
        return Ok(PathBuf::from(path));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-tools.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("{script} failed: {}", out.status).into());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The time from spawning `serve` to `/readyz` answering 200, `n` times.
fn startup_times(bin: &Path, certs: &Certs, n: usize) -> Result<Vec<f64>, Error> {
    let mut times = Vec::new();
    for _ in 0..n {
        let addr = free_addr()?;
        let (mut target, ready) = start(
            "serve",
            serve_command(bin, certs, addr),
            addr,
            &certs.client,
        )?;
        stop(&mut target.child);
        times.push(ready.as_secs_f64() * 1e3);
    }
    Ok(times)
}

fn check_answer(
    target: &Target,
    client: &Arc<rustls::ClientConfig>,
    body: &[u8],
) -> Result<Vec<u8>, Error> {
    let (status, answer) = https(client, target.addr, "POST", "/mutate?timeout=10s", body)?;
    let value: Value = serde_json::from_slice(&answer)?;
    if status != 200 || value["response"]["uid"] != UID || value["response"]["allowed"] != true {
        return Err(format!(
            "{} answered {status}: {}",
            target.name,
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    if target.name == "serve" && value["response"]["patch"].as_str().is_none() {
        return Err(format!("serve answered no patch: {value}").into());
    }
    Ok(answer)
}

/// The servers, in the order they are measured and printed; the indexes below name them.
const NAMES: [&str; 4] = ["transport floor", "answer floor", "DOM floor", "serve"];
const TRANSPORT: usize = 0;
const ANSWER: usize = 1;
const DOM: usize = 2;
const SERVE: usize = 3;

fn run(options: &Options) -> Result<(), Error> {
    let bin = options
        .serve_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wasm-admission")));
    let oha = oha_path()?;
    let oha_version = Command::new(&oha).arg("--version").output()?;
    let certs = make_certs(&bin)?;
    let body = review_body();
    let body_path = certs._dir.path().join("review.json");
    std::fs::write(&body_path, &body)?;

    if options.callgrind {
        return callgrind(&bin, &oha, &certs, &body_path, options.cache_sim);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("== wasm-admission load benchmark");
    println!(
        "serve: {} (tokio workers: default, one per core; {cores} cores)",
        bin.display(),
    );
    if options.pinned {
        if cores < 2 {
            return Err("--pinned needs two CPUs".into());
        }
        PINNED.store(true, std::sync::atomic::Ordering::Relaxed);
        println!(
            "--pinned: every server on CPU 1 alone (one tokio worker each), oha on CPU 0; a diagnostic, the targets are measured without it"
        );
    }
    println!(
        "load: {} over HTTP/1.1 + TLS (rustls, ECDSA P-256 certificate from `wasm-admission certs`), {} s per run, {} round(s), servers interleaved (medians printed)",
        String::from_utf8_lossy(&oha_version.stdout).trim(),
        options.duration,
        options.rounds
    );
    println!(
        "body: AdmissionReview CREATE of a Wasm Deployment, {} bytes (POST /mutate?timeout=10s)",
        body.len()
    );
    println!("load average before: {}", loadavg());
    if options.tail_budget {
        return tail_budget(options, &bin, &certs, &body, oha, body_path);
    }

    // Start to ready.
    let mut starts = startup_times(&bin, &certs, options.starts)?;
    let start_median = median(&mut starts);
    println!(
        "\nstart to ready (spawn `serve` until GET /readyz answers 200), {} starts: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        starts.len(),
        start_median,
        starts[0],
        starts[starts.len() - 1]
    );

    // The four servers, each in its own process; `serve` first, as the answer floor answers
    // what it answers.
    let answer_path = certs._dir.path().join("answer.json");
    let mut started = Vec::new();
    for i in [SERVE, TRANSPORT, ANSWER, DOM] {
        let name = NAMES[i];
        let addr = free_addr()?;
        let command = match i {
            TRANSPORT => floor_command("transport", &certs, addr)?,
            ANSWER => {
                let mut command = floor_command("answer", &certs, addr)?;
                command.env(FLOOR_ANSWER_ENV, &answer_path);
                command
            }
            DOM => floor_command("dom", &certs, addr)?,
            _ => serve_command(&bin, &certs, addr),
        };
        let (target, _) = start(name, command, addr, &certs.client)?;
        let answer = check_answer(&target, &certs.client, &body)?;
        if i == SERVE {
            std::fs::write(&answer_path, &answer)?;
        }
        println!(
            "{name}: pid {}, answer {} bytes",
            target.pid(),
            answer.len()
        );
        started.push((i, target));
    }
    started.sort_by_key(|(i, _)| *i);
    let mut reaper = Reaper::default();
    reaper.0 = started.into_iter().map(|(_, target)| target).collect();
    let driver = Driver {
        oha,
        body_path,
        ca: certs.ca.clone(),
    };

    warm_up(&driver, &reaper.0, options.warmup)?;

    let seconds = options.duration;
    let mut runs: Vec<(String, Vec<Figures>)> = Vec::new();
    let mut measure_all = |label: String, load: Load| -> Result<Vec<Figures>, Error> {
        eprintln!("-- {label}");
        let figures = measure_rounds(&driver, &reaper.0, load, options.rounds)?;
        runs.push((label, figures.clone()));
        Ok(figures)
    };
    let mut at_25 = Vec::new();
    for connections in [1, 8, 25, 64] {
        let figures = measure_all(
            format!("keep-alive, {connections} conn"),
            Load {
                connections,
                rate: None,
                keep_alive: true,
                seconds,
                count: None,
            },
        )?;
        if connections == 25 {
            at_25 = figures;
        }
    }
    let rate = (at_25[TRANSPORT].rps * 0.5).max(1.0);
    let at_rate = measure_all(
        format!("fixed {rate:.0} req/s, 25 conn, after {RATE_SETTLE_SECS} s"),
        Load {
            connections: 25,
            rate: Some(rate),
            keep_alive: true,
            seconds,
            count: None,
        },
    )?;
    let new_conn = measure_all(
        "new conn per request, 25 conn".to_string(),
        Load {
            connections: 25,
            rate: None,
            keep_alive: false,
            seconds,
            count: None,
        },
    )?;
    let rss_kib: Vec<u64> = reaper
        .0
        .iter()
        .map(|t| peak_rss_kib(t.pid()).unwrap_or(0))
        .collect();
    drop(reaper);

    print_table(&runs);
    let peaks: Vec<String> = NAMES
        .iter()
        .zip(&rss_kib)
        .map(|(name, kib)| format!("{name} {:.1} MiB", *kib as f64 / 1024.0))
        .collect();
    println!(
        "\nlifetime peak RSS (VmHWM at the end): {}",
        peaks.join(", ")
    );
    let failed: u64 = runs.iter().flat_map(|(_, f)| f).map(|f| f.failures).sum();
    let answered: u64 = runs.iter().flat_map(|(_, f)| f).map(|f| f.requests).sum();
    println!(
        "requests answered 200: {answered}; failed (another status, or an error; requests cut off by the end of a run excluded): {failed}"
    );

    // Targets.
    let serve_peak_mib = runs
        .iter()
        .map(|(_, f)| f[SERVE].peak_rss_kib)
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let targets = [
        Goal {
            what: "throughput, 25 keep-alive conn, vs transport floor",
            measured: at_25[SERVE].rps / at_25[TRANSPORT].rps,
            limit: 0.6,
            at_least: true,
            unit: "×",
        },
        Goal {
            what: "p99 at 50% of transport max rate, vs transport floor's",
            measured: at_rate[SERVE].p99_us / at_rate[TRANSPORT].p99_us,
            limit: 1.2,
            at_least: false,
            unit: "×",
        },
        Goal {
            what: "peak RSS of serve under load (MiB)",
            measured: serve_peak_mib,
            limit: 20.0,
            at_least: false,
            unit: " MiB",
        },
        Goal {
            what: "start to ready, median (ms)",
            measured: start_median,
            limit: 50.0,
            at_least: false,
            unit: " ms",
        },
        Goal {
            what: "new-connection throughput vs transport floor",
            measured: new_conn[SERVE].rps / new_conn[TRANSPORT].rps,
            limit: 0.9,
            at_least: true,
            unit: "×",
        },
    ];
    println!("\n| target | measured | limit | result |");
    println!("| --- | ---: | ---: | --- |");
    let mut all = true;
    for t in &targets {
        let pass = if t.at_least {
            t.measured >= t.limit
        } else {
            t.measured <= t.limit
        };
        all &= pass;
        println!(
            "| {} | {:.3}{} | {} {}{} | {}, {:.2}× the {} |",
            t.what,
            t.measured,
            t.unit,
            if t.at_least { "≥" } else { "≤" },
            t.limit,
            t.unit,
            if pass { "pass" } else { "FAIL" },
            t.measured / t.limit,
            if t.at_least { "minimum" } else { "maximum" },
        );
    }
    println!(
        "\nnot a target: serve ÷ answer floor at 25 keep-alive conn (the same bytes on the wire, so the cost of deciding): {:.2}× the throughput, {:.2}× the CPU per request",
        at_25[SERVE].rps / at_25[ANSWER].rps,
        at_25[SERVE].cpu_us_per_req / at_25[ANSWER].cpu_us_per_req
    );
    // Tail latency at a fixed rate depends most on how close the rate is to the server's own
    // maximum (on 2 shared cores, with oha sending in bursts each millisecond).
    let shares: Vec<String> = NAMES
        .iter()
        .zip(&at_25)
        .map(|(name, f)| {
            let article = if *name == "serve" { "" } else { "the " };
            format!("{:.0}% of {article}{name}'s", 100.0 * rate / f.rps)
        })
        .collect();
    println!(
        "not a target: the fixed rate ({rate:.0} req/s) is {} maximum at 25 keep-alive conn",
        shares.join(", ")
    );
    println!(
        "\n{}; load average after: {}",
        if all {
            "every target met"
        } else {
            "some targets missed"
        },
        loadavg()
    );
    Ok(())
}

/// The servers of `--tail-budget`: a name and a floor mode (`None`: `serve`). The transport floor
/// twice, so that the spread between two identical servers shows; the lean floor; the transport
/// floor plus a known amount of CPU work per request; the DOM floor and `serve`.
const BUDGET_SERVERS: [(&str, Option<&str>); 10] = [
    ("transport floor", Some("transport")),
    ("transport floor, second copy", Some("transport")),
    ("lean floor (reads request.uid)", Some("lean")),
    ("transport floor + 2 µs", Some("spin-2")),
    ("transport floor + 3 µs", Some("spin-3")),
    ("transport floor + 4 µs", Some("spin-4")),
    ("transport floor + 6 µs", Some("spin-6")),
    ("transport floor + 8 µs", Some("spin-8")),
    ("DOM floor", Some("dom")),
    ("serve", None),
];

/// `--tail-budget`: how much CPU a server may add per request to the transport floor's and keep
/// issue 7's p99 target (at the fixed rate of half the transport floor's maximum, p99 ≤ 1.2 × the
/// transport floor's). Each server of [`BUDGET_SERVERS`] is measured at full speed at 25
/// keep-alive connections (its maximum and its CPU per request), then at that fixed rate (steady
/// state, as in the main run). The ratio of the two transport floors is the noise of the ratio
/// itself; the lean floor is the least any correct webhook does.
fn tail_budget(
    options: &Options,
    bin: &Path,
    certs: &Certs,
    body: &[u8],
    oha: PathBuf,
    body_path: PathBuf,
) -> Result<(), Error> {
    let mut reaper = Reaper::default();
    for (name, mode) in BUDGET_SERVERS {
        let addr = free_addr()?;
        let command = match mode {
            Some(mode) => floor_command(mode, certs, addr)?,
            None => serve_command(bin, certs, addr),
        };
        let (target, _) = start(name, command, addr, &certs.client)?;
        check_answer(&target, &certs.client, body)?;
        reaper.0.push(target);
    }
    let driver = Driver {
        oha,
        body_path,
        ca: certs.ca.clone(),
    };
    warm_up(&driver, &reaper.0, options.warmup)?;
    let full = |rate| Load {
        connections: 25,
        rate,
        keep_alive: true,
        seconds: options.duration,
        count: None,
    };
    eprintln!("-- keep-alive, 25 conn");
    let at_max = measure_rounds(&driver, &reaper.0, full(None), options.rounds)?;
    let rate = (at_max[0].rps * 0.5).max(1.0);
    eprintln!("-- fixed {rate:.0} req/s, 25 conn");
    let at_rate = measure_rounds(&driver, &reaper.0, full(Some(rate)), options.rounds)?;
    drop(reaper);

    let base = &at_rate[0];
    println!(
        "\nfixed rate {rate:.0} req/s (half the transport floor's maximum), 25 keep-alive conn, steady state after {RATE_SETTLE_SECS} s; medians of {} round(s)",
        options.rounds
    );
    println!(
        "\n| server | max req/s | CPU µs/req at max | rate ÷ its max | CPU µs/req at rate | extra CPU µs/req | p50 µs | p99 µs | p99 ÷ transport floor's | p99 target (≤ 1.2×) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (((name, _), max), at) in BUDGET_SERVERS.iter().zip(&at_max).zip(&at_rate) {
        let ratio = at.p99_us / base.p99_us;
        println!(
            "| {name} | {:.0} | {:.1} | {:.0}% | {:.1} | {:+.1} | {:.0} | {:.0} | {ratio:.2}× | {} |",
            max.rps,
            max.cpu_us_per_req,
            100.0 * rate / max.rps,
            at.cpu_us_per_req,
            at.cpu_us_per_req - base.cpu_us_per_req,
            at.p50_us,
            at.p99_us,
            if ratio <= 1.2 { "met" } else { "missed" },
        );
    }
    let failed: u64 = at_max.iter().chain(&at_rate).map(|f| f.failures).sum();
    println!(
        "\nfailed requests: {failed}; load average after: {}",
        loadavg()
    );
    Ok(())
}

/// Warm-up: connections, allocator, page cache; not counted.
fn warm_up(driver: &Driver, targets: &[Target], seconds: u64) -> Result<(), Error> {
    for target in targets {
        driver.measure(
            target,
            Load {
                connections: 25,
                rate: None,
                keep_alive: true,
                seconds,
                count: None,
            },
        )?;
    }
    Ok(())
}

/// Every server under `load`, `rounds` times; the median figures of each. The rounds interleave
/// the servers, so a burst of other work on the machine hits all of them.
fn measure_rounds(
    driver: &Driver,
    targets: &[Target],
    load: Load,
    rounds: usize,
) -> Result<Vec<Figures>, Error> {
    let mut each: Vec<Vec<Figures>> = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for (target, figures) in targets.iter().zip(&mut each) {
            let f = driver.measure(target, load)?;
            if f.failures > 0 {
                eprintln!(
                    "   {}: {} failed requests: {}",
                    target.name, f.failures, f.failure_detail
                );
            }
            figures.push(f);
        }
    }
    Ok(each.iter().map(|f| median_figures(f)).collect())
}

/// The median of each figure over the rounds (requests and failures: the sums).
fn median_figures(rounds: &[Figures]) -> Figures {
    let mid = |get: &dyn Fn(&Figures) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(get).collect();
        median(&mut v)
    };
    Figures {
        requests: rounds.iter().map(|f| f.requests).sum(),
        rps: mid(&|f| f.rps),
        p50_us: mid(&|f| f.p50_us),
        p99_us: mid(&|f| f.p99_us),
        p999_us: mid(&|f| f.p999_us),
        cpu_us_per_req: mid(&|f| f.cpu_us_per_req),
        kernel_us_per_req: mid(&|f| f.kernel_us_per_req),
        preempted_per_req: mid(&|f| f.preempted_per_req),
        peak_rss_kib: rounds.iter().map(|f| f.peak_rss_kib).max().unwrap_or(0),
        failures: rounds.iter().map(|f| f.failures).sum(),
        failure_detail: rounds
            .iter()
            .map(|f| f.failure_detail.as_str())
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

struct Goal {
    what: &'static str,
    measured: f64,
    limit: f64,
    at_least: bool,
    unit: &'static str,
}

fn print_table(runs: &[(String, Vec<Figures>)]) {
    println!(
        "\n| run | server | req/s | p50 µs | p99 µs | p99.9 µs | CPU µs/req | of which kernel | preempted/req | peak RSS MiB |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, figures) in runs {
        for (name, f) in NAMES.iter().zip(figures) {
            println!(
                "| {label} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.1} |",
                f.rps,
                f.p50_us,
                f.p99_us,
                f.p999_us,
                f.cpu_us_per_req,
                f.kernel_us_per_req,
                f.preempted_per_req,
                f.peak_rss_kib as f64 / 1024.0
            );
        }
        let serve = &figures[SERVE];
        for (i, floor) in [(TRANSPORT, "transport"), (ANSWER, "answer"), (DOM, "DOM")] {
            let fl = &figures[i];
            println!(
                "| {label} | serve ÷ {floor} | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
                serve.rps / fl.rps,
                serve.p50_us / fl.p50_us,
                serve.p99_us / fl.p99_us,
                serve.p999_us / fl.p999_us,
                serve.cpu_us_per_req / fl.cpu_us_per_req,
                serve.kernel_us_per_req / fl.kernel_us_per_req,
                serve.preempted_per_req / fl.preempted_per_req,
                serve.peak_rss_kib as f64 / fl.peak_rss_kib as f64
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// --callgrind: where the instructions of one request go

/// The rows of the profile: a label and what to look for in callgrind_annotate's inclusive list
/// (`HANDLER` is the request handler of each server; `MALLOC` sums the global allocator's alloc, dealloc and realloc).
const PARTS: [(&str, &str); 10] = [
    ("whole process", "PROGRAM TOTALS"),
    ("axum handler: body read and answer", "HANDLER"),
    ("review decode", "wasm_admission::core::review::decode ["),
    (
        "engine and response (review::answer)",
        "wasm_admission::core::review::answer [",
    ),
    (
        "the JSON log line",
        "tracing_core::event::Event::dispatch [",
    ),
    (
        "metrics",
        "wasm_admission::commands::serve::metrics::Metrics::review [",
    ),
    (
        "HTTP/1.1 request head parse",
        "as hyper::proto::h1::Http1Transaction>::parse [",
    ),
    (
        "TLS decrypt of the request",
        "Tls13MessageDecrypter as rustls::crypto::cipher::MessageDecrypter>::decrypt [",
    ),
    (
        "TLS encrypt and write of the response",
        "hyper::proto::h1::io::Buffered<T,B>::poll_flush [",
    ),
    ("allocator: alloc, dealloc, realloc (everywhere)", "MALLOC"),
];

/// Starts `inner` under `valgrind --tool=callgrind`, with the cache and branch simulation when
/// `cache_sim`.
fn under_callgrind(inner: &Command, out: &Path, cache_sim: bool) -> Command {
    let mut command = Command::new("valgrind");
    command.arg("--tool=callgrind");
    if cache_sim {
        command.args(["--cache-sim=yes", "--branch-sim=yes"]);
    }
    command
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    die_with_parent(&mut command);
    command
}

fn callgrind(
    bin: &Path,
    oha: &Path,
    certs: &Certs,
    body_path: &Path,
    cache_sim: bool,
) -> Result<(), Error> {
    const WARM: u64 = 200;
    const MEASURED: u64 = 2000;
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Err("valgrind not found (apt-get install valgrind)".into());
    }
    println!(
        "== instructions per request under callgrind: {MEASURED} requests on one keep-alive connection after {WARM} not counted"
    );
    let driver = Driver {
        oha: oha.to_path_buf(),
        body_path: body_path.to_path_buf(),
        ca: certs.ca.clone(),
    };
    // `CALLGRIND_DIR=/some/dir` keeps the dumps there (for `callgrind_annotate`); else they go
    // with the run's temporary folder.
    let kept = std::env::var_os("CALLGRIND_DIR").map(PathBuf::from);
    let dir = kept.as_deref().unwrap_or(certs._dir.path());
    let mut columns = Vec::new();
    let mut simulated = Vec::new();
    // The answer floor differs from the transport floor only in the bytes it encrypts and sends.
    for name in [NAMES[TRANSPORT], NAMES[DOM], NAMES[SERVE]] {
        let addr = free_addr()?;
        let inner = match name {
            "transport floor" => floor_command("transport", certs, addr)?,
            "DOM floor" => floor_command("dom", certs, addr)?,
            _ => serve_command(bin, certs, addr),
        };
        let out = dir.join(format!("callgrind.{}", name.replace(' ', "-")));
        let (mut target, _) = start(
            name,
            under_callgrind(&inner, &out, cache_sim),
            addr,
            &certs.client,
        )?;
        let load = |count| Load {
            connections: 1,
            rate: None,
            keep_alive: true,
            seconds: 0,
            count: Some(count),
        };
        driver.oha(&target, load(WARM))?;
        let control = |what: &str| -> Result<(), Error> {
            let status = Command::new("callgrind_control")
                .arg(what)
                .arg(target.pid().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("callgrind_control {what} failed").into())
            }
        };
        control("-z")?;
        let report = driver.oha(&target, load(MEASURED))?;
        control("-d")?;
        stop(&mut target.child);
        let ok = summary(&report, 0)?.ok_in_run;
        if ok != MEASURED {
            return Err(format!("{name}: {ok} of {MEASURED} requests answered 200").into());
        }
        let dump = PathBuf::from(format!("{}.1", out.display()));
        let annotate = Command::new("callgrind_annotate")
            .args(["--inclusive=yes", "--threshold=100", "--show=Ir"])
            .arg(&dump)
            .output()?;
        let text = String::from_utf8_lossy(&annotate.stdout);
        if cache_sim {
            let totals = Command::new("callgrind_annotate").arg(&dump).output()?;
            simulated.push(simulated_totals(
                &String::from_utf8_lossy(&totals.stdout),
                MEASURED,
            )?);
        }
        // "  1,234,567 ( 1.23%)  ???:symbol [object]" -> (1234567, "???:symbol [object]")
        let costs: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|line| {
                let (count, rest) = line.trim_start().split_once(' ')?;
                let count = count.replace(',', "").parse().ok()?;
                Some((count, rest.split_once(')')?.1.trim()))
            })
            .collect();
        let first = |hit: &dyn Fn(&str) -> bool| {
            costs
                .iter()
                .find(|(_, symbol)| hit(symbol))
                .map_or(0, |(c, _)| *c)
        };
        let sums: Vec<u64> = PARTS
            .iter()
            .map(|(_, needle)| {
                let total = match *needle {
                    "PROGRAM TOTALS" => first(&|s| s == "PROGRAM TOTALS"),
                    "HANDLER" => first(&|s| {
                        s.contains("as axum::handler::Handler<")
                            && s.contains(">::call::{{closure}} [")
                    }),
                    // The global allocator's entry points, whichever allocator is behind them.
                    "MALLOC" => ["alloc", "dealloc", "realloc"]
                        .iter()
                        .map(|f| first(&|s| s.starts_with(&format!("???:__rustc::__rust_{f} ["))))
                        .sum(),
                    // Recursive entries (`name'2`) are counted in their outermost one.
                    n => first(&|s| s.contains(n) && !s.contains('\'')),
                };
                total / MEASURED
            })
            .collect();
        columns.push(sums);
    }
    println!("\n| part (inclusive) | transport floor | DOM floor | serve |");
    println!("| --- | ---: | ---: | ---: |");
    for (i, (part, _)) in PARTS.iter().enumerate() {
        let cell = |c: &Vec<u64>| {
            if c[i] == 0 {
                "-".to_string()
            } else {
                c[i].to_string()
            }
        };
        println!(
            "| {} | {} | {} | {} |",
            part,
            cell(&columns[0]),
            cell(&columns[1]),
            cell(&columns[2])
        );
    }
    let serve = &columns[2];
    println!(
        "\nserve outside the review's decode, engine and response: {} instructions per request ({} in the transport floor, all told)",
        serve[0].saturating_sub(serve[2] + serve[3]),
        columns[0][0]
    );
    println!(
        "(\"-\": not on that server's path, or inlined by the release profile's LTO; for every row, run with CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16)"
    );
    if cache_sim {
        println!(
            "\n== per request, callgrind's simulated caches and branch predictors (whole process)\n"
        );
        println!("| event | transport floor | DOM floor | serve |");
        println!("| --- | ---: | ---: | ---: |");
        for (i, (label, _)) in SIMULATED.iter().enumerate() {
            let cells: Vec<String> = simulated.iter().map(|s| s[i].to_string()).collect();
            println!("| {label} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}

/// The simulated events shown, each a sum of callgrind event names.
const SIMULATED: [(&str, &[&str]); 5] = [
    ("instructions", &["Ir"]),
    ("L1 instruction-cache misses", &["I1mr"]),
    ("L1 data-cache misses (read and write)", &["D1mr", "D1mw"]),
    ("conditional branches mispredicted", &["Bcm"]),
    ("indirect branches mispredicted", &["Bim"]),
];

/// The [`SIMULATED`] events per request, from callgrind_annotate's `Events shown:` header and
/// `PROGRAM TOTALS` line.
fn simulated_totals(annotate: &str, requests: u64) -> Result<Vec<u64>, Error> {
    let names: Vec<&str> = annotate
        .lines()
        .find_map(|l| l.strip_prefix("Events shown:"))
        .ok_or("callgrind_annotate printed no events")?
        .split_whitespace()
        .collect();
    let totals: Vec<u64> = annotate
        .lines()
        .find(|l| l.ends_with("PROGRAM TOTALS"))
        .ok_or("callgrind_annotate printed no totals")?
        .split_whitespace()
        // A count, or "." for none; the percentages and the label are not counts.
        .filter_map(|w| match w {
            "." => Some(0),
            _ => w.replace(',', "").parse().ok(),
        })
        .collect();
    SIMULATED
        .iter()
        .map(|(_, events)| {
            events
                .iter()
                .map(|e| {
                    names
                        .iter()
                        .position(|n| n == e)
                        .and_then(|i| totals.get(i))
                        .copied()
                        .ok_or_else(|| format!("no {e} in callgrind's output").into())
                })
                .sum::<Result<u64, Error>>()
                .map(|total| total / requests)
        })
        .collect()
}
