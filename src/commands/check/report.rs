//! `check`'s four report formats (behaviour.md §7).

use std::io::{self, Write};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;
use serde_json::Value;

use super::Checked;
use super::OutputFormat;
use crate::core::engine::Outcome;

pub fn write(out: &mut dyn Write, format: OutputFormat, results: &[Checked]) -> io::Result<()> {
    match format {
        OutputFormat::Text => text(out, results),
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &json_entries(results))?;
            writeln!(out)
        }
        OutputFormat::Yaml => yaml(out, results),
        OutputFormat::Junit => junit(out, results),
    }
}

fn subject(r: &Checked) -> String {
    format!("{} {}/{}", r.kind, r.namespace, r.name)
}

fn location(r: &Checked) -> String {
    format!("{}#{}", r.source, r.index)
}

/// One line per object, its warnings below it, then a summary.
fn text(out: &mut dyn Write, results: &[Checked]) -> io::Result<()> {
    let (mut mutated, mut unchanged, mut denied, mut errors) = (0, 0, 0, 0);
    for r in results {
        match &r.result {
            Err(e) => {
                errors += 1;
                writeln!(out, "ERROR     {}: {e}", location(r))?;
            }
            Ok(ev) => {
                let d = &ev.decision;
                match d.outcome() {
                    Outcome::Mutated => {
                        mutated += 1;
                        let what = d.audit_annotations.get("injected").map(String::as_str);
                        writeln!(
                            out,
                            "mutated   {} ({}): {}",
                            subject(r),
                            location(r),
                            what.unwrap_or("patched")
                        )?;
                    }
                    Outcome::Unchanged => {
                        unchanged += 1;
                        writeln!(out, "unchanged {} ({})", subject(r), location(r))?;
                    }
                    Outcome::Denied => {
                        denied += 1;
                        let message = d.message.as_deref().unwrap_or("denied");
                        writeln!(out, "DENIED    {} ({}): {message}", subject(r), location(r))?;
                    }
                }
                for w in &d.warnings {
                    writeln!(out, "          warning: {w}")?;
                }
            }
        }
    }
    writeln!(
        out,
        "{} object{}: {mutated} mutated, {unchanged} unchanged, {denied} denied, {errors} errors",
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    )
}

/// One element of the array of behaviour.md §7, in its field order. A document that could not be read
/// has `allowed: null`, its error as `message`, and `object: null`.
#[derive(Serialize)]
struct Entry<'r> {
    source: &'r str,
    index: usize,
    kind: &'r str,
    namespace: &'r str,
    name: &'r str,
    allowed: Option<bool>,
    message: Option<&'r str>,
    warnings: &'r [String],
    patch: &'r [json_patch::PatchOperation],
    object: Option<&'r Value>,
}

fn json_entries(results: &[Checked]) -> Vec<Entry<'_>> {
    results
        .iter()
        .map(|r| {
            let base = Entry {
                source: &r.source,
                index: r.index,
                kind: &r.kind,
                namespace: &r.namespace,
                name: &r.name,
                allowed: None,
                message: None,
                warnings: &[],
                patch: &[],
                object: None,
            };
            match &r.result {
                Ok(ev) => Entry {
                    allowed: Some(ev.decision.allowed),
                    message: ev.decision.message.as_deref(),
                    warnings: &ev.decision.warnings,
                    patch: &ev.operations.0,
                    object: Some(&ev.object),
                    ..base
                },
                Err(e) => Entry {
                    message: Some(e),
                    ..base
                },
            }
        })
        .collect()
}

/// An `admission.k8s.io` AdmissionReview (like the bundled `examples/review/*.json`): a request
/// to a webhook, not an object the apiserver stores.
pub fn is_admission_review(object: &Value) -> bool {
    object["kind"] == "AdmissionReview"
        && object["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("admission.k8s.io/"))
}

/// The objects as they would be admitted, ready for `kubectl apply -f -`; denied objects,
/// unreadable documents and AdmissionReviews (which `kubectl apply` refuses; `run` notes each on
/// standard error) are left out.
fn yaml(out: &mut dyn Write, results: &[Checked]) -> io::Result<()> {
    let admitted = results
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .filter(|ev| ev.decision.allowed && !is_admission_review(&ev.object));
    for ev in admitted {
        let text = serde_yaml_ng::to_string(&ev.object).map_err(io::Error::other)?;
        writeln!(out, "---")?;
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// One test case per object; a denial is a failure, an unreadable document an error.
fn junit(out: &mut dyn Write, results: &[Checked]) -> io::Result<()> {
    let mut suite = TestSuite::new("wasm-admission check");
    for r in results {
        let status = match &r.result {
            Ok(ev) if ev.decision.allowed => TestCaseStatus::success(),
            Ok(ev) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(ev.decision.message.clone().unwrap_or_default());
                s.set_type("denied");
                s
            }
            Err(e) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(e.clone());
                s.set_type("unreadable");
                s
            }
        };
        let name = if r.kind.is_empty() {
            format!("document {}", r.index)
        } else {
            subject(r)
        };
        let mut case = TestCase::new(name, status);
        case.set_classname(location(r));
        if let Ok(ev) = &r.result
            && !ev.decision.warnings.is_empty()
        {
            case.set_system_out(ev.decision.warnings.join("\n"));
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("wasm-admission");
    report.add_test_suite(suite);
    report.serialize(&mut *out).map_err(io::Error::other)?;
    writeln!(out)
}
