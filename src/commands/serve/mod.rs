//! `wasm-admission serve`: the HTTPS door onto the engine (behaviour.md §7).
//!
//! - [`routes`]: `POST /mutate`, `POST /validate`, `GET /healthz`, `GET /readyz`, `GET /metrics`;
//!   the review routes decode the review ([`crate::core::review::decode`]), look images up through
//!   [`crate::adapters::inspect`] and answer with [`crate::core::review::answer`].
//! - [`crate::adapters::tls`]: TLS 1.2/1.3 with HTTP/2 and HTTP/1.1 by ALPN; the serving pair is handed out per
//!   handshake from an `ArcSwap`, so it can be replaced without a restart.
//! - `reload`: polls the certificate, client CA and configuration files and swaps in new versions
//!   that check out; a bad version is refused and the last good one stays.
//! - [`metrics`]: Prometheus metrics; [`budget`]: the apiserver's `?timeout=`; [`dev`]: `--dev`;
//!   [`json_log`]: the `--log-format json` lines, handed to a logging thread (`tracing-appender`).
//!
//! SIGTERM or SIGINT first makes `/readyz` answer 503 while connections are still accepted and
//! answered for `--shutdown-delay` (the apiserver keeps calling until the pod's endpoint is
//! removed); then it stops accepting connections, lets requests in flight finish (up to
//! [`SHUTDOWN_GRACE`]) and exits 0; a second signal stops at once.

mod args;
pub mod budget;
pub mod conn;
pub mod dev;
pub mod h2_idle;
pub mod json_log;
pub mod load;
pub mod metrics;
mod reload;
pub mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::crypto::CryptoProvider;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::adapters::tls::{self, CertResolver, PairPaths, TlsError, install_crypto_provider};
use crate::core::config::{Config, ConfigError};
use crate::core::engine::Engine;
use metrics::Metrics;
use reload::{CertSource, ClientCaSource, ConfigSource, Sources};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

pub use args::{LogFormat, ServeArgs};
pub use reload::DEFAULT_POLL_INTERVAL;

/// Where `serve` listens without `--listen`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8443);
/// Where `serve --dev` listens without `--listen`.
pub const DEV_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8443);

/// How long requests in flight get to finish after SIGTERM; below Kubernetes' default
/// `terminationGracePeriodSeconds` of 30.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Knobs that are not flags: defaults for production, shorter ones for tests.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How often certificate, client CA and configuration files are looked at.
    pub poll_interval: Duration,
    /// An HTTP/1.1 connection that has not sent a complete request head within this time is
    /// closed. hyper applies this to idle keep-alive connections too, so it is also the idle
    /// timeout: 30s (hyper's default) keeps slow-header clients out without closing the
    /// apiserver's kept-alive connections between reviews in a busy cluster.
    pub header_read_timeout: Duration,
    /// A TLS handshake that takes longer is dropped.
    pub tls_handshake_timeout: Duration,
    /// The cluster to watch RuntimeClasses in, instead of the one inferred from the environment
    /// (tests point this at a local stand-in for kube-apiserver).
    pub kube_config: Option<kube::Config>,
    /// A connection whose first request bytes have not arrived this long after its handshake is
    /// closed (see [`conn`]).
    pub first_bytes_timeout: Duration,
    /// The most connections open at once, over both listeners; `None`: derived from the
    /// process's open-file limit ([`conn::max_connections`]).
    pub max_connections: Option<usize>,
    /// Reviews decided at once, at most ([`load`]).
    pub max_reviews_in_flight: usize,
    /// Request body bytes held at once over all reviews, at most ([`load`]).
    pub max_body_memory: usize,
    /// An HTTP/2 connection with no request frame for this long is closed ([`h2_idle`]).
    pub h2_idle_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            kube_config: None,
            first_bytes_timeout: Duration::from_secs(10),
            max_connections: None,
            max_reviews_in_flight: load::DEFAULT_MAX_IN_FLIGHT,
            max_body_memory: load::DEFAULT_MAX_BODY_MEMORY,
            h2_idle_timeout: h2_idle::DEFAULT_H2_IDLE_TIMEOUT,
        }
    }
}

/// Why `serve` could not start. Each message names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0} (--config)")]
    Config(ConfigError),
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Listen {
        addr: SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dev(#[from] dev::DevError),
    #[error(transparent)]
    Cluster(#[from] crate::adapters::runtime_classes::NoClusterAccess),
}

/// Why a running server stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the {listener} listener failed: {source}")]
    Listener {
        listener: &'static str,
        source: std::io::Error,
    },
    #[error("the {listener} listener stopped unexpectedly: {message}")]
    Crashed {
        listener: &'static str,
        message: String,
    },
}

/// What the routes share.
pub struct AppState {
    pub(crate) engine: ArcSwap<Engine>,
    pub(crate) metrics: Metrics,
    pub(crate) resolver: Arc<CertResolver>,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) rustls: Option<RustlsConfig>,
    /// Certificates and configuration are loaded.
    pub(crate) ready: AtomicBool,
    /// A shutdown has begun: `/readyz` answers 503.
    pub(crate) draining: AtomicBool,
    /// Registry inspection (behaviour.md §3 rule 6), built for the configuration in force.
    pub(crate) registry: crate::adapters::registry::InspectorSlot,
    /// The cluster's RuntimeClass names, once listed (behaviour.md §7).
    pub(crate) runtime_classes: Arc<crate::adapters::runtime_classes::KnownRuntimeClasses>,
    /// The nodes' labels, once listed (behaviour.md §11).
    pub(crate) nodes: Arc<crate::adapters::nodes::KnownNodes>,
    /// Reviews in flight and body bytes held, over all connections.
    pub(crate) load: load::Load,
}

/// A started server.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    dev: Option<dev::DevFiles>,
    state: Arc<AppState>,
    handles: Vec<Handle>,
    tasks: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
    watcher: JoinHandle<()>,
    runtime_class_watch: Option<JoinHandle<()>>,
    node_watch: Option<JoinHandle<()>>,
}

/// Stops a [`Server`] from another task (a signal handler, a test).
#[derive(Clone)]
pub struct ShutdownHandle {
    handles: Vec<Handle>,
    state: Arc<AppState>,
}

impl ShutdownHandle {
    /// `/readyz` answers 503 from now on; connections are still accepted and answered.
    pub fn not_ready(&self) {
        self.state.draining.store(true, Ordering::Release);
    }

    /// Stops accepting connections and lets requests in flight finish, for at most `grace`.
    pub fn graceful(&self, grace: Duration) {
        self.state.draining.store(true, Ordering::Release);
        for handle in &self.handles {
            handle.graceful_shutdown(Some(grace));
        }
    }

    /// Closes every connection now.
    pub fn now(&self) {
        self.state.draining.store(true, Ordering::Release);
        for handle in &self.handles {
            handle.shutdown();
        }
    }
}

impl Server {
    /// The HTTPS listener's address (the real port when `--listen` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The plain-HTTP metrics listener's address, with `--metrics-listen`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The files `--dev` wrote.
    pub fn dev_files(&self) -> Option<&dev::DevFiles> {
        self.dev.as_ref()
    }

    /// Open connections on the HTTPS listener (keep-alive connections included).
    pub fn connection_count(&self) -> usize {
        self.handles.first().map_or(0, Handle::connection_count)
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            handles: self.handles.clone(),
            state: self.state.clone(),
        }
    }

    /// Waits until every listener has stopped (after a shutdown, or a failure).
    pub async fn wait(self) -> Result<(), ServeError> {
        let mut result = Ok(());
        for (listener, task) in self.tasks {
            let outcome = match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(ServeError::Listener { listener, source }),
                Err(e) => Err(ServeError::Crashed {
                    listener,
                    message: e.to_string(),
                }),
            };
            if let Err(e) = outcome {
                // One listener failing stops the others: a half-running webhook helps nobody.
                for handle in &self.handles {
                    handle.shutdown();
                }
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        self.watcher.abort();
        for watch in [&self.runtime_class_watch, &self.node_watch]
            .into_iter()
            .flatten()
        {
            watch.abort();
        }
        if let Some(dev) = &self.dev {
            dev.remove();
        }
        result
    }
}

/// The listen backlog: a burst of new connections waits in the kernel's queue instead of
/// having its SYNs dropped and retried a second later (std's `bind` asks for 128; the kernel
/// caps this at `net.core.somaxconn`, as Go's listeners use).
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr, flag: &'static str) -> Result<std::net::TcpListener, StartError> {
    let err = |source| StartError::Listen { addr, flag, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    // As std's bind does on Unix: a restart can bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    // The std listener comes back in non-blocking mode, as axum-server wants it.
    let listener = socket.listen(LISTEN_BACKLOG).map_err(err)?;
    listener.into_std().map_err(err)
}

fn local_addr(
    listener: &std::net::TcpListener,
    addr: SocketAddr,
    flag: &'static str,
) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, flag, source })
}

fn configure_http(
    builder: &mut hyper_util::server::conn::auto::Builder<TokioExecutor>,
    tuning: &Tuning,
) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(tuning.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(250);
}

/// The webhook's own namespace: `--namespace`, else `$POD_NAMESPACE`.
fn own_namespace(args: &ServeArgs) -> Option<String> {
    args.namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|ns| !ns.is_empty())
}

/// Loads certificates and configuration, binds the listeners and starts serving. Returns once
/// the server accepts connections.
pub async fn start(args: ServeArgs, tuning: Tuning) -> Result<Server, StartError> {
    let tuning = tuning.with_flags(&args);
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sources = Sources::default();
    let tls = load_tls(&args, &provider, &mut sources)?;
    let engine = load_engine(&args, &mut sources)?;
    let state = new_state(engine, &tls, provider, &tuning);
    let kube_client = crate::adapters::runtime_classes::client_for(
        args.watch_runtime_classes,
        tuning.kube_config.clone(),
    )
    .await?;

    let wanted = args
        .listen
        .unwrap_or(if args.dev { DEV_LISTEN } else { DEFAULT_LISTEN });
    let listener = bind(wanted, "--listen")?;
    let addr = local_addr(&listener, wanted, "--listen")?;
    let metrics_listener = match args.metrics_listen {
        Some(wanted) => {
            let listener = bind(wanted, "--metrics-listen")?;
            let addr = local_addr(&listener, wanted, "--metrics-listen")?;
            Some((listener, addr))
        }
        None => None,
    };
    let dev = match &tls.dev_ca {
        Some(ca_pem) => Some(dev::DevFiles::write(ca_pem, addr)?),
        None => None,
    };

    let (max_connections, fd_limit) = connection_cap(&args, &tuning);
    let mut listeners = Listeners::default();
    listeners.https(listener, &state, tls.rustls, max_connections, &tuning);
    let metrics_addr = metrics_listener.map(|(listener, metrics_addr)| {
        listeners.metrics(listener, &state, &tuning);
        metrics_addr
    });

    let watcher = tokio::spawn(reload::watch(state.clone(), sources, tuning.poll_interval));
    // The Node watch runs beside the RuntimeClass watch, with the same client (behaviour.md §11).
    let node_watch = kube_client
        .as_ref()
        .map(|client| crate::adapters::nodes::spawn_watch(client.clone(), state.nodes.clone()));
    let runtime_class_watch = kube_client.map(|client| {
        crate::adapters::runtime_classes::spawn_watch(
            client,
            state.runtime_classes.clone(),
            args.watch_runtime_classes,
        )
    });
    state.ready.store(true, Ordering::Release);
    info!(
        addr = %addr,
        metrics_addr = metrics_addr.map(|a| a.to_string()),
        certificate_serial = %tls.pair.serial,
        certificate_not_after = tls.pair.not_after,
        max_connections,
        open_files_limit = fd_limit,
        dev = args.dev,
        watch_runtime_classes = runtime_class_watch.is_some(),
        "listening for admission reviews over HTTPS"
    );
    Ok(Server {
        addr,
        metrics_addr,
        dev,
        state,
        handles: listeners.handles,
        tasks: listeners.tasks,
        watcher,
        runtime_class_watch,
        node_watch,
    })
}

impl Tuning {
    /// The tuning with the flags that override it applied.
    fn with_flags(mut self, args: &ServeArgs) -> Self {
        if let Some(n) = args.max_reviews_in_flight {
            self.max_reviews_in_flight = n as usize;
        }
        if let Some(bytes) = args.max_body_memory {
            self.max_body_memory = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(d) = args.h2_idle_timeout {
            self.h2_idle_timeout = d;
        }
        if let Some(d) = args.tls_handshake_timeout {
            self.tls_handshake_timeout = d;
        }
        self
    }
}

/// The serving pair and what is built from it.
struct LoadedTls {
    pair: tls::LoadedPair,
    /// `--dev`: the in-memory CA's certificate, written out once the port is known.
    dev_ca: Option<String>,
    resolver: Arc<CertResolver>,
    rustls: RustlsConfig,
}

/// The serving pair (from the files, or made in memory with `--dev`), the client CA, and the
/// rustls configuration that hands out the pair per handshake.
fn load_tls(
    args: &ServeArgs,
    provider: &Arc<CryptoProvider>,
    sources: &mut Sources,
) -> Result<LoadedTls, StartError> {
    let (pair, dev_ca) = if args.dev {
        let made = dev::make_pair()?;
        let paths = PairPaths {
            cert: PathBuf::from("<in-memory dev certificate>"),
            key: PathBuf::from("<in-memory dev key>"),
        };
        let pair = tls::load_pair(
            made.cert_pem.as_bytes(),
            made.key_pem.as_bytes(),
            &paths,
            provider,
        )?;
        (pair, Some(made.ca_pem))
    } else {
        let paths = PairPaths {
            cert: args.tls_cert_file.clone(),
            key: args.tls_private_key_file.clone(),
        };
        let (source, pair) = CertSource::load(paths, provider)?;
        sources.cert = Some(source);
        (pair, None)
    };
    let resolver = Arc::new(CertResolver::new(pair.key.clone()));
    let client_ca = match &args.client_ca_file {
        Some(path) => {
            let (source, roots) = ClientCaSource::load(path.clone())?;
            sources.client_ca = Some(source);
            Some(roots)
        }
        None => None,
    };
    let rustls = RustlsConfig::from_config(Arc::new(tls::server_config(
        provider.clone(),
        resolver.clone(),
        client_ca,
    )?));
    Ok(LoadedTls {
        pair,
        dev_ca,
        resolver,
        rustls,
    })
}

/// The engine for `--config` (watched for changes), or for the defaults.
fn load_engine(args: &ServeArgs, sources: &mut Sources) -> Result<Engine, StartError> {
    let namespace = own_namespace(args);
    match &args.config {
        Some(path) => {
            let (source, engine) =
                ConfigSource::load(path.clone(), namespace).map_err(StartError::Config)?;
            sources.config = Some(source);
            Ok(engine)
        }
        None => Engine::new(Config::default().with_own_namespace(namespace.as_deref()))
            .map_err(StartError::Config),
    }
}

/// What the routes share, not ready yet.
fn new_state(
    engine: Engine,
    tls: &LoadedTls,
    provider: Arc<CryptoProvider>,
    tuning: &Tuning,
) -> Arc<AppState> {
    let metrics = Metrics::new();
    metrics.certificate_expiry(tls.pair.not_after);
    let (nodes_watched, node_watch_state) = metrics.node_gauges();
    let registry_counters = metrics.registry_counters();
    let state = Arc::new(AppState {
        engine: ArcSwap::from_pointee(engine),
        metrics,
        resolver: tls.resolver.clone(),
        provider,
        rustls: Some(tls.rustls.clone()),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        registry: crate::adapters::registry::InspectorSlot::with_counters(registry_counters),
        runtime_classes: Arc::default(),
        nodes: Arc::new(crate::adapters::nodes::KnownNodes::with_gauges(
            nodes_watched,
            node_watch_state,
        )),
        load: load::Load::new(tuning.max_reviews_in_flight, tuning.max_body_memory),
    });
    // Built now rather than on the first review: the HTTP client reads the system's CA
    // certificates, which takes a while and blocks.
    state
        .registry
        .for_settings(&state.engine.load().config().detection.registry);
    state
}

/// The most connections the HTTPS listener holds, and the open-file limit: the flag, else a
/// test's tuning, else one per 16 KiB of half the memory limit (flag or cgroup), always within
/// what the open-file limit allows.
fn connection_cap(args: &ServeArgs, tuning: &Tuning) -> (usize, Option<u64>) {
    let fd_limit = conn::raise_fd_limit();
    let by_fds = conn::max_connections(fd_limit);
    let max_connections = args
        .max_connections
        .map(|n| n as usize)
        .or(tuning.max_connections)
        .or_else(|| {
            conn::max_connections_for_memory(args.memory_limit.or_else(conn::cgroup_memory_limit))
                .map(|n| n.min(by_fds))
        })
        .unwrap_or(by_fds);
    (max_connections, fd_limit)
}

/// The running listeners: a handle to stop each, and its task.
#[derive(Default)]
struct Listeners {
    handles: Vec<Handle>,
    tasks: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
}

impl Listeners {
    /// The review routes over TLS, at most `max_connections` at once.
    fn https(
        &mut self,
        listener: std::net::TcpListener,
        state: &Arc<AppState>,
        rustls: RustlsConfig,
        max_connections: usize,
        tuning: &Tuning,
    ) {
        let guard = conn::Guard::new(
            max_connections,
            tuning.first_bytes_timeout,
            state.metrics.connections_open(),
            state.metrics.connections_refused(),
        )
        .with_h2_idle_timeout(tuning.h2_idle_timeout);
        let handle = Handle::new();
        let acceptor = guard
            .acceptor(RustlsAcceptor::new(rustls).handshake_timeout(tuning.tls_handshake_timeout));
        let mut https = axum_server::from_tcp(listener)
            .acceptor(acceptor)
            .handle(handle.clone());
        configure_http(https.http_builder(), tuning);
        let app = routes::router(state.clone());
        self.tasks.push((
            "HTTPS",
            tokio::spawn(async move { https.serve(app.into_make_service()).await }),
        ));
        self.handles.push(handle);
    }

    /// `/metrics` over plain HTTP, `--metrics-listen`.
    fn metrics(&mut self, listener: std::net::TcpListener, state: &Arc<AppState>, tuning: &Tuning) {
        let guard = conn::Guard::new(
            conn::METRICS_MAX_CONNECTIONS,
            tuning.first_bytes_timeout,
            state.metrics.connections_open(),
            state.metrics.connections_refused(),
        )
        .with_h2_idle_timeout(tuning.h2_idle_timeout);
        let handle = Handle::new();
        let mut plain = axum_server::from_tcp(listener)
            .acceptor(guard.acceptor(axum_server::accept::DefaultAcceptor::new()))
            .handle(handle.clone());
        configure_http(plain.http_builder(), tuning);
        let app = routes::metrics_router(state.clone());
        self.tasks.push((
            "metrics",
            tokio::spawn(async move { plain.serve(app.into_make_service()).await }),
        ));
        self.handles.push(handle);
    }
}

fn init_logging(format: LogFormat) -> WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Lines go to standard error from a logging thread, so a review never waits on a write;
    // not lossy: a stalled reader of standard error slows logging down instead of losing lines,
    // and the guard writes out what is left when `serve` returns.
    let (sink, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(sink);
    // Err only when a subscriber is already set (nothing to do then).
    let _ = match format {
        // The lines of tracing-subscriber's `.json().flatten_event(true)`, written without serde.
        LogFormat::Json => builder.event_format(json_log::JsonLines).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}

/// SIGTERM and SIGINT, registered before the server starts so that an early signal is not fatal.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// `wasm-admission serve`.
pub fn run(args: ServeArgs) -> ExitCode {
    // Dropped last, after the runtime: writes out the lines still waiting.
    let _log = init_logging(args.log_format.unwrap_or(if args.dev {
        LogFormat::Text
    } else {
        LogFormat::Json
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start: cannot create the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve_until_signal(args))
}

async fn serve_until_signal(args: ServeArgs) -> ExitCode {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            error!("cannot start: cannot listen for SIGTERM and SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let delay = args.shutdown_delay;
    let server = match start(args, Tuning::default()).await {
        Ok(server) => server,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(files) = server.dev_files() {
        println!("{}", files.banner(server.addr()));
    }
    let shutdown = server.shutdown_handle();
    let on_signal = tokio::spawn(async move {
        let first = signals.next().await;
        info!(
            signal = first,
            delay_ms = delay.as_millis() as u64,
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "stopping: /readyz answers 503; connections are accepted for the shutdown delay, \
             then no new connections and requests in flight finish first"
        );
        shutdown.not_ready();
        let second = tokio::select! {
            () = tokio::time::sleep(delay) => None,
            second = signals.next() => Some(second),
        };
        let second = match second {
            Some(second) => second,
            None => {
                info!("shutdown delay over: no new connections; draining");
                shutdown.graceful(SHUTDOWN_GRACE);
                signals.next().await
            }
        };
        warn!(signal = second, "second signal: stopping now");
        shutdown.now();
    });
    let result = server.wait().await;
    on_signal.abort();
    match result {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
