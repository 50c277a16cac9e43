//! `wasm-admission check`: the CI door onto the engine. Each manifest is decided exactly as
//! `serve` decides a CREATE of it, and reported.

mod classes;
mod input;
mod report;
mod yaml_limits;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kube_core::admission::Operation;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::adapters::registry::{Inspector, RegistryFacts};
use crate::core::config::Config;
use crate::core::detection::ImageClassifier;
use crate::core::engine::{
    ApiKind, Decision, Endpoint, Engine, EngineError, Facts, ObjectInput, Outcome, Request,
};
use crate::core::kinds::split_api_version;

pub use input::{Document, parse_source, read_all};
pub use report::{ReportWriter, Tally, printable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
    Junit,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Files or folders of YAML/JSON manifests; `-` reads standard input.
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Configuration file (behaviour.md §8).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Namespace for objects that name none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Inspect images in their registries (behaviour.md §3 rule 6), with the `detection.registry`
    /// settings of --config, whatever its `enabled` says. Off by default so CI runs stay offline.
    #[arg(long)]
    pub registry: bool,
    /// Also read the cluster's RuntimeClasses and Node labels (kubeconfig or in-cluster account,
    /// as `audit`), so that classes known by their handler and the node warning agree with `serve`.
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: seconds the cluster read may take in all (connecting: at most 10 of them).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
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

pub fn run(args: CheckArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => crate::adapters::config_file::read(path),
        None => Ok(Config::default()),
    };
    let engine = match config.and_then(Engine::new) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("wasm-admission check: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = &engine.config().detection.registry;
    if settings.enabled && !args.registry {
        eprintln!(
            "wasm-admission check: detection.registry.enabled is set, but check stays offline \
             unless --registry is given; images are not inspected"
        );
    }
    let documents = read_all(&args.paths);
    let registry = if args.registry {
        match inspect_documents(&engine, &documents, &args.namespace) {
            Ok(facts) => Some(facts),
            Err(e) => {
                eprintln!("wasm-admission check: --registry: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let cluster = args.cluster.then(|| Duration::from_secs(args.timeout));
    let known = match classes::gather(engine.config(), &documents, cluster) {
        Ok(known) => known,
        Err(e) => {
            eprintln!(
                "wasm-admission check: --cluster: {}",
                printable(&e.to_string())
            );
            return ExitCode::from(2);
        }
    };
    let facts = Facts {
        registry: registry.as_ref().map(|r| r as &dyn ImageClassifier),
        runtime_classes: known.runtime_classes.as_ref(),
        nodes: known.nodes.as_ref(),
        runtime_classes_pending: false,
    };
    let results = check_documents(&engine, &facts, documents, &args.namespace);
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = report::write(&mut stdout, args.output, &results) {
        eprintln!("wasm-admission check: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    if args.output == OutputFormat::Yaml {
        for r in &results {
            if r.result
                .as_ref()
                .is_ok_and(|ev| ev.object.as_ref().is_some_and(report::is_admission_review))
            {
                eprintln!(
                    "{}: document {}: an AdmissionReview (a request to a webhook, not a manifest) is left out of the YAML output",
                    r.source, r.index
                );
            }
        }
    }
    if args.output != OutputFormat::Text {
        // Errors also go to standard error, where a CI log shows them beside the report.
        for r in &results {
            if let Err(e) = &r.result {
                eprintln!("{}: document {}: {e}", r.source, r.index);
            }
        }
    }
    if results.is_empty() {
        eprintln!(
            "wasm-admission check: no Kubernetes object found in {}",
            args.paths.join(", ")
        );
    }
    ExitCode::from(exit_code(&results))
}

/// `check --registry`: looks up, all at once, every image that the engine will ask about in
/// these documents, with the `detection.registry` settings of the configuration (whatever its
/// `enabled` says). The whole run's lookups share one `timeout`; an image not answered by then
/// is "not Wasm" with a warning, as in `serve`.
pub fn inspect_documents(
    engine: &Engine,
    documents: &[Document],
    default_namespace: &str,
) -> Result<RegistryFacts, String> {
    let mut images: Vec<String> = Vec::new();
    for doc in documents {
        if let Ok(object) = &doc.content {
            let namespace = namespace_of(object, default_namespace);
            if let Ok(raw) = raw_object(object) {
                images.extend(
                    engine.registry_images(&create_request(object, &raw, &namespace), None),
                );
            }
        }
    }
    if images.is_empty() {
        return Ok(RegistryFacts::default());
    }
    let settings = engine.config().detection.registry.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot create the async runtime: {e}"))?;
    Ok(runtime.block_on(async {
        let inspector = Inspector::new(&settings);
        inspector
            .inspect(images.iter().map(String::as_str), settings.timeout)
            .await
    }))
}

/// The namespace a manifest's object goes to: its own, else the default.
fn namespace_of(object: &Value, default_namespace: &str) -> String {
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

/// Decides on every document.
pub fn check_documents(
    engine: &Engine,
    facts: &Facts<'_>,
    documents: Vec<Document>,
    default_namespace: &str,
) -> Vec<Checked> {
    documents
        .into_iter()
        .map(|doc| check_document(engine, facts, doc, default_namespace, KeepObject::Yes))
        .collect()
}

/// Decides on one document; the object given is dropped here, and only its mutated copy is
/// kept, when `keep` says so.
pub fn check_document(
    engine: &Engine,
    facts: &Facts<'_>,
    doc: Document,
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
fn raw_object(object: &Value) -> Result<Box<RawValue>, EngineError> {
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
