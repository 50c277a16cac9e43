//! The HTTP routes. The review routes make no decision of their own: they check the envelope
//! (method, Content-Type, size), decode the body ([`review::decode`]), take the inspect-then-decide
//! step of [`crate::adapters::inspect`] (registry lookups within the review's budget) and answer
//! through [`review::answer`], then count and log the answer, with the failing rule of a denial.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tracing::{error, info, warn};

use super::AppState;
use super::budget::{Budget, MAX_BUDGET};
use super::load::{self, Ticket};
use super::metrics::{self, Counted};
use crate::adapters::inspect::{self, Cap, Lookups};
use crate::adapters::registry::{self, RegistryFacts};
use crate::core::detection::ClusterRuntimeClasses;
use crate::core::engine::{Endpoint, Engine, Facts};
use crate::core::review::{self, ReviewError};
use crate::core::verdict::{RuleId, RuleResult, Status};

/// The largest AdmissionReview body decided in full (issue 28, item 1). etcd stores an object of at
/// most 1.5 MiB (its default `--max-request-bytes`), and the apiserver's JSON writes each `<`, `>`,
/// `&`, control character or invalid UTF-8 byte of a string as a six-byte `\u003c` escape: an object
/// that can be stored is at most 9 MiB in a review, and an UPDATE carries `object` and `oldObject`,
/// 18 MiB. 24 MiB leaves room for the envelope, `managedFields` and the request's own metadata. A
/// larger review is denied (see [`DRAIN_LIMIT_BYTES`]), never refused with an HTTP error that a
/// `failurePolicy: Ignore` would turn into an admission.
pub const MAX_BODY_BYTES: usize = 24 * 1024 * 1024;

/// How much of a review larger than [`MAX_BODY_BYTES`] is read (and dropped, but for its first
/// [`HEAD_BYTES`]) before it is denied: the apiserver's request limit (3 MiB) escaped six times
/// over, twice (object and oldObject of an UPDATE whose patch grew the object) is about 40 MiB. A
/// body declared or found larger is denied as soon as its uid is known, without reading on.
pub const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// The start of an oversized review kept to find its `request.uid`: the apiserver writes `uid`
/// first in `request`, a few hundred bytes into the body.
pub const HEAD_BYTES: usize = 64 * 1024;

/// The webhook's routes: `POST /mutate`, `POST /validate`, `GET /healthz`, `GET /readyz`,
/// `GET /metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The plain-HTTP metrics listener's routes (`--metrics-listen`): `GET /metrics` only.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// An error answer: `{"error": "..."}` with a JSON Content-Type.
pub fn json_error(status: StatusCode, message: impl AsRef<str>) -> Response {
    let body = serde_json::json!({ "error": message.as_ref() }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "no such path; the webhook serves POST /mutate, POST /validate, GET /healthz, GET /readyz and GET /metrics",
    )
}

async fn method_not_allowed() -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this path",
    )
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        "ok\n",
    )
        .into_response()
}

/// 200 once certificates and configuration are loaded and, when `serve` watches them, the first
/// RuntimeClass and Node lists have completed (issue 28, item 5: a review decided before then
/// does not know which classes run Wasm); 503 while draining after SIGTERM (so the Service stops
/// sending new calls here).
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !state.ready.load(Ordering::Acquire) {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "certificates and configuration not loaded yet",
        )
    } else if state.runtime_classes.pending() {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the first list of RuntimeClasses has not completed (see the log for why)",
        )
    } else if state.nodes.pending() {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the first list of nodes has not completed (see the log for why)",
        )
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            "ok\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(_) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        ),
    }
}

// The whole request, not the `HeaderMap` and `RawQuery` extractors: those copy the headers and
// the query out of the request, and the review only reads them.
async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    answer_review(&state, Endpoint::Mutate, request).await
}

async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    answer_review(&state, Endpoint::Validate, request).await
}

/// A review that ends before the engine could answer it: its HTTP status and message.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Whether a Content-Type header says JSON (`application/json`, parameters such as
/// `charset=utf-8` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body, at most [`MAX_BODY_BYTES`] of it, held against the global body budget
/// (`ticket`, see [`super::load`]; 429 when it is spent). A larger body is read on to its end (and
/// thrown away but for its first [`HEAD_BYTES`], up to [`DRAIN_LIMIT_BYTES`]) and comes back as
/// [`Body::Oversized`]: an HTTP/1.1 client that is still sending when the server answers and
/// closes sees a broken pipe instead of the answer.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    budget: &Budget,
    ticket: &mut Ticket,
) -> Result<ReadBody, Refusal> {
    if !is_json(headers) {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (an admission.k8s.io/v1 AdmissionReview)",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body still arriving after the budget (at least a few seconds) is not worth waiting for.
    let wait = budget
        .remaining()
        .max(std::time::Duration::from_secs(5))
        .min(MAX_BUDGET);
    let oversized = declared.is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let capacity = match declared {
        _ if oversized => HEAD_BYTES,
        Some(n) => n as usize,
        None => 64 * 1024,
    };
    if !ticket.reserve(capacity) {
        return Err(busy());
    }
    let stop_after = if declared.is_some_and(|n| n > DRAIN_LIMIT_BYTES as u64) {
        HEAD_BYTES
    } else {
        DRAIN_LIMIT_BYTES
    };
    match tokio::time::timeout(
        wait,
        collect_limited(body, capacity, oversized, stop_after, ticket),
    )
    .await
    {
        Ok(Ok(Collected::Body(bytes))) => Ok(ReadBody::Whole(bytes)),
        Ok(Ok(Collected::TooLarge { head, seen, whole })) => Ok(ReadBody::Oversized {
            head,
            size: if whole {
                Size::Exactly(seen)
            } else {
                Size::AtLeast(declared.map_or(seen, |n| n as usize).max(seen))
            },
        }),
        Ok(Ok(Collected::Busy)) => Err(busy()),
        Ok(Err(e)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
    }
}

/// A body as read: whole, or too large to decide.
enum ReadBody {
    Whole(Vec<u8>),
    /// Larger than [`MAX_BODY_BYTES`]: its first [`HEAD_BYTES`] and its size.
    Oversized {
        head: Vec<u8>,
        size: Size,
    },
}

/// The size of an oversized body: read to its end, or given up on.
#[derive(Clone, Copy)]
enum Size {
    Exactly(usize),
    AtLeast(usize),
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Exactly(n) => write!(f, "{n} bytes"),
            Size::AtLeast(n) => write!(f, "at least {n} bytes"),
        }
    }
}

/// The answer to a review refused for the global budget.
fn busy() -> Refusal {
    Refusal::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many reviews or request bytes in flight; retry shortly",
    )
}

/// What reading a body ended with.
enum Collected {
    Body(Vec<u8>),
    /// Larger than [`MAX_BODY_BYTES`]: the first [`HEAD_BYTES`], the bytes seen, and whether the
    /// body was read to its end (`false` past the drain limit).
    TooLarge {
        head: Vec<u8>,
        seen: usize,
        whole: bool,
    },
    /// The global body budget cannot hold it.
    Busy,
}

/// The body's bytes, each growth of the buffer reserved in `ticket` first (`capacity` already
/// is). Once `oversized` (declared, or found past [`MAX_BODY_BYTES`]) only the first [`HEAD_BYTES`] are kept, and reading stops after
/// `stop_after` bytes.
async fn collect_limited(
    mut body: Body,
    capacity: usize,
    mut oversized: bool,
    stop_after: usize,
    ticket: &mut Ticket,
) -> Result<Collected, axum::Error> {
    let mut bytes = Vec::with_capacity(capacity.min(MAX_BODY_BYTES));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > MAX_BODY_BYTES && !oversized {
            oversized = true;
            bytes.truncate(HEAD_BYTES);
            bytes.shrink_to_fit();
        }
        if oversized {
            let room = HEAD_BYTES.saturating_sub(bytes.len());
            bytes.extend_from_slice(&data[..room.min(data.len())]);
            if seen >= stop_after {
                return Ok(Collected::TooLarge {
                    head: bytes,
                    seen,
                    whole: false,
                });
            }
            continue;
        }
        if seen > bytes.capacity() {
            let target = seen.max(bytes.capacity() * 2).min(MAX_BODY_BYTES);
            if !ticket.reserve(target) {
                return Ok(Collected::Busy);
            }
            bytes.reserve_exact(target - bytes.len());
        }
        bytes.extend_from_slice(&data);
    }
    Ok(if oversized {
        Collected::TooLarge {
            head: bytes,
            seen,
            whole: true,
        }
    } else {
        Collected::Body(bytes)
    })
}

/// The `request.uid` of a review from the start of its body, without reading the rest: the keys
/// before it are skipped, and reading stops at the uid (the truncated remainder is never parsed).
/// `None` when the head holds no non-empty `request.uid` before it ends.
fn uid_in_head(head: &[u8]) -> Option<String> {
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    /// The review: skips to `request`.
    struct Review<'a>(&'a mut Option<String>);
    /// The request: skips to `uid`, keeps it, and stops the parse.
    struct Request<'a>(&'a mut Option<String>);

    impl<'de> DeserializeSeed<'de> for Review<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Review<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an AdmissionReview")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "request" {
                    return map.next_value_seed(Request(self.0));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Request<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Request<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an AdmissionRequest")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "uid" {
                    *self.0 = Some(map.next_value::<String>()?);
                    // The rest of the head may be cut anywhere: not read.
                    return Err(de::Error::custom("uid found"));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(head);
    let _ = Review(&mut found).deserialize(&mut de);
    found.filter(|uid| !uid.is_empty())
}

async fn answer_review(state: &AppState, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let start = Instant::now();
    let _in_flight = state.metrics.in_flight();
    let budget = Budget::from_query(start, parts.uri.query());
    // Held until the answer is built: the body, and what is decoded from it, stay in memory.
    let Some(mut ticket) = state.load.admit() else {
        return refuse(state, endpoint, &budget, busy());
    };
    let bytes = match read_body(headers, body, &budget, &mut ticket).await {
        Ok(ReadBody::Whole(bytes)) => bytes,
        Ok(ReadBody::Oversized { head, size }) => {
            return deny_oversized(state, endpoint, &budget, &head, size);
        }
        Err(refusal) => return refuse(state, endpoint, &budget, refusal),
    };
    let engine = state.engine.load_full();
    let handled = match review::decode(&bytes) {
        Ok(decoded) => {
            // Lookups first (behaviour.md §3 rule 6, §7), within the review's budget; then the engine,
            // which is pure and answers in well under a millisecond: called inline. A panic (a
            // bug) becomes a 500 for this request instead of a dropped connection.
            let runtime_classes = state.runtime_classes.current();
            let registry = lookups(
                state,
                &engine,
                &decoded,
                runtime_classes.as_deref(),
                &budget,
            )
            .await;
            // Held only while deciding (no await below): the Node watch waits for it.
            let nodes = state.nodes.read();
            let cluster = Facts {
                runtime_classes: runtime_classes.as_deref(),
                nodes: nodes.as_ref(),
                runtime_classes_pending: runtime_classes.is_none()
                    && state.runtime_classes.pending(),
                ..Facts::default()
            };
            let facts = inspect::with_registry(cluster, registry.as_ref());
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                review::answer(&engine, &decoded, endpoint, &facts)
            }))
        }
        Err(e) => Ok(Err(e)),
    };
    drop(engine);
    let reply = match handled {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            let status = match e {
                ReviewError::Malformed(_)
                | ReviewError::WrongType { .. }
                | ReviewError::MissingRequest
                | ReviewError::MissingUid
                | ReviewError::Engine(_) => StatusCode::BAD_REQUEST,
                ReviewError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return refuse(
                state,
                endpoint,
                &budget,
                Refusal::new(status, e.to_string()),
            );
        }
        Err(_) => {
            return refuse(
                state,
                endpoint,
                &budget,
                Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error while deciding; see the webhook's log",
                ),
            );
        }
    };
    let elapsed = start.elapsed();
    let s = &reply.summary;
    let operation = operation_str(&s.operation);
    let failed = reply.decision.failed_rule();
    let counted = match failed {
        Some(rule) => Counted::Denied(rule),
        None => Counted::Decided(s.outcome),
    };
    state
        .metrics
        .review(endpoint, &s.kind, operation, counted, elapsed.as_secs_f64());
    if budget.is_spent() {
        state.metrics.over_budget(endpoint);
        warn!(uid = %s.uid, budget_ms = budget.total.as_millis() as u64,
            "answered after the apiserver's time budget ran out");
    }
    // Strings as `&str`, not `%` (Display): the JSON log line then writes them without going
    // through `fmt` (docs/performance.md).
    info!(
        endpoint = endpoint.as_str(),
        uid = s.uid.as_str(),
        kind = s.kind.as_str(),
        namespace = s.namespace.as_str(),
        name = s.name.as_str(),
        operation,
        outcome = s.outcome.as_str(),
        allowed = reply.decision.allowed,
        rule = failed.map(RuleId::as_str),
        patch_ops = reply.decision.patch.len(),
        duration_us = elapsed.as_micros() as u64,
        budget_ms = budget.total.as_millis() as u64,
        "admission review"
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        reply.body,
    )
        .into_response()
}

/// A review too large to decide (issue 28, item 1): denied, with a message naming the limit, so
/// that no `failurePolicy: Ignore` turns it into an admission. Without a uid in its first
/// [`HEAD_BYTES`] it is no review an apiserver sends, and is refused with 413.
fn deny_oversized(
    state: &AppState,
    endpoint: Endpoint,
    budget: &Budget,
    head: &[u8],
    size: Size,
) -> Response {
    let Some(uid) = uid_in_head(head) else {
        return refuse(
            state,
            endpoint,
            budget,
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body of {size}, larger than {MAX_BODY_BYTES} bytes, and no request.uid in its first {HEAD_BYTES} bytes"
                ),
            ),
        );
    };
    let message = format!(
        "wasm-admission: denied: the AdmissionReview is {size}, larger than the {MAX_BODY_BYTES} bytes \
         (24 MiB) this webhook decides; no object that etcd can store makes a review this large"
    );
    let decision = crate::core::engine::Decision {
        allowed: false,
        message: Some(message.clone()),
        rules: vec![RuleResult::new(
            RuleId::ReviewTooLarge,
            Status::Fail,
            message.clone(),
        )],
        ..Default::default()
    };
    let body = match review::encode(&uid, &decision) {
        Ok(body) => body,
        Err(e) => {
            return refuse(
                state,
                endpoint,
                budget,
                Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            );
        }
    };
    let elapsed = budget.start.elapsed();
    state.metrics.review(
        endpoint,
        "",
        "",
        Counted::Denied(RuleId::ReviewTooLarge),
        elapsed.as_secs_f64(),
    );
    warn!(
        endpoint = endpoint.as_str(),
        uid = uid.as_str(),
        rule = RuleId::ReviewTooLarge.as_str(),
        size = %size,
        limit = MAX_BODY_BYTES as u64,
        outcome = "denied",
        duration_us = elapsed.as_micros() as u64,
        "admission review too large to decide: denied"
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Registry lookups for the images the engine will ask about, when `detection.registry` is
/// enabled: all at once, within what the apiserver's budget leaves (see
/// [`registry::review_budget`]), at most [`MAX_IMAGES_PER_REVIEW`] of them. `None` when there is
/// nothing to look up.
async fn lookups(
    state: &AppState,
    engine: &Engine,
    decoded: &review::Decoded<'_>,
    runtime_classes: Option<&ClusterRuntimeClasses>,
    budget: &Budget,
) -> Option<RegistryFacts> {
    let inspector = state
        .registry
        .for_settings(&engine.config().detection.registry)?;
    let mut lookups = Lookups::new();
    lookups.add(engine, &decoded.request(), runtime_classes);
    let wait = registry::review_budget(
        budget.remaining(),
        budget.total,
        inspector.settings().timeout,
    );
    lookups.inspect(&inspector, wait, Some(IMAGE_CAP)).await
}

/// The most images one review inspects in registries (issue 23, finding 5: one pod with 60
/// images on a registry sending 4 MiB answers slowly held 250 MB). The rest are "unknown".
pub const MAX_IMAGES_PER_REVIEW: usize = 32;

const IMAGE_CAP: Cap = Cap {
    images: MAX_IMAGES_PER_REVIEW,
    reason: "not inspected: more than 32 images in one review",
};

/// Counts, logs and answers a review that could not be decided.
fn refuse(state: &AppState, endpoint: Endpoint, budget: &Budget, refusal: Refusal) -> Response {
    let elapsed = budget.start.elapsed();
    state
        .metrics
        .review(endpoint, "", "", Counted::Error, elapsed.as_secs_f64());
    if refusal.status.is_server_error() {
        error!(endpoint = endpoint.as_str(), status = refusal.status.as_u16(),
            error = %refusal.message, duration_us = elapsed.as_micros() as u64,
            "admission review failed");
    } else {
        warn!(endpoint = endpoint.as_str(), status = refusal.status.as_u16(),
            error = %refusal.message, duration_us = elapsed.as_micros() as u64,
            "admission review refused");
    }
    let mut response = json_error(refusal.status, refusal.message);
    if refusal.status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(load::RETRY_AFTER_SECONDS),
        );
    }
    response
}

fn operation_str(operation: &kube_core::admission::Operation) -> &'static str {
    use kube_core::admission::Operation;
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            h
        };
        assert!(is_json(&with("application/json")));
        assert!(is_json(&with("application/json; charset=utf-8")));
        assert!(is_json(&with("Application/JSON")));
        assert!(!is_json(&with("text/plain")));
        assert!(!is_json(&with("application/jsonx")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
