//! Node awareness (behaviour.md §11): beside the RuntimeClass watch, `serve` keeps the labels of
//! the cluster's nodes, and nothing else, so that the engine can warn when no node satisfies the
//! `scheduling.nodeSelector` of the RuntimeClass a pod will run with.
//!
//! The watch is metadata-only (`Api<PartialObjectMeta<Node>>`: kube asks the apiserver for
//! `PartialObjectMetadata`, so node status, images and conditions never cross the wire), lists
//! in pages of 500, and of each node keeps its name and labels: 5,000 nodes of 15 labels each
//! measured at 7 MiB of resident memory when they arrive as events, 24 MiB after a first list
//! (docs/operations.md, "Measured memory", with the command). Annotations
//! and managed fields are dropped as each event arrives. An event that does not change a node's
//! labels (a status heartbeat bumps the resourceVersion) changes nothing here.
//!
//! Like the RuntimeClass watch: until the first list has completed the nodes are unknown
//! (`None`) and no review is warned; a broken watch keeps the last labels while kube's watcher
//! retries with backoff; without permission (`list`/`watch` on nodes) the nodes stay unknown
//! and the warning is off, said once in the log.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use kube::api::ListParams;

use crate::adapters::cluster_objects::{ClusterError, Timeouts, classify};
use crate::adapters::runtime_classes::forbidden;
use crate::core::schedulability::{ClusterNodes, NodeLabels};

/// The state of the Node watch, as the `wasm_admission_node_watch_state` metric reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum WatchState {
    /// Not started (no cluster access, or `--watch-runtime-classes off`).
    Off = 0,
    /// The first list has not completed.
    Listing = 1,
    /// Listed; following changes.
    Watching = 2,
    /// The last attempt failed (a missing permission among others); retrying with backoff.
    Failing = 3,
}

/// The nodes' labels known so far; shared by the watch and the review routes.
#[derive(Default)]
pub struct KnownNodes {
    nodes: RwLock<Option<ClusterNodes>>,
    /// How many nodes are known (`wasm_admission_nodes_watched`).
    count: Gauge,
    /// A [`WatchState`] (`wasm_admission_node_watch_state`).
    state: Gauge,
    /// A watch was started and has neither listed the nodes nor been refused for lack of
    /// permission: `/readyz` waits (issue 28, item 5).
    waiting: std::sync::atomic::AtomicBool,
}

impl KnownNodes {
    /// Counting into these gauges (serve's metrics registry holds clones of them).
    pub fn with_gauges(count: Gauge, state: Gauge) -> Self {
        Self {
            nodes: RwLock::default(),
            count,
            state,
            waiting: false.into(),
        }
    }

    /// A watch runs and its first list has neither completed nor been refused for lack of
    /// permission (the warning it feeds is off then, so nothing is waited for).
    pub fn pending(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Acquire)
    }

    fn settle(&self) {
        self.waiting
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// The nodes, once the first list has completed. Hold the guard only while deciding: the
    /// watch waits for it to change a label.
    pub fn read(&self) -> RwLockReadGuard<'_, Option<ClusterNodes>> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn count(&self) -> i64 {
        self.count.get()
    }

    fn set_state(&self, state: WatchState) {
        self.state.set(state as i64);
    }

    fn write(&self, change: impl FnOnce(&mut Option<ClusterNodes>)) {
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        change(&mut nodes);
        let count = nodes.as_ref().map_or(0, |n| n.len());
        self.count.set(count as i64);
    }

    /// Records a node's labels; `false` when they were already known as they are.
    fn apply(&self, name: String, labels: NodeLabels) -> bool {
        let unchanged = self
            .read()
            .as_ref()
            .is_some_and(|n| n.get(&name) == Some(&labels));
        if !unchanged {
            self.write(|nodes| {
                nodes.get_or_insert_default().insert(name, labels);
            });
        }
        !unchanged
    }
}

/// A node's name and labels, dropping everything else of its metadata.
fn entry(node: PartialObjectMeta<Node>) -> Option<(String, NodeLabels)> {
    let meta = node.metadata;
    let name = meta.name?;
    Some((name, NodeLabels::new(meta.labels.unwrap_or_default())))
}

/// Lists the nodes' names and labels once (`check --cluster`), metadata only, in pages of 500.
/// Errors say what to fix (a 403 names the verb and resource to grant).
pub async fn list(
    client: &Client,
    server: &str,
    timeouts: Timeouts,
) -> Result<ClusterNodes, ClusterError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut nodes = ClusterNodes::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list_metadata(&params).await.map_err(|e| {
            classify(
                e,
                "list",
                "nodes".into(),
                "(cluster-wide)".into(),
                server,
                timeouts,
            )
        })?;
        let token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        nodes.extend(page.items.into_iter().filter_map(entry));
        match token {
            Some(token) if params.continue_token.as_deref() != Some(token.as_str()) => {
                params = params.continue_token(&token);
            }
            _ => return Ok(nodes),
        }
    }
}

/// Lists and then watches the nodes' metadata until the task is aborted, keeping `known` current.
pub fn spawn_watch(client: Client, known: Arc<KnownNodes>) -> JoinHandle<()> {
    let api: Api<PartialObjectMeta<Node>> = Api::all(client);
    known.set_state(WatchState::Listing);
    known
        .waiting
        .store(true, std::sync::atomic::Ordering::Release);
    tokio::spawn(async move {
        let stream =
            watcher::watcher(api, watcher::Config::default().page_size(500)).default_backoff();
        futures_util::pin_mut!(stream);
        let mut listing = ClusterNodes::new();
        let mut failing = false;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    known.set_state(WatchState::Failing);
                    if forbidden(&e) {
                        known.settle();
                    }
                    if !failing {
                        if forbidden(&e) {
                            warn!(error = %e, "no permission to list and watch nodes; the warning for a RuntimeClass no node can run is off until it is granted (retrying with backoff)");
                        } else {
                            warn!(error = %e, "watching nodes failed; retrying with backoff (the last known labels stay in use)");
                        }
                        failing = true;
                    } else {
                        debug!(error = %e, "watching nodes failed again");
                    }
                    continue;
                }
            };
            if failing {
                info!("watching nodes again");
                failing = false;
            }
            match event {
                Event::Init => {
                    listing.clear();
                }
                Event::InitApply(node) => {
                    if let Some((name, labels)) = entry(node) {
                        listing.insert(name, labels);
                    }
                }
                Event::InitDone => {
                    info!(nodes = listing.len(), "nodes listed");
                    let listed = std::mem::take(&mut listing);
                    known.write(|nodes| *nodes = Some(listed));
                    known.set_state(WatchState::Watching);
                    known.settle();
                }
                Event::Apply(node) => {
                    if let Some((name, labels)) = entry(node) {
                        let labels_count = labels.len();
                        if known.apply(name.clone(), labels) {
                            debug!(%name, labels = labels_count, "node added or its labels changed");
                        }
                    }
                    known.set_state(WatchState::Watching);
                }
                Event::Delete(node) => {
                    if let Some(name) = node.metadata.name {
                        debug!(%name, "node deleted");
                        known.write(|nodes| {
                            if let Some(n) = nodes {
                                n.remove(&name);
                            }
                        });
                    }
                    known.set_state(WatchState::Watching);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_label_set_is_not_written_again() {
        let known = KnownNodes::default();
        assert!(known.read().is_none(), "unknown before the first list");
        assert!(known.apply("a".into(), NodeLabels::new([("k", "v")])));
        assert!(!known.apply("a".into(), NodeLabels::new([("k", "v")])));
        assert!(known.apply("a".into(), NodeLabels::new([("k", "w")])));
        assert_eq!(known.count(), 1);
    }
}
