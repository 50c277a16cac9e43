//! The end-to-end suite's world: a real control plane (`scripts/cluster.sh`), the project's chart
//! installed with helm in its generated-certificate mode with `webhook.url`, and `serve` running
//! as a local process with the chart's certificate and configuration.
//!
//! Everything started here is stopped by `Drop`, so a failing (panicking) case leaves nothing
//! behind: the `serve` process, then the control plane and its folder.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub const RELEASE: &str = "wasm-admission";
pub const RELEASE_NS: &str = "wasm-admission";
pub const OPT_IN: &str = "wasm-admission.io/inject=enabled";

/// The repository's root (the crate's manifest folder).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one command printed.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            ok: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The command's standard output, or a panic naming what it printed on failure.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(
            self.ok,
            "{what} failed ({:?}):\n{}{}",
            self.code, self.stdout, self.stderr
        );
        self.stdout
    }

    /// The `Warning: ...` lines kubectl printed.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("Warning: "))
            .map(str::to_string)
            .collect()
    }
}

fn run(mut command: Command, stdin: Option<&str>) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    Run::from(child.wait_with_output().expect("wait"))
}

/// The control plane of `scripts/cluster.sh`, in a folder of its own (so a developer's own
/// `cluster.sh up` is not disturbed).
pub struct Cluster {
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

impl Cluster {
    pub fn up() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wasm-admission-e2e-")
            .tempdir()
            .expect("temp dir");
        let state = dir.path().join("cluster");
        let mut command = Command::new("bash");
        command
            .arg(root().join("scripts/cluster.sh"))
            .arg("up")
            .env("WASM_ADMISSION_CLUSTER_DIR", &state)
            .stderr(Stdio::inherit());
        let out = run(command, None);
        // Owned from here: a failed assertion below still runs `down` (Drop).
        let mut cluster = Self {
            kubeconfig: state.join("kubeconfig"),
            kubectl: PathBuf::new(),
            dir,
        };
        assert!(out.ok, "scripts/cluster.sh up failed:\n{}", out.stderr);
        let last = out.stdout.lines().last().unwrap_or_default().to_string();
        assert_eq!(
            last,
            format!("export KUBECONFIG={}", cluster.kubeconfig.display()),
            "the last line of `up`"
        );
        let bin = std::fs::read_to_string(state.join("bin")).expect("cluster bin folder");
        cluster.kubectl = Path::new(bin.trim()).join("kubectl");
        cluster
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// A kubectl command against this control plane.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig).args(args);
        command
    }

    pub fn kubectl(&self, args: &[&str]) -> Run {
        run(self.kubectl_command(args), None)
    }

    pub fn kubectl_in(&self, args: &[&str], stdin: &str) -> Run {
        run(self.kubectl_command(args), Some(stdin))
    }

    /// `kubectl ... -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all).expect_ok(&format!("kubectl {args:?}"));
        serde_json::from_str(&out).expect("kubectl JSON")
    }

    /// A namespace for one case, opted in or not; waits for its default service account (the
    /// ServiceAccount admission plugin refuses Pods before the controller manager made it).
    pub fn namespace(&self, name: &str, opted_in: bool) -> String {
        self.kubectl(&[
            "delete",
            "namespace",
            name,
            "--ignore-not-found",
            "--wait=true",
        ]);
        self.kubectl(&["create", "namespace", name])
            .expect_ok("create namespace");
        if opted_in {
            self.kubectl(&["label", "namespace", name, OPT_IN])
                .expect_ok("label namespace");
        }
        eventually(
            Duration::from_secs(30),
            "the default service account",
            || {
                self.kubectl(&["-n", name, "get", "serviceaccount", "default"])
                    .ok
            },
        );
        name.to_string()
    }

    /// The apiserver's own metrics text.
    pub fn apiserver_metrics(&self) -> String {
        self.kubectl(&["get", "--raw", "/metrics"])
            .expect_ok("apiserver metrics")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/cluster.sh"))
            .arg("down")
            .env("WASM_ADMISSION_CLUSTER_DIR", self.state())
            .stdout(Stdio::null())
            .status();
    }
}

/// helm from the deploy tools (scripts/deploy-tools.sh installs it once, pinned).
pub fn helm_path() -> PathBuf {
    let out = run(
        {
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg("source scripts/deploy-tools.sh && ensure_deploy_tools >&2 && echo \"$HELM\"")
                .current_dir(root());
            c
        },
        None,
    )
    .expect_ok("installing the deploy tools (helm)");
    PathBuf::from(out.trim())
}

/// A local `serve` process, as the webhook configurations' `webhook.url` reaches it.
pub struct Webhook {
    pub port: u16,
    /// `--metrics-listen`'s port (plain HTTP).
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    logs: Option<std::sync::mpsc::Receiver<String>>,
    /// Serving pairs installed so far.
    pairs: u32,
}

impl Webhook {
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Puts a serving pair in place the way the kubelet updates a mounted Secret: both files in
    /// a new folder, then one rename of the `..data` symlink, so `serve` never sees half a pair.
    pub fn install_pair(&mut self, cert: &[u8], key: &[u8]) {
        let dir = self.dir.path();
        self.pairs += 1;
        let version = format!("..v{}", self.pairs);
        std::fs::create_dir(dir.join(&version)).expect("pair folder");
        std::fs::write(dir.join(&version).join("tls.crt"), cert).expect("tls.crt");
        std::fs::write(dir.join(&version).join("tls.key"), key).expect("tls.key");
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
        for file in ["tls.crt", "tls.key"] {
            if std::fs::symlink_metadata(dir.join(file)).is_err() {
                std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file))
                    .expect("file symlink");
            }
        }
    }

    /// Starts `serve` on the fixed port with the files in `dir`, and waits until it listens.
    pub fn start(&mut self, kubeconfig: &Path) {
        assert!(self.child.is_none(), "serve already runs");
        let dir = self.dir.path();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
            .env("WASM_ADMISSION_SHUTDOWN_DELAY", "0s")
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--tls-cert-file")
            .arg(dir.join("tls.crt"))
            .arg("--tls-private-key-file")
            .arg(dir.join("tls.key"))
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(["--namespace", RELEASE_NS, "--log-format", "json"])
            .args(["--watch-runtime-classes", "on"])
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wasm-admission serve");
        let stderr = child.stderr.take().expect("stderr");
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("serve logs that it is listening");
            if line.contains("listening for admission reviews over HTTPS") {
                break;
            }
        }
        self.logs = Some(rx);
    }

    /// Log lines `serve` wrote since the last call.
    pub fn take_logs(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        self.logs
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }

    /// SIGTERM, and a wait for the exit (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child this process owns and has not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `serve`'s Prometheus text, from its plain-HTTP metrics listener.
    pub fn metrics(&self) -> String {
        use std::io::Read;
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics port");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("metrics request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("metrics answer");
        text
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The whole world the cases share.
pub struct World {
    pub cluster: Cluster,
    pub helm: PathBuf,
    webhook: Mutex<Webhook>,
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    listener.local_addr().expect("addr").port()
}

impl World {
    pub fn start() -> Self {
        let helm = helm_path();
        let cluster = Cluster::up();
        let webhook = Webhook {
            port: free_port(),
            metrics_port: free_port(),
            dir: tempfile::tempdir().expect("webhook dir"),
            child: None,
            logs: None,
            pairs: 0,
        };
        let world = Self {
            cluster,
            helm,
            webhook: Mutex::new(webhook),
        };
        // kube-apiserver's RuntimeClass admission refuses a Pod whose class does not exist: the
        // classes are part of the install (README, "Quick start").
        world.apply_runtime_classes();
        world.helm_install(&[]);
        world.fetch_release_files();
        let mut webhook = world.webhook();
        webhook.start(&world.cluster.kubeconfig);
        drop(webhook);
        world
    }

    /// `kubectl apply -k deploy/runtimeclasses`.
    pub fn apply_runtime_classes(&self) {
        let classes = root().join("deploy/runtimeclasses");
        self.cluster
            .kubectl(&["apply", "-k", classes.to_str().expect("utf-8 path")])
            .expect_ok("apply -k deploy/runtimeclasses");
    }

    pub fn webhook(&self) -> MutexGuard<'_, Webhook> {
        self.webhook.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn helm(&self, args: &[&str]) -> Run {
        let mut command = Command::new(&self.helm);
        command
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .args(args);
        run(command, None)
    }

    /// `helm upgrade --install` of the project's chart with `webhook.url` set to the local
    /// `serve`, plus `extra` settings.
    pub fn helm_install(&self, extra: &[&str]) -> String {
        let url = self.webhook().url();
        let chart = root().join("deploy/helm/wasm-admission");
        let mut args = vec![
            "upgrade",
            "--install",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "-n",
            RELEASE_NS,
            "--create-namespace",
            "--wait=false",
        ];
        let url_value = format!("webhook.url={url}");
        args.extend(["--set", &url_value]);
        args.extend_from_slice(extra);
        self.helm(&args).expect_ok("helm upgrade --install")
    }

    /// The chart's Secret and ConfigMap written where `serve` reads them.
    pub fn fetch_release_files(&self) {
        let secret =
            self.cluster
                .json(&["-n", RELEASE_NS, "get", "secret", &format!("{RELEASE}-tls")]);
        let config = self.cluster.json(&[
            "-n",
            RELEASE_NS,
            "get",
            "configmap",
            &format!("{RELEASE}-config"),
        ]);
        let data = |key: &str| {
            let b64 = secret["data"][key].as_str().expect("secret data");
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
        };
        let mut webhook = self.webhook();
        write_atomic(&webhook.dir.path().join("ca.crt"), &data("ca.crt"));
        webhook.install_pair(&data("tls.crt"), &data("tls.key"));
        let text = config["data"]["config.yaml"].as_str().expect("config.yaml");
        write_atomic(&webhook.config_path(), text.as_bytes());
    }

    /// Replaces `serve`'s configuration file and waits until `serve` says it reloaded it.
    pub fn reconfigure(&self, yaml: &str) {
        let webhook = self.webhook();
        webhook.take_logs();
        write_atomic(&webhook.config_path(), yaml.as_bytes());
        eventually(
            Duration::from_secs(20),
            "serve reloads its configuration",
            || {
                webhook
                    .take_logs()
                    .iter()
                    .any(|l| l.contains("configuration reloaded"))
            },
        );
    }

    /// `wasm-admission check -o json` over a file, with the configuration `serve` has.
    pub fn check_json(&self, file: &Path) -> Vec<Value> {
        let config = self.webhook().config_path();
        self.check_json_with(&config, file)
    }

    /// `wasm-admission audit ARGS` with the configuration `serve` has, against the cluster of
    /// `kubeconfig`.
    pub fn audit_with(&self, kubeconfig: &Path, args: &[&str]) -> Run {
        let config = self.webhook().config_path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
        command
            .env("KUBECONFIG", kubeconfig)
            .arg("audit")
            .arg("--config")
            .arg(config)
            .args(args);
        run(command, None)
    }

    /// `wasm-admission check -o json --config CONFIG ARGS FILE` with this cluster's kubeconfig in
    /// `$KUBECONFIG` (for `--cluster`), the configuration `serve` has.
    pub fn check_json_args(&self, args: &[&str], file: &Path) -> Vec<Value> {
        let config = self.webhook().config_path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
        command
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .args(["check", "-o", "json", "--config"])
            .arg(config)
            .args(args)
            .arg(file);
        let out = run(command, None);
        assert!(
            out.code == Some(0) || out.code == Some(1),
            "check {args:?} {} failed: {}",
            file.display(),
            out.stderr
        );
        serde_json::from_str(&out.stdout).expect("check -o json")
    }

    /// `wasm-admission check -o json --config CONFIG FILE`.
    pub fn check_json_with(&self, config: &Path, file: &Path) -> Vec<Value> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
        command
            .args(["check", "-o", "json", "--config"])
            .arg(config)
            .arg(file);
        let out = run(command, None);
        assert!(
            out.code == Some(0) || out.code == Some(1),
            "check {} failed: {}",
            file.display(),
            out.stderr
        );
        serde_json::from_str(&out.stdout).expect("check -o json")
    }
}

/// Writes a file by rename, so a reader never sees half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Polls `check` every 200 ms until it holds, or panics naming `what`.
pub fn eventually(limit: Duration, what: &str, check: impl FnMut() -> bool) {
    assert!(within(limit, check), "timed out waiting for {what}");
}

/// Polls `check` every 200 ms until it holds (true) or `limit` has passed (false).
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every value in `expected` is in `actual` at the same place: objects may have more keys in
/// `actual` (the apiserver's defaults), arrays must have the same length. Returns the first
/// difference as a JSON pointer and the two values.
pub fn contains(actual: &Value, expected: &Value, at: &str) -> Result<(), String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, ev) in e {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match a.get(key) {
                    Some(av) => contains(av, ev, &here)?,
                    None => return Err(format!("{here}: missing, expected {ev}")),
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!(
                    "{at}: {} items, expected {}: {actual} vs {expected}",
                    a.len(),
                    e.len()
                ));
            }
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                contains(av, ev, &format!("{at}/{i}"))?;
            }
            Ok(())
        }
        _ if actual == expected => Ok(()),
        _ => Err(format!("{at}: {actual}, expected {expected}")),
    }
}

/// The value of one series in a Prometheus text exposition (the sum over series whose labels
/// include every `labels` pair), 0 when absent.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The documents `wasm-admission policies [--config CONFIG]` prints (behaviour.md §10).
pub fn generated_policies(config: Option<&Path>) -> Vec<Value> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-admission"));
    command.arg("policies");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let out = run(command, None);
    assert!(out.ok, "wasm-admission policies: {}", out.stderr);
    serde_yaml_ng::Deserializer::from_str(&out.stdout)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("policies YAML"))
        .collect()
}

/// The node of `scripts/cluster.sh up --node` (tests/e2e/node.rs): kube-scheduler, kubelet and
/// containerd with runc and the Wasm shim, and the registry its containerd pulls from.
pub struct Node {
    /// `HOST:PORT` of the registry (`WASM_ADMISSION_REGISTRY`).
    pub registry: String,
    /// containerd's `ctr` and socket, to ask which runtime runs a container.
    pub ctr: PathBuf,
    pub socket: PathBuf,
    /// The node's name, and the label its class `wasm` selects.
    pub name: String,
}

impl Cluster {
    /// `scripts/cluster.sh up --node`: the control plane plus one worker node.
    pub fn up_with_node() -> (Self, Node) {
        let dir = tempfile::Builder::new()
            .prefix("wasm-admission-e2e-")
            .tempdir()
            .expect("temp dir");
        let state = dir.path().join("cluster");
        let mut command = Command::new("bash");
        command
            .arg(root().join("scripts/cluster.sh"))
            .args(["up", "--node"])
            .env("WASM_ADMISSION_CLUSTER_DIR", &state)
            .stderr(Stdio::inherit());
        let out = run(command, None);
        let mut cluster = Self {
            kubeconfig: state.join("kubeconfig"),
            kubectl: PathBuf::new(),
            dir,
        };
        assert!(
            out.ok,
            "scripts/cluster.sh up --node failed:\n{}",
            out.stderr
        );
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert!(lines.len() >= 2, "up --node printed {:?}", out.stdout);
        assert_eq!(
            lines[lines.len() - 1],
            format!("export KUBECONFIG={}", cluster.kubeconfig.display()),
            "the last line of `up --node`"
        );
        let registry = lines[lines.len() - 2]
            .strip_prefix("export WASM_ADMISSION_REGISTRY=")
            .unwrap_or_else(|| panic!("the line before the last of `up --node`: {lines:?}"))
            .to_string();
        let bin = std::fs::read_to_string(state.join("bin")).expect("cluster bin folder");
        cluster.kubectl = Path::new(bin.trim()).join("kubectl");
        let node_bin = std::fs::read_to_string(state.join("node/bin")).expect("node bin folder");
        let node = Node {
            registry,
            ctr: Path::new(node_bin.trim()).join("ctr"),
            socket: state.join("node/containerd.sock"),
            name: "wasm-admission-node".to_string(),
        };
        (cluster, node)
    }
}

impl World {
    /// The world on a control plane with a node: classes, chart and `serve` as in `start`.
    pub fn start_with_node() -> (Self, Node) {
        let helm = helm_path();
        let (cluster, node) = Cluster::up_with_node();
        let webhook = Webhook {
            port: free_port(),
            metrics_port: free_port(),
            dir: tempfile::tempdir().expect("webhook dir"),
            child: None,
            logs: None,
            pairs: 0,
        };
        let world = Self {
            cluster,
            helm,
            webhook: Mutex::new(webhook),
        };
        world.apply_runtime_classes();
        world.helm_install(&[]);
        world.fetch_release_files();
        let mut webhook = world.webhook();
        webhook.start(&world.cluster.kubeconfig);
        drop(webhook);
        (world, node)
    }
}
