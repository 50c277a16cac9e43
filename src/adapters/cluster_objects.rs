//! `audit`'s I/O (behaviour.md §11): reading the objects of the seven kinds from a cluster, page by
//! page, and applying the PolicyReports it writes.
//!
//! Each kind is listed with `limit` and `continue`: one page (at most `page_size` objects, each at
//! most etcd's 1.5 MiB) is held at a time, handed to the caller, and dropped before the next is
//! fetched, so memory does not grow with the size of the cluster. Every request has a connect
//! and a read timeout, so a dead API server ends the run with a message instead of a hang.

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, Config};
use serde_json::Value;

use crate::core::kinds::WorkloadKind;

/// Why the cluster could not be read (or written).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no cluster access: {0} (set KUBECONFIG, or run in a pod with a service account)")]
    NoAccess(String),
    #[error(
        "no permission to {verb} {resource} {scope} (403 Forbidden: {message}); grant `{verb}` on {resource} to this identity"
    )]
    Forbidden {
        verb: &'static str,
        resource: String,
        scope: String,
        message: String,
    },
    #[error(
        "the API server {server} did not answer within {timeout:?} ({message}); is it running and reachable?"
    )]
    Timeout {
        server: String,
        timeout: Duration,
        message: String,
    },
    #[error("cannot connect to the API server {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error(
        "the list of {resource} expired while it was being read (410 Gone: {message}); run audit again"
    )]
    Expired { resource: String, message: String },
    #[error("{verb} {resource} {scope}: {message}")]
    Api {
        verb: &'static str,
        resource: String,
        scope: String,
        message: String,
    },
}

impl ClusterError {
    /// Whether another request to the same server is pointless (it is down or unreachable).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::NoAccess(_)
        )
    }
}

/// How long a connection may take, and how long an answer may be awaited.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// A client from the kubeconfig (`$KUBECONFIG`, `~/.kube/config`) or the in-cluster service
/// account, as kube's `Config::infer` finds them, with `timeouts`.
pub async fn client(timeouts: Timeouts) -> Result<(Client, String), ClusterError> {
    crate::adapters::tls::install_crypto_provider();
    let mut config = Config::infer()
        .await
        .map_err(|e| ClusterError::NoAccess(e.to_string()))?;
    config.connect_timeout = Some(timeouts.connect);
    config.read_timeout = Some(timeouts.read);
    config.write_timeout = Some(timeouts.read);
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| ClusterError::NoAccess(e.to_string()))?;
    Ok((client, server))
}

/// The API resource of one of the seven kinds.
pub fn api_resource(kind: WorkloadKind) -> ApiResource {
    let (group, version, plural) = match kind {
        WorkloadKind::Pod => ("", "v1", "pods"),
        WorkloadKind::Deployment => ("apps", "v1", "deployments"),
        WorkloadKind::StatefulSet => ("apps", "v1", "statefulsets"),
        WorkloadKind::DaemonSet => ("apps", "v1", "daemonsets"),
        WorkloadKind::ReplicaSet => ("apps", "v1", "replicasets"),
        WorkloadKind::Job => ("batch", "v1", "jobs"),
        WorkloadKind::CronJob => ("batch", "v1", "cronjobs"),
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.as_str()),
        plural,
    )
}

/// `deployments.apps`, `pods`: a resource as RBAC and kubectl name it.
pub fn resource_name(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

fn scope(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("in namespace \"{ns}\""),
        None => "in all namespaces".to_string(),
    }
}

/// Turns a client error into one that says what to do.
fn classify(
    error: kube::Error,
    verb: &'static str,
    resource: String,
    scope: String,
    server: &str,
    timeouts: Timeouts,
) -> ClusterError {
    match error {
        kube::Error::Api(status) if status.code == 403 => ClusterError::Forbidden {
            verb,
            resource,
            scope,
            message: status.message,
        },
        kube::Error::Api(status) if status.code == 410 => ClusterError::Expired {
            resource,
            message: status.message,
        },
        kube::Error::Api(status) => ClusterError::Api {
            verb,
            resource,
            scope,
            message: format!("{} ({})", status.message, status.code),
        },
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
            let message = error_chain(&e);
            let lower = message.to_lowercase();
            if lower.contains("timed out") || lower.contains("elapsed") || lower.contains("timeout")
            {
                ClusterError::Timeout {
                    server: server.to_string(),
                    timeout: timeouts.connect.max(timeouts.read),
                    message,
                }
            } else {
                ClusterError::Unreachable {
                    server: server.to_string(),
                    message,
                }
            }
        }
        e => ClusterError::Api {
            verb,
            resource,
            scope,
            message: error_chain(&e),
        },
    }
}

/// An error with its sources, `: `-separated (a connect timeout hides under two layers).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The objects of one kind (in a namespace, else in all namespaces), read `page_size` at a
/// time with `limit` and `continue`: call [`Pages::next`] until it gives `None`, and drop each page
/// before asking for the next.
pub struct Pages<'c> {
    api: Api<DynamicObject>,
    resource: ApiResource,
    namespace: Option<String>,
    server: &'c str,
    timeouts: Timeouts,
    page_size: u32,
    token: Option<String>,
    done: bool,
}

impl<'c> Pages<'c> {
    pub fn new(
        client: &Client,
        server: &'c str,
        timeouts: Timeouts,
        kind: WorkloadKind,
        namespace: Option<&str>,
        page_size: u32,
    ) -> Self {
        let resource = api_resource(kind);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        Self {
            api,
            resource,
            namespace: namespace.map(str::to_string),
            server,
            timeouts,
            page_size,
            token: None,
            done: false,
        }
    }

    /// `deployments.apps`, `pods`.
    pub fn resource(&self) -> String {
        resource_name(&self.resource)
    }

    /// The next page; each object carries its `apiVersion` and `kind` (list items come without
    /// them). `None` after the last page, and after an error.
    pub async fn next(&mut self) -> Option<Result<Vec<Value>, ClusterError>> {
        if self.done {
            return None;
        }
        let mut params = ListParams::default().limit(self.page_size);
        if let Some(t) = &self.token {
            params = params.continue_token(t);
        }
        let page = match self.api.list(&params).await {
            Ok(page) => page,
            Err(e) => {
                self.done = true;
                return Some(Err(classify(
                    e,
                    "list",
                    self.resource(),
                    scope(self.namespace.as_deref()),
                    self.server,
                    self.timeouts,
                )));
            }
        };
        self.token = page.metadata.continue_.filter(|t| !t.is_empty());
        self.done = self.token.is_none();
        let objects = page
            .items
            .into_iter()
            .map(|item| {
                let mut value = serde_json::to_value(item).unwrap_or(Value::Null);
                if let Some(map) = value.as_object_mut() {
                    map.insert(
                        "apiVersion".into(),
                        self.resource.api_version.clone().into(),
                    );
                    map.insert("kind".into(), self.resource.kind.clone().into());
                }
                value
            })
            .collect();
        Some(Ok(objects))
    }
}

/// Server-side applies one PolicyReport or ClusterPolicyReport (field manager `wasm-admission`).
pub async fn apply_report(
    client: &Client,
    server: &str,
    timeouts: Timeouts,
    report: &Value,
) -> Result<(), ClusterError> {
    let namespace = report["metadata"]["namespace"].as_str();
    let name = report["metadata"]["name"].as_str().unwrap_or_default();
    let kind = report["kind"].as_str().unwrap_or_default();
    let (plural, namespaced) = if kind == "ClusterPolicyReport" {
        ("clusterpolicyreports", false)
    } else {
        ("policyreports", true)
    };
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", kind),
        plural,
    );
    let api: Api<DynamicObject> = match (namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams::apply("wasm-admission").force();
    api.patch(name, &params, &Patch::Apply(report))
        .await
        .map(|_| ())
        .map_err(|e| {
            let mut e = classify(
                e,
                "patch",
                resource_name(&resource),
                scope(namespace),
                server,
                timeouts,
            );
            if let ClusterError::Api { message, .. } = &mut e
                && message.contains("(404)")
            {
                message.push_str(
                    "; is the PolicyReport CRD installed? (the chart's policyReports.installCRDs)",
                );
            }
            e
        })
}
