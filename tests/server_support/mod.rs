//! Helpers for the `serve` and `certs` tests: a test PKI, a Secret-volume-like certificate folder,
//! an in-process server on 127.0.0.1:0, and a client that behaves like kube-apiserver (trusts only
//! the webhook's CA, sends the Service DNS name as SNI, keeps connections alive, appends
//! `?timeout=10s`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;
use wasm_admission::commands::serve::ServeArgs;
use wasm_admission::commands::serve::{self, Server, Tuning};

/// The Service the apiserver calls, as in the deploy manifests.
pub const SERVICE_HOST: &str = "wasm-admission.wasm-admission.svc";

pub const DEPLOYMENT_CREATE: &str = include_str!("../../examples/review/deployment-create.json");
pub const POD_CREATE: &str = include_str!("../../examples/review/pod-create.json");
pub const PRIVILEGED_CREATE: &str =
    include_str!("../../examples/review/deployment-privileged-create.json");

/// A CA that signs serving certificates, as cert-manager's issuer would.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A serving certificate and its key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A serving certificate for the webhook Service's names and for localhost.
    pub fn serving(&self) -> Pair {
        self.leaf(
            &[
                "wasm-admission",
                "wasm-admission.wasm-admission",
                SERVICE_HOST,
                "wasm-admission.wasm-admission.svc.cluster.local",
                "localhost",
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate (the apiserver's admission client identity).
    pub fn client(&self, name: &str) -> Pair {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], eku: ExtendedKeyUsagePurpose) -> Pair {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("names");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![eku];
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }
}

static SWAPS: AtomicU64 = AtomicU64::new(0);

/// A folder laid out the way the kubelet lays out a mounted Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..2026_11_25_...` (a timestamped folder holding the real files).
pub struct SecretDir {
    pub dir: tempfile::TempDir,
    current: PathBuf,
}

impl SecretDir {
    pub fn new(files: &[(&str, &[u8])]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let current = write_timestamped(dir.path(), files);
        std::os::unix::fs::symlink(
            current.file_name().expect("name"),
            dir.path().join("..data"),
        )
        .expect("..data");
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.path().join(name))
                .expect("file symlink");
        }
        Self { dir, current }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces every file at once, as the kubelet's atomic writer does: a new timestamped folder,
    /// a `..data_tmp` symlink to it renamed over `..data`, then the old folder removed.
    pub fn swap(&mut self, files: &[(&str, &[u8])]) {
        let new = write_timestamped(self.dir.path(), files);
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(new.file_name().expect("name"), &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap ..data");
        std::fs::remove_dir_all(&self.current).expect("remove old version");
        self.current = new;
    }
}

fn write_timestamped(root: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let n = SWAPS.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("..2026_11_25_14_00_00.{:09}", n));
    std::fs::create_dir(&dir).expect("timestamped dir");
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).expect("write file");
    }
    dir
}

/// `serve` flags with nothing set: no files, listening on 127.0.0.1:0.
pub fn serve_args(cert: &Path, key: &Path) -> ServeArgs {
    ServeArgs {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        tls_cert_file: cert.to_path_buf(),
        tls_private_key_file: key.to_path_buf(),
        config: None,
        metrics_listen: None,
        log_format: None,
        dev: false,
        client_ca_file: None,
        namespace: Some("wasm-admission".into()),
        // Never a real cluster from a test machine's kubeconfig.
        watch_runtime_classes: wasm_admission::adapters::runtime_classes::WatchMode::Off,
        max_connections: None,
        memory_limit: None,
        max_reviews_in_flight: None,
        max_body_memory: None,
        h2_idle_timeout: None,
        tls_handshake_timeout: None,
        shutdown_delay: Duration::ZERO,
    }
}

/// Short polling so reload tests finish quickly.
pub fn fast_tuning() -> Tuning {
    Tuning {
        poll_interval: Duration::from_millis(100),
        ..Tuning::default()
    }
}

/// A running in-process server with certificates in a Secret-like folder.
pub struct TestServer {
    pub server: Server,
    pub pki: Pki,
    pub pair: Pair,
    pub secret: SecretDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServeArgs)) -> Self {
        Self::start_with_tuning(adjust, fast_tuning()).await
    }

    pub async fn start_with_tuning(adjust: impl FnOnce(&mut ServeArgs), tuning: Tuning) -> Self {
        let pki = Pki::new("test CA");
        let pair = pki.serving();
        let secret = SecretDir::new(&[
            ("tls.crt", pair.cert_pem.as_bytes()),
            ("tls.key", pair.key_pem.as_bytes()),
        ]);
        let mut args = serve_args(&secret.path("tls.crt"), &secret.path("tls.key"));
        adjust(&mut args);
        let server = serve::start(args, tuning).await.expect("server starts");
        Self {
            server,
            pki,
            pair,
            secret,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `https://wasm-admission.wasm-admission.svc:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{SERVICE_HOST}:{}{path}", self.addr().port())
    }

    pub fn client(&self, http: Http) -> reqwest::Client {
        apiserver_client(&self.pki.ca_pem, self.addr(), http)
    }

    pub async fn stop(self) {
        self.server
            .shutdown_handle()
            .graceful(Duration::from_secs(5));
        self.server.wait().await.expect("server stops cleanly");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1 only (ALPN offers only `http/1.1`), keep-alive.
    One,
    /// HTTP/2 by ALPN.
    Two,
}

/// A client like kube-apiserver's: trusts only `ca_pem`, resolves the Service name to `addr` (so
/// the Service DNS name is the SNI and the name checked), keeps connections alive.
pub fn apiserver_client(ca_pem: &str, addr: SocketAddr, http: Http) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .resolve(SERVICE_HOST, addr)
        .tls_info(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(Duration::from_secs(15));
    let builder = match http {
        Http::One => builder.http1_only(),
        Http::Two => builder,
    };
    builder.build().expect("client")
}

/// What the webhook answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub version: reqwest::Version,
    pub body: Value,
    pub peer_cert: Option<Vec<u8>>,
}

/// POSTs an AdmissionReview body the way the apiserver does (`?timeout=10s`, JSON).
pub async fn post_review(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> Result<Answer, reqwest::Error> {
    let response = client
        .post(format!("{url}?timeout=10s"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, */*")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let version = response.version();
    let peer_cert = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec);
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "answer with status {status} is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Ok(Answer {
        status,
        version,
        body,
        peer_cert,
    })
}

/// Checks the AdmissionReview envelope the apiserver requires and returns the `response`.
pub fn check_envelope<'a>(answer: &'a Answer, uid: &str) -> &'a Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer.body["kind"], "AdmissionReview");
    let response = &answer.body["response"];
    assert_eq!(response["uid"], uid, "uid echo");
    assert!(response["allowed"].is_boolean());
    // patchType only alongside a patch, and the other way round.
    assert_eq!(
        response.get("patchType").is_some(),
        response.get("patch").is_some(),
        "patchType and patch come together: {response}"
    );
    if response.get("patch").is_some() {
        assert_eq!(response["patchType"], "JSONPatch");
    }
    response
}

/// Applies the base64 JSON Patch of a response to `object` with the RFC 6902 library, as the
/// apiserver does; returns `object` unchanged when there is no patch.
pub fn apply_patch(object: &Value, response: &Value) -> Value {
    let mut out = object.clone();
    if let Some(patch) = response.get("patch").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is JSON Patch");
        json_patch::patch(&mut out, &patch).expect("patch applies cleanly");
    }
    out
}

pub fn uid_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("review JSON");
    v["request"]["uid"].as_str().expect("uid").to_string()
}

pub fn object_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).expect("review JSON");
    v["request"]["object"].clone()
}

/// Polls `check` every 20ms until it holds, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one metric series in an OpenMetrics text, or 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn metrics_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The spawned `serve` and the address it reported.
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
    /// `--metrics-listen`'s address, when given.
    pub metrics_addr: Option<String>,
    pub logs: std::sync::mpsc::Receiver<String>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Only if a test failed before the process exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `wasm-admission serve` with JSON logs and waits for its "listening" line.
pub fn spawn_serve(args: &[&str]) -> Spawned {
    spawn_serve_with(args, |_| {})
}

/// [`spawn_serve`], with a chance to adjust the command first (environment, limits).
pub fn spawn_serve_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Spawned {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
    command
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env_remove("RUST_LOG")
        // No shutdown delay unless a test asks for one (issue 23: default 5s).
        .env("WASM_ADMISSION_SHUTDOWN_DELAY", "0s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    adjust(&mut command);
    let mut child = command.spawn().expect("spawn wasm-admission serve");
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    // Owned from here on: a failed wait below still ends the process (Drop).
    let mut spawned = Spawned {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: None,
        logs: rx,
    };
    let stderr = stderr.expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = spawned
            .logs
            .recv_timeout(left)
            .expect("serve logs that it is listening");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "listening for admission reviews over HTTPS" {
            spawned.addr = v["addr"]
                .as_str()
                .expect("addr field")
                .parse()
                .expect("addr");
            spawned.metrics_addr = v["metrics_addr"].as_str().map(str::to_string);
            return spawned;
        }
    }
}

impl Spawned {
    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.child.id(), field)
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Log lines received so far (and not yet taken), after waiting long enough for the lines
    /// already logged to be written out (by `serve`'s logging thread).
    pub fn take_logs(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(250));
        self.logs.try_iter().collect()
    }

    /// Every log line not yet taken, once the process has exited (up to standard error's end).
    pub fn logs_after_exit(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.logs.recv_timeout(Duration::from_secs(10)) {
            lines.push(line);
        }
        lines
    }
}

/// A field of `/proc/<pid>/status` in KiB, or 0 when absent.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Writes a certificate pair into a fresh folder: `(dir, tls.crt, tls.key)`.
/// `serve`'s flags for a serving pair's files, then `extra`.
pub fn tls_flags<'a>(cert: &'a Path, key: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec![
        "--tls-cert-file",
        cert.to_str().expect("path"),
        "--tls-private-key-file",
        key.to_str().expect("path"),
    ];
    flags.extend_from_slice(extra);
    flags
}

pub fn pair_files(pair: &Pair) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, &pair.cert_pem).expect("cert");
    std::fs::write(&key, &pair.key_pem).expect("key");
    (dir, cert, key)
}
