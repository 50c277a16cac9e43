//! `audit`'s I/O (behaviour.md §11): reading the objects of the seven kinds from a cluster, page by
//! page, and applying the PolicyReports it writes.
//!
//! Each kind is listed with `limit` and `continue`: one page (at most `page_size` objects, each at
//! most etcd's 1.5 MiB) is held at a time, as the bytes of its answer ([`Page`]), handed to the
//! caller, who decodes its objects one at a time, and dropped before the next is fetched, so
//! memory does not grow with the size of the cluster. Every request has a connect
//! and a read timeout, so a dead API server ends the run with a message instead of a hang.
//!
//! Bounds against a cluster whose objects are large or whose answers misbehave (issue 28, item 6):
//! - **bytes per page**: an answer is read to at most [`DEFAULT_PAGE_BYTES`]; past that the page is
//!   asked for again with half the `limit`, down to one object. One object larger than the budget
//!   is reported by name ([`ClusterError::ObjectTooLarge`]) and skipped, the rest of the kind read on;
//! - **`continue` loops**: a token the server already gave for this kind ends the kind with
//!   [`ClusterError::ContinueLoop`];
//! - **one deadline for the whole run** ([`Deadline`]): every request, with the reading of its body,
//!   ends at it, so an answer trickled a byte at a time cannot outlive the run.

use std::collections::HashSet;
use std::time::Duration;

use http_body_util::BodyExt;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{GroupVersionKind, ListMeta};
use kube::{Api, Client, Config, Resource};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

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
    #[error(
        "{resource} {object} is larger than the {budget}-byte budget for one page of the list; skipped (audit it with check, or raise --page-bytes)"
    )]
    ObjectTooLarge {
        resource: String,
        object: String,
        budget: usize,
    },
    #[error(
        "the API server gave the same continue token twice while listing {resource} {scope}; stopped listing {resource} (a loop)"
    )]
    ContinueLoop { resource: String, scope: String },
    #[error(
        "the audit did not finish within its deadline of {0:?} (--deadline); stopped while reading {1}"
    )]
    Deadline(Duration, String),
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
            Self::Unreachable { .. }
                | Self::Timeout { .. }
                | Self::NoAccess(_)
                | Self::Deadline(..)
        )
    }
}

/// The end of the whole run: every request, and the reading of its answer, stops there.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    pub fn after(total: Duration) -> Self {
        Self {
            at: Instant::now() + total,
            total,
        }
    }

    /// `work`, unless the deadline comes first.
    pub async fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        work: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout_at(self.at, work).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Deadline(self.total, what())),
        }
    }
}

/// The most bytes of one list answer read by default (`audit --page-bytes`). A page is held as
/// these bytes, its objects decoded one at a time, so the peak is about this plus a few copies of
/// one object. Not smaller: one object's JSON can be several times etcd's 1.5 MiB (the apiserver
/// writes `<` as `\u003c`, 6 bytes for 1), and an object past the budget is skipped.
pub const DEFAULT_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// What an error answer is read to, at most.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The start of an oversized answer kept to name the object in it.
const HEAD_BYTES: usize = 64 * 1024;

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
pub fn classify(
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
/// before asking for the next. The bounds of the module's documentation apply.
pub struct Pages<'c> {
    client: Client,
    path: String,
    resource: ApiResource,
    namespace: Option<String>,
    server: &'c str,
    timeouts: Timeouts,
    deadline: Deadline,
    page_size: u32,
    /// The `limit` asked for now: halved for a page over the byte budget, doubled back while
    /// pages come in well under it.
    limit: u32,
    page_bytes: usize,
    token: Option<String>,
    /// Every `continue` token given so far for this kind.
    tokens_seen: HashSet<String>,
    done: bool,
}

/// The settings of a listing, beside the kind and namespace.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    pub timeouts: Timeouts,
    pub deadline: Deadline,
    pub page_size: u32,
    pub page_bytes: usize,
}

/// One list answer as read.
enum Fetched {
    Page(Vec<u8>),
    /// Past the byte budget: its first [`HEAD_BYTES`].
    TooLarge(Vec<u8>),
}

/// A list answer as first read: each item stays the raw JSON it is in the answer, borrowed, so
/// reading a page costs its bytes once (no decoded copy of the whole page).
#[derive(Deserialize)]
struct ListPage<'a> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default, borrow)]
    items: Vec<&'a serde_json::value::RawValue>,
}

/// One page of a list: the answer's bytes and where each item lies in them. Its objects are
/// decoded one at a time ([`Page::objects`]), so while a page is decided only its bytes and the
/// object at hand are in memory, whatever the number of objects in it.
pub struct Page {
    bytes: Vec<u8>,
    items: Vec<std::ops::Range<usize>>,
    api_version: String,
    kind: String,
}

impl Page {
    /// The number of objects in the page.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The page's objects, each decoded when it is reached and carrying its `apiVersion` and
    /// `kind` (list items come without them); drop each before taking the next.
    pub fn objects(&self) -> impl Iterator<Item = Result<Value, serde_json::Error>> + '_ {
        self.items.iter().map(|range| {
            let mut value: Value = serde_json::from_slice(&self.bytes[range.clone()])?;
            if let Some(map) = value.as_object_mut() {
                map.insert("apiVersion".into(), self.api_version.clone().into());
                map.insert("kind".into(), self.kind.clone().into());
            }
            Ok(value)
        })
    }
}

/// Where `part` (a slice of `whole`) lies in `whole`.
fn span_in(whole: &[u8], part: &str) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    let start = start.min(whole.len());
    start..(start + part.len()).min(whole.len())
}

impl<'c> Pages<'c> {
    pub fn new(
        client: &Client,
        server: &'c str,
        listing: Listing,
        kind: WorkloadKind,
        namespace: Option<&str>,
    ) -> Self {
        let resource = api_resource(kind);
        let path = DynamicObject::url_path(&resource, namespace);
        Self {
            client: client.clone(),
            path,
            resource,
            namespace: namespace.map(str::to_string),
            server,
            timeouts: listing.timeouts,
            deadline: listing.deadline,
            page_size: listing.page_size.max(1),
            limit: listing.page_size.max(1),
            page_bytes: listing.page_bytes.max(HEAD_BYTES),
            token: None,
            tokens_seen: HashSet::new(),
            done: false,
        }
    }

    /// `deployments.apps`, `pods`.
    pub fn resource(&self) -> String {
        resource_name(&self.resource)
    }

    /// Whether [`Pages::next`] has nothing more to give.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn fail(&mut self, e: kube::Error) -> ClusterError {
        self.done = true;
        classify(
            e,
            "list",
            self.resource(),
            scope(self.namespace.as_deref()),
            self.server,
            self.timeouts,
        )
    }

    /// Takes the next `continue` token; `Err` when it was given before (a loop).
    fn follow(&mut self, token: Option<String>) -> Result<(), ClusterError> {
        self.token = token.filter(|t| !t.is_empty());
        self.done = self.token.is_none();
        if let Some(t) = &self.token
            && !self.tokens_seen.insert(t.clone())
        {
            self.done = true;
            return Err(ClusterError::ContinueLoop {
                resource: self.resource(),
                scope: scope(self.namespace.as_deref()),
            });
        }
        Ok(())
    }

    /// The next page; each object carries its `apiVersion` and `kind` (list items come without
    /// them). `None` after the last page, and after an error that ends the kind
    /// ([`Pages::is_done`]); after [`ClusterError::ObjectTooLarge`] the kind goes on.
    pub async fn next(&mut self) -> Option<Result<Page, ClusterError>> {
        if self.done {
            return None;
        }
        loop {
            let mut params = ListParams::default().limit(self.limit);
            if let Some(t) = &self.token {
                params = params.continue_token(t);
            }
            let request = match kube::core::Request::new(&self.path).list(&params) {
                Ok(request) => request,
                Err(e) => return Some(Err(self.fail(kube::Error::BuildRequest(e)))),
            };
            let resource = self.resource();
            let fetched = self
                .deadline
                .run(|| format!("the list of {resource}"), async {
                    fetch(&self.client, request, self.page_bytes)
                        .await
                        .map_err(|e| self.fail_ref(e))
                })
                .await;
            let bytes = match fetched {
                Ok(Fetched::Page(bytes)) => bytes,
                Ok(Fetched::TooLarge(head)) if self.limit > 1 => {
                    drop(head);
                    self.limit = (self.limit / 2).max(1);
                    continue;
                }
                Ok(Fetched::TooLarge(head)) => {
                    let (token, object) = first_item_of(&head);
                    let error = ClusterError::ObjectTooLarge {
                        resource: self.resource(),
                        object: object.unwrap_or_else(|| "(name not found)".to_string()),
                        budget: self.page_bytes,
                    };
                    if let Err(e) = self.follow(token) {
                        return Some(Err(e));
                    }
                    return Some(Err(error));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let (token, items) = match serde_json::from_slice::<ListPage<'_>>(&bytes) {
                Ok(page) => (
                    page.metadata.continue_,
                    page.items
                        .iter()
                        .map(|item| span_in(&bytes, item.get()))
                        .collect::<Vec<_>>(),
                ),
                Err(e) => {
                    return Some(Err(self.fail(kube::Error::SerdeError(e))));
                }
            };
            let used = bytes.len();
            // A page well under the budget (a quarter): ask for more objects again, up to
            // --page-size.
            if self.limit < self.page_size && used.saturating_mul(4) < self.page_bytes {
                self.limit = self.limit.saturating_mul(2).min(self.page_size);
            }
            if let Err(e) = self.follow(token) {
                return Some(Err(e));
            }
            return Some(Ok(Page {
                bytes,
                items,
                api_version: self.resource.api_version.clone(),
                kind: self.resource.kind.clone(),
            }));
        }
    }

    fn fail_ref(&self, e: kube::Error) -> ClusterError {
        classify(
            e,
            "list",
            self.resource(),
            scope(self.namespace.as_deref()),
            self.server,
            self.timeouts,
        )
    }
}

/// Sends a list request and reads its answer, at most `budget` bytes of it. An error status is
/// read to at most [`ERROR_BODY_BYTES`] and becomes `kube::Error::Api`, as kube's own requests do.
async fn fetch(
    client: &Client,
    request: axum::http::Request<Vec<u8>>,
    budget: usize,
) -> Result<Fetched, kube::Error> {
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    if !status.is_success() {
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                let room = ERROR_BODY_BYTES.saturating_sub(bytes.len());
                bytes.extend_from_slice(&data[..room.min(data.len())]);
                if room <= data.len() {
                    break;
                }
            }
        }
        let parsed = serde_json::from_slice::<kube::core::Status>(&bytes).ok();
        let status = parsed.unwrap_or_else(|| {
            kube::core::Status::failure(
                String::from_utf8_lossy(&bytes).trim(),
                "Failed to parse error data",
            )
            .with_code(status.as_u16())
        });
        return Err(kube::Error::Api(status.boxed()));
    }
    // Sized once from the declared length (within the budget); grown by doubling only up to the
    // budget, never past it.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > budget) {
        let mut head = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                let room = HEAD_BYTES.saturating_sub(head.len());
                head.extend_from_slice(&data[..room.min(data.len())]);
                if head.len() >= HEAD_BYTES {
                    break;
                }
            }
        }
        return Ok(Fetched::TooLarge(head));
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(64 * 1024).min(budget));
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > budget {
            let room = HEAD_BYTES.saturating_sub(bytes.len().min(HEAD_BYTES));
            bytes.truncate(HEAD_BYTES);
            bytes.extend_from_slice(&data[..room.min(data.len())]);
            return Ok(Fetched::TooLarge(bytes));
        }
        if bytes.len() + data.len() > bytes.capacity() {
            let target = (bytes.capacity() * 2)
                .max(bytes.len() + data.len())
                .min(budget);
            bytes.reserve_exact(target - bytes.len());
        }
        bytes.extend_from_slice(&data);
    }
    Ok(Fetched::Page(bytes))
}

/// From the start of a list answer cut anywhere: its `continue` token and the `namespace/name`
/// of its first item, as far as the head holds them (the apiserver writes `metadata` before
/// `items`, and an object's `name` and `namespace` first in its `metadata`).
fn first_item_of(head: &[u8]) -> (Option<String>, Option<String>) {
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    #[derive(Default)]
    struct Found {
        token: Option<String>,
        name: Option<String>,
        namespace: Option<String>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default, rename = "continue")]
        continue_: Option<String>,
    }
    struct List<'a>(&'a mut Found);
    struct Items<'a>(&'a mut Found);
    struct Item<'a>(&'a mut Found);
    struct ItemMeta<'a>(&'a mut Found);

    macro_rules! map_seed {
        ($t:ident, $expect:literal, |$found:ident, $map:ident| $body:block) => {
            impl<'de> DeserializeSeed<'de> for $t<'_> {
                type Value = ();
                fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                    d.deserialize_map(self)
                }
            }
            impl<'de> Visitor<'de> for $t<'_> {
                type Value = ();
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str($expect)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<(), A::Error> {
                    let $found = self.0;
                    $body
                }
            }
        };
    }
    map_seed!(List, "a list", |found, map| {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => found.token = map.next_value::<Meta>()?.continue_,
                "items" => return map.next_value_seed(Items(found)),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    });
    map_seed!(Item, "an object", |found, map| {
        while let Some(key) = map.next_key::<String>()? {
            if key == "metadata" {
                return map.next_value_seed(ItemMeta(found));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    });
    map_seed!(ItemMeta, "an object's metadata", |found, map| {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => found.name = Some(map.next_value()?),
                "namespace" => found.namespace = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    });
    impl<'de> DeserializeSeed<'de> for Items<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Items<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list's items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            seq.next_element_seed(Item(self.0))?;
            Err(de::Error::custom("first item read"))
        }
    }

    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_slice(head);
    let _ = List(&mut found).deserialize(&mut de);
    let object = found.name.map(|name| match found.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    });
    (found.token.filter(|t| !t.is_empty()), object)
}

/// Writes one PolicyReport or ClusterPolicyReport: created, and when it exists already (409
/// AlreadyExists) server-side applied by its name (field manager `wasm-admission`). So the audit
/// account needs only `create`, and `patch` limited by `resourceNames` to the project's own report
/// names (issue 28, item 7): it cannot rewrite another tool's reports.
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
    let explain = |e: kube::Error, verb: &'static str| {
        let mut e = classify(
            e,
            verb,
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
    };
    let object: DynamicObject = serde_json::from_value(report.clone())
        .map_err(|e| explain(kube::Error::SerdeError(e), "create"))?;
    match api.create(&kube::api::PostParams::default(), &object).await {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(explain(e, "create")),
    }
    let params = PatchParams::apply("wasm-admission").force();
    api.patch(name, &params, &Patch::Apply(report))
        .await
        .map(|_| ())
        .map_err(|e| explain(e, "patch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_item_of_a_list_cut_anywhere_is_named_with_the_continue_token() {
        let list = r#"{"kind":"CronJobList","apiVersion":"batch/v1","metadata":{"resourceVersion":"9","continue":"tok"},"items":[{"metadata":{"name":"big","namespace":"team-a","annotations":{"pad":"xxxxxxxx"#;
        assert_eq!(
            first_item_of(list.as_bytes()),
            (Some("tok".to_string()), Some("team-a/big".to_string()))
        );
        let last = r#"{"kind":"CronJobList","metadata":{},"items":[{"metadata":{"name":"c"}"#;
        assert_eq!(
            first_item_of(last.as_bytes()),
            (None, Some("c".to_string()))
        );
    }
}
