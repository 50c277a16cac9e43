//! AdmissionReview bytes in, AdmissionReview bytes out: the part of the `serve` door that knows
//! the wire format. The decision itself is [`Engine::decide`]'s.
//!
//! The request is read into a struct of our own rather than kube's `AdmissionReview<DynamicObject>`:
//! that builds a `serde_json::Value` of the whole object, several times the cost of reading only
//! the fields the rules need into the engine's lean model in the same pass (see [`decode`] and
//! `benches/load/`). The patch keeps every field the model does not read, since it only adds
//! and replaces what the rules change.
//! The response carries kube's `Status`; see [`encode`] for why the envelope is our own.

use std::collections::BTreeMap;

use kube_core::admission::Operation;
use kube_core::response::{Status, StatusSummary};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::engine::{
    ApiKind, Decision, Endpoint, Engine, EngineError, Facts, ObjectInput, Outcome, Request,
};
use crate::core::model::{Meta, Object, Str};

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Why a body is not a review the webhook can answer; the server maps each to HTTP 400.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The message names the field at fault (`request.uid: invalid type: ...`) where it can.
    #[error("body is not a valid AdmissionReview: {0}")]
    Malformed(String),
    #[error(
        "expected apiVersion {API_VERSION} and kind {KIND}, got apiVersion {api_version:?} and kind {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has no uid")]
    MissingUid,
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The answer could not be serialized (a bug, not the client's fault).
    #[error("cannot encode the AdmissionReview response: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The decoding error for `body`, naming the field at fault: decoded a second time with the path
/// tracked, which costs nothing on the way of every valid review.
fn malformed(body: &[u8], error: serde_json::Error) -> ReviewError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, ReviewIn<'_, &RawValue>>(&mut de) {
        Err(located) if located.path().to_string() != "." => {
            let path = located.path().to_string();
            ReviewError::Malformed(format!("{path}: {}", located.into_inner()))
        }
        _ => ReviewError::Malformed(error.to_string()),
    }
}

/// Only what the webhook reads; everything else (`options`, most of `userInfo`, ...) is skipped unbuilt.
/// `O` is what `object` is read as: the engine's lean [`Object`] on the way of every review, or
/// raw JSON when that fails (see [`decode`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "'de: 'a, O: Deserialize<'de>"))]
struct ReviewIn<'a, O> {
    #[serde(default)]
    api_version: Str<'a>,
    #[serde(default)]
    kind: Str<'a>,
    request: Option<RequestIn<'a, O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "'de: 'a, O: Deserialize<'de>"))]
struct RequestIn<'a, O> {
    #[serde(default)]
    uid: Str<'a>,
    kind: KindIn<'a>,
    #[serde(default)]
    sub_resource: Option<Str<'a>>,
    #[serde(default)]
    name: Option<Str<'a>>,
    #[serde(default)]
    namespace: Option<Str<'a>>,
    operation: Operation,
    #[serde(default)]
    object: Option<O>,
    #[serde(default)]
    old_object: Option<&'a RawValue>,
    /// Only `username` is read (`security.exemptions.usernames`); groups and extra are skipped.
    #[serde(default)]
    user_info: Option<UserInfoIn<'a>>,
}

#[derive(Deserialize)]
struct UserInfoIn<'a> {
    #[serde(borrow, default)]
    username: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct KindIn<'a> {
    #[serde(borrow, default)]
    group: Str<'a>,
    #[serde(borrow)]
    version: Str<'a>,
    #[serde(borrow)]
    kind: Str<'a>,
}

/// What one review was about and how it ended, for the server's log line and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewSummary {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: Operation,
    pub outcome: Outcome,
}

/// A serialized AdmissionReview response and what it decided.
#[derive(Debug)]
pub struct ReviewReply {
    pub body: Vec<u8>,
    pub summary: ReviewSummary,
    pub decision: Decision,
}

/// A decoded AdmissionReview request, borrowed from the body, before the engine is asked: the
/// `serve` door reads the images to look up from it ([`Decoded::request`] and
/// `Engine::registry_images`), then answers.
pub struct Decoded<'a> {
    req: RequestIn<'a, ()>,
    object: Option<Input<'a>>,
}

/// The object of a decoded review. One per review, on the stack: boxing the large variant would
/// only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Input<'a> {
    /// Read into the engine's model in the same pass as the review.
    Parsed(Object<'a>),
    /// Kept as JSON: the model could not read it (see [`decode`]).
    Raw(&'a RawValue),
}

impl Decoded<'_> {
    /// What the engine reads of this review.
    pub fn request(&self) -> Request<'_> {
        let req = &self.req;
        Request {
            kind: ApiKind {
                group: &req.kind.group,
                version: &req.kind.version,
                kind: &req.kind.kind,
            },
            sub_resource: req.sub_resource.as_deref().filter(|s| !s.is_empty()),
            operation: req.operation.clone(),
            namespace: req.namespace.as_deref().unwrap_or(""),
            name: req.name.as_deref().unwrap_or(""),
            object: self.object.as_ref().map(|o| match o {
                Input::Parsed(object) => ObjectInput::Parsed(object),
                Input::Raw(raw) => ObjectInput::Raw(raw),
            }),
            old_object: req.old_object.filter(|v| v.get() != "null"),
            username: req.user_info.as_ref().and_then(|u| u.username.as_deref()),
        }
    }

    pub fn uid(&self) -> &str {
        &self.req.uid
    }
}

/// Decodes and checks an AdmissionReview body.
///
/// One pass reads the review and its `object` into the engine's lean model together. Should the
/// model refuse the object (a field of an unexpected type, perhaps in a kind the webhook does not
/// look at), the body is read again with `object` kept as raw JSON: the engine then decides
/// whether that object matters, and names the field at fault if it does.
pub fn decode(body: &[u8]) -> Result<Decoded<'_>, ReviewError> {
    // JSON is UTF-8: checked once for the whole body, so that serde_json does not check each
    // string again as it borrows it (`from_str` instead of `from_slice`).
    let text = std::str::from_utf8(body)
        .map_err(|e| ReviewError::Malformed(format!("the body is not UTF-8: {e}")))?;
    let (review, object) = match serde_json::from_str::<ReviewIn<'_, Object<'_>>>(text) {
        Ok(mut review) => {
            let object = review
                .request
                .as_mut()
                .and_then(|r| r.object.take())
                .map(Input::Parsed);
            (review.map_object(), object)
        }
        Err(_) => {
            let mut review = serde_json::from_str::<ReviewIn<'_, &RawValue>>(text)
                .map_err(|e| malformed(body, e))?;
            let object = review
                .request
                .as_mut()
                .and_then(|r| r.object.take())
                .filter(|v| v.get() != "null")
                .map(Input::Raw);
            (review.map_object(), object)
        }
    };
    if *review.api_version != *API_VERSION || *review.kind != *KIND {
        return Err(ReviewError::WrongType {
            api_version: review.api_version.to_string(),
            kind: review.kind.to_string(),
        });
    }
    let req = review.request.ok_or(ReviewError::MissingRequest)?;
    if req.uid.is_empty() {
        return Err(ReviewError::MissingUid);
    }
    Ok(Decoded { req, object })
}

impl<'a, O> ReviewIn<'a, O> {
    /// The review without its object (taken out beforehand).
    fn map_object(self) -> ReviewIn<'a, ()> {
        ReviewIn {
            api_version: self.api_version,
            kind: self.kind,
            request: self.request.map(|r| RequestIn {
                uid: r.uid,
                kind: r.kind,
                sub_resource: r.sub_resource,
                name: r.name,
                namespace: r.namespace,
                operation: r.operation,
                object: None,
                old_object: r.old_object,
                user_info: r.user_info,
            }),
        }
    }
}

/// Asks the engine about a decoded review and encodes the answer.
// Kept out of line (one call per review) so that `--callgrind` in benches/load/ can still
// count the engine and response apart from the rest under the release profile's LTO.
#[inline(never)]
pub fn answer(
    engine: &Engine,
    decoded: &Decoded<'_>,
    endpoint: Endpoint,
    facts: &Facts<'_>,
) -> Result<ReviewReply, ReviewError> {
    let req = &decoded.req;
    let request = decoded.request();
    let decision = engine.decide(&request, endpoint, facts)?;
    let body = encode(&req.uid, &decision)?;
    let name = match request.name {
        "" => object_name(request.object),
        name => name.to_string(),
    };
    let summary = ReviewSummary {
        uid: req.uid.to_string(),
        kind: req.kind.kind.to_string(),
        namespace: request.namespace.to_string(),
        name,
        operation: req.operation.clone(),
        outcome: decision.outcome(),
    };
    Ok(ReviewReply {
        body,
        summary,
        decision,
    })
}

/// Decodes a review, asks the engine, and encodes the answer.
pub fn handle(
    engine: &Engine,
    body: &[u8],
    endpoint: Endpoint,
    facts: &Facts<'_>,
) -> Result<ReviewReply, ReviewError> {
    answer(engine, &decode(body)?, endpoint, facts)
}

/// The AdmissionReview response, written by hand rather than through kube's `AdmissionResponse`:
/// kube-core serializes its `patch: Vec<u8>` as a JSON array of numbers, which Go's decoder
/// accepts but which is three to four times larger than the base64 string the API documents.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// The AdmissionReview response for a decision.
pub fn encode(uid: &str, decision: &Decision) -> Result<Vec<u8>, serde_json::Error> {
    let status = match &decision.message {
        Some(message) if !decision.allowed => Some(Status {
            status: Some(StatusSummary::Failure),
            code: 403,
            message: message.clone(),
            reason: "Forbidden".into(),
            ..Status::default()
        }),
        _ => None,
    };
    let patch = decision.patch.as_json().as_bytes();
    let b64 = base64_simd::STANDARD;
    let patch_len = if decision.patch.is_empty() {
        0
    } else {
        b64.encoded_length(patch.len())
    };
    // One allocation: the envelope of an allowed review is under 512 bytes before its
    // annotations, warnings and patch.
    let mut out = Vec::with_capacity(512 + patch_len);
    serde_json::to_writer(
        &mut out,
        &ReviewOut {
            api_version: API_VERSION,
            kind: KIND,
            response: ResponseOut {
                uid,
                allowed: decision.allowed,
                status,
                audit_annotations: &decision.audit_annotations,
                warnings: &decision.warnings,
            },
        },
    )?;
    if patch_len > 0 {
        // `patchType` and the base64 `patch` are appended by hand: the base64 alphabet needs no
        // JSON escaping, and having the serializer scan tens of KiB of it for escapes costs as
        // much as building the patch. The compact envelope always ends with `}}` (response,
        // review); the two fields go just before. base64-simd rather than the `base64` crate's
        // scalar encoder: a third of the instructions of the answer's encoding went there
        // (benches/load/ `--callgrind`).
        let envelope_end = out.len().saturating_sub(2);
        debug_assert_eq!(&out[envelope_end..], b"}}");
        out.truncate(envelope_end);
        out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
        let start = out.len();
        out.resize(start + patch_len, 0);
        let written = b64
            .encode(patch, base64_simd::Out::from_slice(&mut out[start..]))
            .len();
        out.truncate(start + written);
        out.extend_from_slice(br#""}}"#);
    }
    Ok(out)
}

/// The name, else the `generateName`, of an object created with an empty request name, for the
/// log line. From raw JSON only `metadata` is read; the rest of the object is skipped unbuilt.
fn object_name(object: Option<ObjectInput<'_>>) -> String {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow, default)]
        metadata: Option<Meta<'a>>,
    }
    let name = |meta: Option<&Meta<'_>>| {
        meta.map(Meta::name_or_generate_name)
            .unwrap_or_default()
            .to_string()
    };
    match object {
        Some(ObjectInput::Parsed(object)) => name(object.metadata.as_ref()),
        Some(ObjectInput::Raw(raw)) => {
            let parsed = serde_json::from_str::<Named<'_>>(raw.get()).ok();
            name(parsed.as_ref().and_then(|o| o.metadata.as_ref()))
        }
        None => String::new(),
    }
}
