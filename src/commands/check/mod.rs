//! `wasm-admission check`: the CI door onto the engine. Each manifest is decided exactly as
//! `serve` decides a CREATE of it ([`crate::adapters::report::check_document`], after the registry
//! lookups of [`crate::adapters::inspect`] with `--registry`), and reported
//! ([`crate::adapters::report::ReportWriter`]).

mod classes;
mod input;
mod yaml_limits;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::adapters::inspect::{self, Lookups};
use crate::adapters::registry::{Inspector, RegistryFacts};
use crate::adapters::report::{self, KeepObject, Source, check_document};
use crate::core::config::Config;
use crate::core::engine::{Engine, Facts};

pub use crate::adapters::report::{
    Checked, Evaluated, OutputFormat, ReportWriter, Tally, create_request, evaluate, exit_code,
    printable,
};
pub use input::{Document, parse_source, read_all};

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
    let facts = inspect::with_registry(
        Facts {
            runtime_classes: known.runtime_classes.as_ref(),
            nodes: known.nodes.as_ref(),
            ..Facts::default()
        },
        registry.as_ref(),
    );
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
    let mut lookups = Lookups::new();
    for doc in documents {
        if let Ok(object) = &doc.content {
            report::add_lookups(&mut lookups, engine, object, default_namespace);
        }
    }
    if lookups.is_empty() {
        return Ok(RegistryFacts::default());
    }
    let settings = engine.config().detection.registry.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot create the async runtime: {e}"))?;
    Ok(runtime
        .block_on(async {
            let inspector = Inspector::new(&settings);
            lookups.inspect(&inspector, settings.timeout, None).await
        })
        .unwrap_or_default())
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
            let source = Source {
                source: doc.source,
                index: doc.index,
                content: doc.content,
            };
            check_document(engine, facts, source, default_namespace, KeepObject::Yes)
        })
        .collect()
}
