//! What `check` knows of RuntimeClasses and nodes (behaviour.md §3 rule 3b, §11), fed to the
//! engine as `serve`'s watches feed it:
//! - the RuntimeClass documents of the input (a bundle that ships its classes beside its
//!   workloads), each read as the watch keeps a class: its handler and `scheduling.nodeSelector`;
//!   a document with unknown fields or without a handler is reported on standard error, not fatal;
//! - with `--cluster`, the cluster's RuntimeClasses and Node labels, listed once through the
//!   kubeconfig (as `audit` reads the cluster); the input's classes are laid over them, as if
//!   applied. Without a reachable cluster or without permission, an error that names what to fix.
//!
//! Without `--cluster` the input's classes are not the whole cluster: the class `check` would
//! inject (`runtimeClassName`, or a `wasm-admission.io/runtime-class` annotation) is then taken to
//! exist unless the cluster says otherwise, so no "does not exist" warning is made up.

use std::time::Duration;

use serde_json::Value;

use crate::adapters::cluster_objects::{self, ClusterError, Timeouts};
use crate::adapters::{nodes, runtime_classes};
use crate::core::config::Config;
use crate::core::detection::ClusterRuntimeClasses;
use crate::core::runtime_class_manifest;
use crate::core::schedulability::ClusterNodes;

use super::Document;

/// The annotation that names the class to inject (behaviour.md §3 rule 3).
const ANN_RUNTIME_CLASS: &str = "wasm-admission.io/runtime-class";

/// The facts for the engine: `None` where nothing is known.
#[derive(Debug, Default)]
pub struct ClassFacts {
    pub runtime_classes: Option<ClusterRuntimeClasses>,
    pub nodes: Option<ClusterNodes>,
}

/// Reads the input's RuntimeClass documents (reporting their problems on standard error) and,
/// with `cluster` (the time the whole cluster read may take), the cluster's classes and nodes.
pub fn gather(
    config: &Config,
    documents: &[Document],
    cluster: Option<Duration>,
) -> Result<ClassFacts, ClusterError> {
    let mut given = ClusterRuntimeClasses::new();
    for doc in documents {
        let Ok(object) = &doc.content else { continue };
        if !runtime_class_manifest::is_runtime_class(object) {
            continue;
        }
        let read = runtime_class_manifest::read(object);
        let name = object
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        for problem in &read.problems {
            eprintln!(
                "wasm-admission check: {}: document {}: RuntimeClass {name:?}: {problem}",
                doc.source, doc.index
            );
        }
        if let Some((name, info)) = read.class {
            given.insert(name, info);
        }
    }
    match cluster {
        Some(timeout) => {
            let (mut classes, nodes) = read_cluster(timeout)?;
            classes.extend(given);
            Ok(ClassFacts {
                runtime_classes: Some(classes),
                nodes: Some(nodes),
            })
        }
        None if given.is_empty() => Ok(ClassFacts::default()),
        None => {
            for name in injected_classes(config, documents) {
                given.entry(name).or_default();
            }
            Ok(ClassFacts {
                runtime_classes: Some(given),
                nodes: None,
            })
        }
    }
}

/// The classes `check` may inject: the configured one and every one an annotation names. Stand-ins
/// for these have no handler, so they make nothing Wasm; they only keep the "does not exist"
/// warning for the cluster to say.
fn injected_classes(config: &Config, documents: &[Document]) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        (ANN_RUNTIME_CLASS, Value::String(name)) => out.push(name.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut names = vec![config.runtime_class_name.clone()];
    for doc in documents {
        if let Ok(object) = &doc.content {
            walk(object, &mut names);
        }
    }
    names
}

/// The cluster's RuntimeClasses and Node labels, read within `timeout` in all.
fn read_cluster(timeout: Duration) -> Result<(ClusterRuntimeClasses, ClusterNodes), ClusterError> {
    let timeouts = Timeouts {
        connect: timeout.min(Duration::from_secs(10)),
        read: timeout,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClusterError::NoAccess(format!("cannot create the async runtime: {e}")))?;
    runtime.block_on(async {
        let (client, server) = cluster_objects::client(timeouts).await?;
        let read = async {
            let classes = runtime_classes::list(&client, &server, timeouts).await?;
            let nodes = nodes::list(&client, &server, timeouts).await?;
            Ok((classes, nodes))
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Timeout {
                server: server.clone(),
                timeout,
                message: "listing RuntimeClasses and Nodes (--timeout)".into(),
            }),
        }
    })
}
