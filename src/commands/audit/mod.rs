//! `wasm-admission audit` (behaviour.md §11): the cluster door onto the engine. Every object of the
//! seven kinds that exists now is decided exactly as `check` decides a manifest (a CREATE of it,
//! with the same facts: the configuration, and registry inspection when it is enabled; no
//! cluster RuntimeClasses or nodes, so the answer equals `check`'s on the same manifest), and
//! reported with the report code `check` uses too ([`crate::adapters::report`]), or as
//! PolicyReports. Registry lookups take the doors' one inspect-then-decide step
//! ([`crate::adapters::inspect`]), one page at a time.
//!
//! The cluster is read one page at a time (`--page-size`, default 500, at most `--page-bytes`);
//! each page is decided, reported and dropped before the next is fetched. Within a page, objects
//! are decoded from the answer's bytes one at a time, decided, reported and dropped: memory is
//! the page's bytes plus one object, whatever the number of objects or pages. Only `-o json`
//! keeps the object as it would be admitted (it is printed); text, JUnit and PolicyReport output
//! keep the verdict, message, warnings and rule.

mod policy_report;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::adapters::cluster_objects::{self, Deadline, Listing, Page, Pages, Timeouts};
use crate::adapters::inspect::{self, Lookups};
use crate::adapters::registry::{Inspector, RegistryFacts};
use crate::adapters::report::{
    self, KeepObject, OutputFormat, ReportWriter, Source, Tally, printable,
};
use crate::core::config::Config;
use crate::core::engine::{Engine, Facts};
use crate::core::kinds::WorkloadKind;

use policy_report::PolicyReports;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Junit,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport per namespace and a ClusterPolicyReport, as YAML.
    Policyreport,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Configuration file (behaviour.md §8), as `serve` and `check` read it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Audit this namespace only; all namespaces otherwise.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: AuditFormat,
    /// With `-o policyreport`: server-side apply the reports to the cluster instead of printing
    /// them (the exit code then says only whether they were written).
    #[arg(long)]
    pub apply: bool,
    /// Objects per list request (`limit`); one page is held in memory at a time.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub page_size: u32,
    /// Seconds each request to the API server may take (connecting: at most 10 of them).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Seconds the whole run may take, every request and the reading of every answer included
    /// (an answer trickled a byte at a time ends here); exit 2 past it.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub deadline: u64,
    /// Bytes of one list answer read at most; a page past it is asked for again with fewer
    /// objects, and a single object past it is reported by name and skipped (exit 2).
    #[arg(long, default_value_t = cluster_objects::DEFAULT_PAGE_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(65536..=1073741824))]
    pub page_bytes: u64,
}

/// The source name of every audited object in the reports (`check` names the file).
const SOURCE: &str = "cluster";

pub fn run(args: AuditArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => crate::adapters::config_file::read(path),
        None => Ok(Config::default()),
    };
    let engine = match config.and_then(Engine::new) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("wasm-admission audit: {e}");
            return ExitCode::from(2);
        }
    };
    if args.apply && args.output != AuditFormat::Policyreport {
        eprintln!(
            "wasm-admission audit: --apply writes PolicyReports; use it with -o policyreport"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasm-admission audit: cannot create the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(runtime.block_on(audit(&engine, &args)))
}

/// Where the decided objects go: `check`'s report writer, or the PolicyReports being built.
enum Sink<'w> {
    Report(ReportWriter<'w>),
    PolicyReports(PolicyReports),
}

async fn audit(engine: &Engine, args: &AuditArgs) -> u8 {
    let timeout = Duration::from_secs(args.timeout);
    let timeouts = Timeouts {
        connect: timeout.min(Duration::from_secs(10)),
        read: timeout,
    };
    let deadline = Deadline::after(Duration::from_secs(args.deadline));
    let listing = Listing {
        timeouts,
        deadline,
        page_size: args.page_size,
        page_bytes: usize::try_from(args.page_bytes).unwrap_or(usize::MAX),
    };
    let (client, server) = match cluster_objects::client(timeouts).await {
        Ok(found) => found,
        Err(e) => {
            eprintln!("wasm-admission audit: {}", printable(&e.to_string()));
            return 2;
        }
    };
    let settings = engine.config().detection.registry.clone();
    let inspector = settings.enabled.then(|| Inspector::new(&settings));

    let mut stdout = std::io::stdout().lock();
    let mut sink = match args.output {
        AuditFormat::Policyreport => {
            Sink::PolicyReports(PolicyReports::new(args.namespace.is_none()))
        }
        other => {
            let format = match other {
                AuditFormat::Json => OutputFormat::Json,
                AuditFormat::Junit => OutputFormat::Junit,
                _ => OutputFormat::Text,
            };
            match ReportWriter::new(&mut stdout, format, "wasm-admission audit") {
                Ok(w) => Sink::Report(w),
                Err(e) => {
                    eprintln!("wasm-admission audit: cannot write the report: {e}");
                    return 2;
                }
            }
        }
    };

    // Only JSON output shows the object as it would be admitted; the other formats keep no copy.
    let keep = if args.output == AuditFormat::Json {
        KeepObject::Yes
    } else {
        KeepObject::No
    };
    let mut failed = false;
    let mut index = 0usize;
    'kinds: for kind in WorkloadKind::ALL {
        let mut pages = Pages::new(&client, &server, listing, kind, args.namespace.as_deref());
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    // Tenant strings (an object's name) reach the terminal: escaped.
                    eprintln!("wasm-admission audit: {}", printable(&e.to_string()));
                    failed = true;
                    if e.is_unreachable() {
                        break 'kinds;
                    }
                    // An object too large for a page is skipped; the kind goes on.
                    continue;
                }
            };
            let registry = match &inspector {
                Some(inspector) => {
                    let inspected = deadline
                        .run(|| "registry inspection".to_string(), async {
                            Ok(inspect(engine, inspector, &page).await)
                        })
                        .await;
                    match inspected {
                        Ok(facts) => Some(facts),
                        Err(e) => {
                            eprintln!("wasm-admission audit: {e}");
                            failed = true;
                            break 'kinds;
                        }
                    }
                }
                None => None,
            };
            let facts = inspect::with_registry(Facts::default(), registry.as_ref());
            // One object at a time: decoded from the page's bytes, decided, reported, dropped.
            for object in page.objects() {
                let object_ref = object
                    .as_ref()
                    .map(policy_report::ObjectRef::of)
                    .unwrap_or_default();
                let doc = Source {
                    source: SOURCE.to_string(),
                    index,
                    content: object.map_err(|e| format!("cannot read the object: {e}")),
                };
                index += 1;
                let r = report::check_document(engine, &facts, doc, "default", keep);
                let written = match &mut sink {
                    Sink::Report(w) => w.entry(&r),
                    Sink::PolicyReports(reports) => {
                        reports.add(&r, object_ref);
                        Ok(())
                    }
                };
                if let Err(e) = written {
                    eprintln!("wasm-admission audit: cannot write the report: {e}");
                    return 2;
                }
            }
            drop(page);
        }
    }

    let code = match sink {
        Sink::Report(w) => {
            let tally = w.tally();
            if let Err(e) = w.finish() {
                eprintln!("wasm-admission audit: cannot write the report: {e}");
                return 2;
            }
            tally.exit_code()
        }
        Sink::PolicyReports(reports) => {
            let tally: Tally = reports.tally();
            let documents = reports.into_documents();
            if args.apply {
                let mut code = 0;
                for report in &documents {
                    let what = policy_report::describe(report);
                    let applied = deadline
                        .run(
                            || what.clone(),
                            cluster_objects::apply_report(&client, &server, timeouts, report),
                        )
                        .await;
                    match applied {
                        Ok(()) => eprintln!("wasm-admission audit: applied {}", printable(&what)),
                        Err(e) => {
                            eprintln!(
                                "wasm-admission audit: cannot apply {}: {}",
                                printable(&what),
                                printable(&e.to_string())
                            );
                            code = 2;
                            if e.is_unreachable() {
                                break;
                            }
                        }
                    }
                }
                if failed { 2 } else { code }
            } else {
                if let Err(e) = write_yaml(&mut stdout, &documents) {
                    eprintln!("wasm-admission audit: cannot write the report: {e}");
                    return 2;
                }
                tally.exit_code()
            }
        }
    };
    if failed { 2 } else { code }
}

/// Registry inspection (behaviour.md §3 rule 6) for the images of one page, with the configured
/// settings; the inspector caches what it has seen across pages. The page's objects are decoded
/// one at a time for it, and dropped.
async fn inspect(engine: &Engine, inspector: &Inspector, page: &Page) -> RegistryFacts {
    let mut lookups = Lookups::new();
    for object in page.objects().flatten() {
        report::add_lookups(&mut lookups, engine, &object, "default");
    }
    let timeout = inspector.settings().timeout;
    lookups
        .inspect(inspector, timeout, None)
        .await
        .unwrap_or_default()
}

fn write_yaml(out: &mut dyn Write, documents: &[Value]) -> std::io::Result<()> {
    for document in documents {
        let text = serde_yaml_ng::to_string(document).map_err(std::io::Error::other)?;
        writeln!(out, "---")?;
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}
