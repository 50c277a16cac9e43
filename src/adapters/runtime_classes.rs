//! RuntimeClass awareness (behaviour.md §7, §3 rule 3b): in a cluster, `serve` keeps the cluster's
//! RuntimeClasses in memory (a list, then a watch, through kube's watcher): each name with what
//! the rules read of it ([`RuntimeClassInfo`]: its handler and `scheduling.nodeSelector`). It hands them to the engine, which
//! warns when the class it injects does not exist, and counts a pod whose class runs a Wasm
//! handler as Wasm.
//!
//! Until the first list has completed the names are unknown (`None`), so no review gets a false
//! warning while the watch starts; meanwhile the watch is *pending* ([`KnownRuntimeClasses::pending`],
//! issue 28 item 5): `/readyz` answers 503 and the engine judges a class that is not Wasm by name
//! as an unknown one (`Facts::runtime_classes_pending`). After that, a broken watch keeps the last
//! names it had while kube's watcher retries with backoff. Needs read-only RBAC: `get`, `list` and
//! `watch` on `runtimeclasses.node.k8s.io`. Without that permission, `--watch-runtime-classes auto`
//! stops waiting (said once in the log, at warning level: classes are then known by name only, as
//! without cluster access) and keeps retrying; `on` keeps waiting, so `serve` never becomes ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use kube::api::ListParams;

use crate::adapters::cluster_objects::{ClusterError, Timeouts, classify};
use crate::core::detection::{ClusterRuntimeClasses, RuntimeClassInfo};

/// Whether `serve` watches RuntimeClasses (`--watch-runtime-classes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WatchMode {
    /// Watch when cluster access can be found (in-cluster service account or a kubeconfig);
    /// otherwise do nothing and log only at debug level.
    #[default]
    Auto,
    /// Watch; `serve` does not start without cluster access.
    On,
    /// Never watch.
    Off,
}

/// The RuntimeClasses known so far; shared by the watch and the review routes.
#[derive(Default)]
pub struct KnownRuntimeClasses {
    known: ArcSwapOption<ClusterRuntimeClasses>,
    /// A watch was started ([`spawn_watch`]).
    watched: AtomicBool,
    /// The watch is in `auto` mode and the apiserver refused the list for lack of permission:
    /// not waited for.
    not_permitted: AtomicBool,
}

impl KnownRuntimeClasses {
    /// A watch runs but holds no list yet (the first list has not arrived, or keeps failing), and
    /// is waited for: `/readyz` answers 503 and reviews are decided with
    /// `Facts::runtime_classes_pending`. `false` without a watch, and in `auto` mode once the list
    /// was refused for lack of permission.
    pub fn pending(&self) -> bool {
        self.watched.load(Ordering::Acquire)
            && !self.not_permitted.load(Ordering::Acquire)
            && self.known.load().is_none()
    }

    /// The classes, once the first list has completed.
    pub fn current(&self) -> Option<Arc<ClusterRuntimeClasses>> {
        self.known.load_full()
    }

    fn replace(&self, names: ClusterRuntimeClasses) {
        self.known.store(Some(Arc::new(names)));
    }

    fn update(&self, change: impl FnOnce(&mut ClusterRuntimeClasses)) {
        let mut names = self
            .current()
            .map(|n| n.as_ref().clone())
            .unwrap_or_default();
        change(&mut names);
        self.replace(names);
    }
}

/// Why a watch could not start (with `--watch-runtime-classes on`).
#[derive(Debug, thiserror::Error)]
#[error("no cluster access for watching RuntimeClasses (--watch-runtime-classes on): {0}")]
pub struct NoClusterAccess(String);

/// The Kubernetes client to watch with: from `config` when given (tests), else inferred
/// (in-cluster service account, then `$KUBECONFIG` / `~/.kube/config`). `None` in `auto` mode
/// without cluster access, logged at debug level only.
pub async fn client_for(
    mode: WatchMode,
    config: Option<kube::Config>,
) -> Result<Option<Client>, NoClusterAccess> {
    if mode == WatchMode::Off {
        debug!("RuntimeClasses are not watched (--watch-runtime-classes off)");
        return Ok(None);
    }
    crate::adapters::tls::install_crypto_provider();
    let client = match config {
        Some(config) => Client::try_from(config).map_err(|e| e.to_string()),
        None => Client::try_default().await.map_err(|e| e.to_string()),
    };
    match (client, mode) {
        (Ok(client), _) => Ok(Some(client)),
        (Err(e), WatchMode::On) => Err(NoClusterAccess(e)),
        (Err(e), _) => {
            debug!(reason = %e, "no cluster access; RuntimeClasses are not watched");
            Ok(None)
        }
    }
}

/// Lists the cluster's RuntimeClasses once (`check --cluster`), in pages of 500, keeping what the
/// watch keeps of each. Errors say what to fix (a 403 names the verb and resource to grant).
pub async fn list(
    client: &Client,
    server: &str,
    timeouts: Timeouts,
) -> Result<ClusterRuntimeClasses, ClusterError> {
    let api: Api<RuntimeClass> = Api::all(client.clone());
    let mut classes = ClusterRuntimeClasses::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.map_err(|e| {
            classify(
                e,
                "list",
                "runtimeclasses.node.k8s.io".into(),
                "(cluster-wide)".into(),
                server,
                timeouts,
            )
        })?;
        let token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        classes.extend(page.items.into_iter().filter_map(entry));
        match token {
            Some(token) if params.continue_token.as_deref() != Some(token.as_str()) => {
                params = params.continue_token(&token);
            }
            _ => return Ok(classes),
        }
    }
}

/// What the rules read of a RuntimeClass, keyed by its name (`None` without one).
fn entry(rc: RuntimeClass) -> Option<(String, RuntimeClassInfo)> {
    let name = rc.metadata.name?;
    let (node_selector, tolerations) = rc
        .scheduling
        .map(|s| (s.node_selector, s.tolerations))
        .unwrap_or_default();
    let overhead = rc
        .overhead
        .and_then(|o| o.pod_fixed)
        .unwrap_or_default()
        .into_iter()
        .map(|(resource, quantity)| (resource, quantity.0))
        .collect();
    Some((
        name,
        RuntimeClassInfo {
            handler: rc.handler,
            node_selector: node_selector.unwrap_or_default(),
            tolerations: tolerations
                .unwrap_or_default()
                .iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect(),
            overhead,
        },
    ))
}

/// Whether a watch error is the apiserver refusing for lack of permission.
pub fn forbidden(error: &watcher::Error) -> bool {
    let text = error.to_string();
    text.contains("403") || text.contains("forbidden") || text.contains("Forbidden")
}

/// Lists and then watches RuntimeClasses until the task is aborted, keeping `names` current.
/// `mode` says whether a refused list is waited for ([`WatchMode::On`]) or not
/// ([`WatchMode::Auto`]); see [`KnownRuntimeClasses::pending`].
pub fn spawn_watch(
    client: Client,
    names: Arc<KnownRuntimeClasses>,
    mode: WatchMode,
) -> JoinHandle<()> {
    let api: Api<RuntimeClass> = Api::all(client);
    names.watched.store(true, Ordering::Release);
    tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        futures_util::pin_mut!(stream);
        let mut listing = ClusterRuntimeClasses::new();
        let mut failing = false;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    // One line when the watch starts failing, not one per retry.
                    let refused = forbidden(&e);
                    if refused && mode == WatchMode::Auto && names.current().is_none() {
                        if !names.not_permitted.swap(true, Ordering::AcqRel) {
                            warn!(error = %e, "no permission to list RuntimeClasses (--watch-runtime-classes auto): not waiting for them; a class is Wasm by its name only until the list is granted (retrying with backoff)");
                        }
                        failing = true;
                    } else if !failing {
                        if names.current().is_none() {
                            warn!(error = %e, "listing RuntimeClasses failed; /readyz answers 503 and a class that is not Wasm by name is judged as unknown until a list completes (retrying with backoff)");
                        } else {
                            warn!(error = %e, "watching RuntimeClasses failed; retrying with backoff (the last known names stay in use)");
                        }
                        failing = true;
                    } else {
                        debug!(error = %e, "watching RuntimeClasses failed again");
                    }
                    continue;
                }
            };
            if failing {
                info!("watching RuntimeClasses again");
                failing = false;
            }
            match event {
                Event::Init => listing.clear(),
                Event::InitApply(rc) => {
                    if let Some((name, info)) = entry(rc) {
                        listing.insert(name, info);
                    }
                }
                Event::InitDone => {
                    let mut sorted: Vec<&String> = listing.keys().collect();
                    sorted.sort();
                    info!(runtime_classes = ?sorted, "RuntimeClasses listed");
                    names.replace(std::mem::take(&mut listing));
                    names.not_permitted.store(false, Ordering::Release);
                }
                Event::Apply(rc) => {
                    if let Some((name, info)) = entry(rc) {
                        debug!(%name, handler = %info.handler, "RuntimeClass added or changed");
                        names.update(|n| {
                            n.insert(name, info);
                        });
                    }
                }
                Event::Delete(rc) => {
                    if let Some(name) = rc.metadata.name {
                        debug!(%name, "RuntimeClass deleted");
                        names.update(|n| {
                            n.remove(&name);
                        });
                    }
                }
            }
        }
    })
}
