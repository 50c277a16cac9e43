//! `wasm-admission check`: the CI door onto the engine. Each manifest is decided exactly as
//! `serve` decides a CREATE of it, and reported.

mod input;
mod report;

use std::process::ExitCode;

use kube_core::admission::Operation;
use serde_json::Value;

use crate::cli::{CheckArgs, OutputFormat};
use crate::config::Config;
use crate::engine::{ApiKind, Decision, Endpoint, Engine, EngineError, Facts, Outcome, Request};
use crate::kinds::split_api_version;

pub use input::{Document, parse_source, read_all};

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
    /// The object with the patch applied (the object as given when denied or unchanged).
    pub object: Value,
}

impl Checked {
    pub fn outcome(&self) -> Option<Outcome> {
        self.result.as_ref().ok().map(|e| e.decision.outcome())
    }
}

/// Exit codes of SPEC §7.
pub fn exit_code(results: &[Checked]) -> u8 {
    if results.iter().any(|r| r.result.is_err()) {
        2
    } else if results.iter().any(|r| r.outcome() == Some(Outcome::Denied)) {
        1
    } else {
        0
    }
}

pub fn run(args: CheckArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => Config::from_file(path),
        None => Ok(Config::default()),
    };
    let engine = match config.and_then(Engine::new) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("wasm-admission check: {e}");
            return ExitCode::from(2);
        }
    };
    if args.registry {
        eprintln!(
            "wasm-admission check: --registry: registry inspection is not available in this build"
        );
        return ExitCode::from(2);
    }
    let documents = read_all(&args.paths);
    let results = check_documents(&engine, &Facts::default(), documents, &args.namespace);
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = report::write(&mut stdout, args.output, &results) {
        eprintln!("wasm-admission check: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    if args.output != OutputFormat::Text {
        // Errors also go to standard error, where a CI log shows them beside the report.
        for r in &results {
            if let Err(e) = &r.result {
                eprintln!("{}: document {}: {e}", r.source, r.index);
            }
        }
    }
    ExitCode::from(exit_code(&results))
}

/// Decides on every document.
pub fn check_documents(
    engine: &Engine,
    facts: &Facts<'_>,
    documents: Vec<Document>,
    default_namespace: &str,
) -> Vec<Checked> {
    documents
        .into_iter()
        .map(|doc| {
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
            let namespace = meta("namespace").unwrap_or_else(|| default_namespace.to_string());
            let name = meta("name")
                .or_else(|| meta("generateName"))
                .unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let result = evaluate(engine, facts, &object, &namespace)
                .map(|decision| {
                    let mutated = apply(&object, &decision);
                    (decision, mutated)
                })
                .map_err(|e| e.to_string())
                .and_then(|(decision, mutated)| {
                    Ok(Evaluated {
                        decision,
                        object: mutated?,
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
        })
        .collect()
}

/// The request `serve` would receive for a CREATE of this manifest.
pub fn evaluate(
    engine: &Engine,
    facts: &Facts<'_>,
    object: &Value,
    namespace: &str,
) -> Result<Decision, EngineError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = split_api_version(api_version);
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The engine reads the object as the JSON `serve` would receive.
    let raw = serde_json::value::to_raw_value(object).map_err(|e| EngineError::InvalidObject {
        kind: object["kind"].as_str().unwrap_or_default().to_string(),
        message: e.to_string(),
    })?;
    let request = Request {
        kind: ApiKind {
            group,
            version,
            kind: object["kind"].as_str().unwrap_or_default(),
        },
        sub_resource: None,
        operation: Operation::Create,
        namespace,
        name,
        object: Some(&raw),
        old_object: None,
    };
    engine.decide(&request, Endpoint::Mutate, facts)
}

fn apply(object: &Value, decision: &Decision) -> Result<Value, String> {
    let mut out = object.clone();
    json_patch::patch(&mut out, &decision.patch).map_err(|e| {
        format!("internal error: the patch does not apply ({e}); please report this")
    })?;
    Ok(out)
}
