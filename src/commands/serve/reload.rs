//! Re-reading files that change under a running server: the serving certificate and key, the
//! client CA bundle, and the configuration file.
//!
//! Kubernetes updates a mounted Secret or ConfigMap by writing a new timestamped directory and
//! atomically swapping the `..data` symlink to it; inotify on the visible paths misses that, so
//! the files are polled: read through their symlinks, compared byte for byte with what was last
//! seen, and loaded again only when they differ. A new version that cannot be used is refused
//! with a log line and a `failure` count; the last good one stays in force. A refused version is
//! not retried until the files change again, so a broken file gives one log line, not one a tick.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use tracing::{error, info, warn};

use super::AppState;
use super::metrics::ReloadWhat;
use crate::adapters::config_file::read_bounded;
use crate::adapters::tls::{self, PairPaths};
use crate::core::engine::Engine;

/// How often the files are looked at by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The most read of a certificate, key or CA bundle file: a bundle of thousands of certificates.
/// Like the configuration file, each is read with [`read_bounded`]: a FIFO or device at the path is
/// refused at once instead of blocking the poll (and with it every other reload and shutdown).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A certificate, key or CA file, bounded.
fn read_pem(path: &Path) -> std::io::Result<Vec<u8>> {
    read_bounded(path, MAX_PEM_BYTES).map_err(std::io::Error::from)
}

/// Reads a set of files so that the result is one consistent version: when a swap happens while
/// they are read, the files are read again (a Secret's certificate and key must come from the same
/// `..data` directory).
fn read_consistent(paths: &[&Path]) -> std::io::Result<Vec<Vec<u8>>> {
    let read_all = || {
        paths
            .iter()
            .map(|p| read_pem(p))
            .collect::<std::io::Result<Vec<_>>>()
    };
    let mut previous = read_all()?;
    for _ in 0..5 {
        let again = read_all()?;
        if again == previous {
            return Ok(again);
        }
        previous = again;
    }
    Ok(previous)
}

/// The serving pair's files and what was last seen in them.
pub struct CertSource {
    pub paths: PairPaths,
    last_seen: Vec<Vec<u8>>,
}

impl CertSource {
    /// Loads the pair for the first time; errors stop the start.
    pub fn load(
        paths: PairPaths,
        provider: &CryptoProvider,
    ) -> Result<(Self, tls::LoadedPair), tls::TlsError> {
        let cert = read_pem(&paths.cert).map_err(|source| tls::TlsError::ReadCert {
            path: paths.cert.clone(),
            source,
        })?;
        let key = read_pem(&paths.key).map_err(|source| tls::TlsError::ReadKey {
            path: paths.key.clone(),
            source,
        })?;
        let pair = tls::load_pair(&cert, &key, &paths, provider)?;
        Ok((
            Self {
                paths,
                last_seen: vec![cert, key],
            },
            pair,
        ))
    }

    fn poll(&mut self, state: &AppState) {
        let contents = match read_consistent(&[&self.paths.cert, &self.paths.key]) {
            Ok(contents) => contents,
            Err(e) => {
                // A missing file mid-swap is normal for a moment; only a change counts as a reload.
                if !self.last_seen.is_empty() {
                    warn!(
                        what = "certificate",
                        cert = %self.paths.cert.display(),
                        key = %self.paths.key.display(),
                        error = %e,
                        "cannot read the serving certificate files; still serving the last good pair"
                    );
                    state.metrics.reload(ReloadWhat::Certificate, false);
                    self.last_seen.clear();
                }
                return;
            }
        };
        if contents == self.last_seen {
            return;
        }
        let result = match contents.as_slice() {
            [cert, key] => tls::load_pair(cert, key, &self.paths, &state.provider),
            _ => return,
        };
        self.last_seen = contents;
        match result {
            Ok(pair) => {
                state.resolver.replace(pair.key.clone());
                state.metrics.certificate_expiry(pair.not_after);
                state.metrics.reload(ReloadWhat::Certificate, true);
                info!(
                    what = "certificate",
                    serial = %pair.serial,
                    not_after = pair.not_after,
                    "serving a new certificate"
                );
            }
            Err(e) => {
                state.metrics.reload(ReloadWhat::Certificate, false);
                error!(
                    what = "certificate",
                    error = %e,
                    "refused the changed certificate files; still serving the last good pair"
                );
            }
        }
    }
}

/// The client CA bundle (`--client-ca-file`) and what was last seen in it.
pub struct ClientCaSource {
    pub path: PathBuf,
    last_seen: Option<Vec<u8>>,
}

impl ClientCaSource {
    pub fn load(path: PathBuf) -> Result<(Self, rustls::RootCertStore), tls::TlsError> {
        let pem = read_pem(&path).map_err(|source| tls::TlsError::ReadClientCa {
            path: path.clone(),
            source,
        })?;
        let roots = tls::load_client_ca(&pem, &path)?;
        Ok((
            Self {
                path,
                last_seen: Some(pem),
            },
            roots,
        ))
    }

    fn poll(&mut self, state: &AppState) {
        let pem = match read_pem(&self.path) {
            Ok(pem) => pem,
            Err(e) => {
                if self.last_seen.take().is_some() {
                    warn!(what = "client_ca", path = %self.path.display(), error = %e,
                        "cannot read the client CA file; still trusting the last good bundle");
                    state.metrics.reload(ReloadWhat::ClientCa, false);
                }
                return;
            }
        };
        if self.last_seen.as_ref() == Some(&pem) {
            return;
        }
        self.last_seen = Some(pem.clone());
        let config = tls::load_client_ca(&pem, &self.path).and_then(|roots| {
            tls::server_config(state.provider.clone(), state.resolver.clone(), Some(roots))
        });
        match (config, &state.rustls) {
            (Ok(config), Some(rustls)) => {
                rustls.reload_from_config(Arc::new(config));
                state.metrics.reload(ReloadWhat::ClientCa, true);
                info!(what = "client_ca", path = %self.path.display(), "trusting a new client CA bundle");
            }
            (Ok(_), None) => {}
            (Err(e), _) => {
                state.metrics.reload(ReloadWhat::ClientCa, false);
                error!(what = "client_ca", error = %e,
                    "refused the changed client CA file; still trusting the last good bundle");
            }
        }
    }
}

/// The configuration file and what was last seen in it.
pub struct ConfigSource {
    pub path: PathBuf,
    pub namespace: Option<String>,
    last_seen: Option<Vec<u8>>,
    /// Why the file could not be read at the last poll.
    last_error: Option<String>,
}

impl ConfigSource {
    /// Reads the configuration for the first time; errors stop the start.
    pub fn load(
        path: PathBuf,
        namespace: Option<String>,
    ) -> Result<(Self, Engine), crate::core::config::ConfigError> {
        let bytes = crate::adapters::config_file::read_bytes(&path)?;
        let engine = build_engine_from(&path, &bytes, namespace.as_deref())?;
        Ok((
            Self {
                path,
                namespace,
                last_seen: Some(bytes),
                last_error: None,
            },
            engine,
        ))
    }

    /// One read of at most `MAX_CONFIG_BYTES + 1` bytes per tick, never blocking (issue 28, item
    /// 9): a file too large, or not a regular file, is refused like any broken version.
    fn poll(&mut self, state: &AppState) {
        let bytes = match crate::adapters::config_file::read_bytes(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // One line per new reason (a file too large, then a FIFO), not one per tick.
                let reason = e.to_string();
                let new_reason = self.last_error.as_deref() != Some(reason.as_str());
                if self.last_seen.take().is_some() || new_reason {
                    warn!(what = "config", path = %self.path.display(), error = %e,
                        "cannot read the configuration file; the last good configuration stays in force");
                    state.metrics.reload(ReloadWhat::Config, false);
                }
                self.last_error = Some(reason);
                return;
            }
        };
        self.last_error = None;
        if self.last_seen.as_ref() == Some(&bytes) {
            return;
        }
        let built = build_engine_from(&self.path, &bytes, self.namespace.as_deref());
        self.last_seen = Some(bytes);
        match built {
            Ok(engine) => {
                // A changed `detection.registry` gets its new inspector here, off the request path.
                state
                    .registry
                    .for_settings(&engine.config().detection.registry);
                state.engine.store(Arc::new(engine));
                state.metrics.reload(ReloadWhat::Config, true);
                info!(what = "config", path = %self.path.display(), "configuration reloaded");
            }
            Err(e) => {
                state.metrics.reload(ReloadWhat::Config, false);
                error!(what = "config", error = %e,
                    "refused the changed configuration file; the last good configuration stays in force");
            }
        }
    }
}

/// The engine for configuration bytes read from `path`, with the webhook's own namespace excluded.
fn build_engine_from(
    path: &Path,
    bytes: &[u8],
    namespace: Option<&str>,
) -> Result<Engine, crate::core::config::ConfigError> {
    let config = crate::adapters::config_file::parse(path, bytes)?.with_own_namespace(namespace);
    Engine::new(config).map_err(|e| match e {
        crate::core::config::ConfigError::Invalid { message, .. } => {
            crate::core::config::ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            }
        }
        other => other,
    })
}

/// Everything that is watched.
#[derive(Default)]
pub struct Sources {
    pub cert: Option<CertSource>,
    pub client_ca: Option<ClientCaSource>,
    pub config: Option<ConfigSource>,
}

impl Sources {
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.client_ca.is_none() && self.config.is_none()
    }

    fn poll(&mut self, state: &AppState) {
        if let Some(cert) = &mut self.cert {
            cert.poll(state);
        }
        if let Some(ca) = &mut self.client_ca {
            ca.poll(state);
        }
        if let Some(config) = &mut self.config {
            config.poll(state);
        }
    }
}

/// Polls the sources every `interval` until the task is aborted. File reads and parsing run on
/// the blocking pool, so a slow volume never stalls request handling.
pub async fn watch(state: Arc<AppState>, mut sources: Sources, interval: Duration) {
    if sources.is_empty() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let state = state.clone();
        let polled = tokio::task::spawn_blocking(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sources.poll(&state);
            }));
            if outcome.is_err() {
                error!(
                    "a reload panicked; the last good certificate and configuration stay in force"
                );
            }
            sources
        })
        .await;
        match polled {
            Ok(back) => sources = back,
            Err(e) => {
                // Only a cancelled blocking task gets here (the runtime is shutting down).
                error!(error = %e, "the file watcher stopped; certificates and configuration will no longer be reloaded");
                return;
            }
        }
    }
}
