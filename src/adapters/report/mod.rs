//! What `check` and `audit` report (behaviour.md §7, §11): one object decided as `serve` decides a
//! CREATE of it ([`check_document`]), and the four report formats, written one object at a time
//! ([`ReportWriter`]). Both doors call these; neither imports the other.

mod writer;

use clap::ValueEnum;
use kube_core::admission::Operation;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::core::engine::{
    ApiKind, Decision, Endpoint, Engine, EngineError, Facts, ObjectInput, Outcome, Request,
};
use crate::core::kinds::split_api_version;

pub use writer::{ReportWriter, Tally, is_admission_review, printable, write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
    Junit,
}

/// The result for one object.
#[derive(Debug)]
pub struct Checked {
    pub source: String,
    pub index: usize,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub result: Result<Evaluated, String>,
}

#[derive(Debug)]
pub struct Evaluated {
    pub decision: Decision,
    /// The decision's patch as typed operations, for the report.
    pub operations: json_patch::Patch,
    /// The object with the patch applied (the object as given when denied or unchanged); `None`
    /// when the report does not show it ([`KeepObject::No`]: `audit`'s text, JUnit and
    /// PolicyReport output), so a decided object is not held twice.
    pub object: Option<Value>,
}

impl Checked {
    pub fn outcome(&self) -> Option<Outcome> {
        self.result.as_ref().ok().map(|e| e.decision.outcome())
    }
}

/// Exit codes of behaviour.md §7; no object read at all is an error too (a wrong path or an
/// empty folder must not pass CI).
pub fn exit_code(results: &[Checked]) -> u8 {
    if results.is_empty() || results.iter().any(|r| r.result.is_err()) {
        2
    } else if results.iter().any(|r| r.outcome() == Some(Outcome::Denied)) {
        1
    } else {
        0
    }
}

/// The namespace a manifest's object goes to: its own, else the default.
pub fn namespace_of(object: &Value, default_namespace: &str) -> String {
    object
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(default_namespace)
        .to_string()
}

/// Whether a [`Checked`] keeps the object as it would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepObject {
    Yes,
    No,
}

/// One document to decide: where it came from, and its object (or why it could not be read).
#[derive(Debug)]
pub struct Source {
    pub source: String,
    pub index: usize,
    pub content: Result<Value, String>,
}

/// Decides on one document; the object given is dropped here, and only its mutated copy is
/// kept, when `keep` says so.
pub fn check_document(
    engine: &Engine,
    facts: &Facts<'_>,
    doc: Source,
    default_namespace: &str,
    keep: KeepObject,
) -> Checked {
    let object = match doc.content {
        Ok(object) => object,
        Err(e) => {
            return Checked {
                source: doc.source,
                index: doc.index,
                kind: String::new(),
                namespace: String::new(),
                name: String::new(),
                result: Err(e),
            };
        }
    };
    let meta = |f: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let namespace = namespace_of(&object, default_namespace);
    let name = meta("name")
        .or_else(|| meta("generateName"))
        .unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let result = evaluate(engine, facts, &object, &namespace)
        .map_err(|e| e.to_string())
        .and_then(|decision| {
            let (operations, object) = apply(object, &decision, keep)?;
            Ok(Evaluated {
                decision,
                operations,
                object,
            })
        });
    Checked {
        source: doc.source,
        index: doc.index,
        kind,
        namespace,
        name,
        result,
    }
}

/// Decides on a manifest as `serve` would on a CREATE of it.
pub fn evaluate(
    engine: &Engine,
    facts: &Facts<'_>,
    object: &Value,
    namespace: &str,
) -> Result<Decision, EngineError> {
    let raw = raw_object(object)?;
    engine.decide(
        &create_request(object, &raw, namespace),
        Endpoint::Mutate,
        facts,
    )
}

/// The object as the JSON `serve` would receive, which is what the engine reads.
pub fn raw_object(object: &Value) -> Result<Box<RawValue>, EngineError> {
    serde_json::value::to_raw_value(object).map_err(|e| EngineError::InvalidObject {
        kind: object["kind"].as_str().unwrap_or_default().to_string(),
        message: e.to_string(),
    })
}

/// The request `serve` would receive for a CREATE of this manifest (`raw` is `object` as JSON).
pub fn create_request<'a>(object: &'a Value, raw: &'a RawValue, namespace: &'a str) -> Request<'a> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = split_api_version(api_version);
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Request {
        kind: ApiKind {
            group,
            version,
            kind: object["kind"].as_str().unwrap_or_default(),
        },
        sub_resource: None,
        operation: Operation::Create,
        namespace,
        name,
        object: Some(ObjectInput::Raw(raw)),
        old_object: None,
        username: None,
    }
}

/// Adds the images the engine will ask about for a CREATE of `object` to `lookups`.
pub fn add_lookups(
    lookups: &mut crate::adapters::inspect::Lookups,
    engine: &Engine,
    object: &Value,
    default_namespace: &str,
) {
    let namespace = namespace_of(object, default_namespace);
    if let Ok(raw) = raw_object(object) {
        lookups.add(engine, &create_request(object, &raw, &namespace), None);
    }
}

/// The decision's operations, and the object with them applied (when `keep` says so).
fn apply(
    object: Value,
    decision: &Decision,
    keep: KeepObject,
) -> Result<(json_patch::Patch, Option<Value>), String> {
    let internal = |e: &dyn std::fmt::Display| {
        format!("internal error: the patch does not apply ({e}); please report this")
    };
    let operations = decision.patch.operations().map_err(|e| internal(&e))?;
    if keep == KeepObject::No {
        return Ok((operations, None));
    }
    let mut out = object;
    json_patch::patch(&mut out, &operations).map_err(|e| internal(&e))?;
    Ok((operations, Some(out)))
}
