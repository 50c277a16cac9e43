//! Starting and stopping the servers under load: certificates, commands, readiness.

use super::*;

/// The review posted: a CREATE of a Wasm Deployment as the apiserver sends it (defaults filled in,
/// no managedFields), from tests/fixtures/deployment-wasm.json.
pub(crate) fn review_body() -> Vec<u8> {
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
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Target {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Kills every child still running when dropped (also on a panic or an early error).
#[derive(Default)]
pub(crate) struct Reaper(pub(crate) Vec<Target>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for target in &mut self.0 {
            stop(&mut target.child);
        }
    }
}

/// SIGTERM, then SIGKILL after 5 s.
pub(crate) fn stop(child: &mut Child) {
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
pub(crate) static PINNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Under `--pinned`, runs the command on `cpu` alone.
pub(crate) fn pin(command: &mut Command, cpu: usize) {
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
pub(crate) fn die_with_parent(command: &mut Command) -> &mut Command {
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

pub(crate) fn free_addr() -> Result<SocketAddr, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub(crate) struct Certs {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client: Arc<rustls::ClientConfig>,
}

pub(crate) fn make_certs(bin: &Path) -> Result<Certs, Error> {
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

pub(crate) fn serve_command(bin: &Path, certs: &Certs, addr: SocketAddr) -> Command {
    let mut command = Command::new(bin);
    command
        .env("WASM_ADMISSION_SHUTDOWN_DELAY", "0s")
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

pub(crate) fn floor_command(mode: &str, certs: &Certs, addr: SocketAddr) -> Result<Command, Error> {
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
pub(crate) fn clean_env(command: &mut Command) {
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
pub(crate) fn https(
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

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Polls `/readyz` until it answers 200; returns the time since `since`.
pub(crate) fn wait_ready(
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

pub(crate) fn start(
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
