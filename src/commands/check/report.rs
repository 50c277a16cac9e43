//! `check`'s four report formats (behaviour.md §7), written one object at a time by a
//! [`ReportWriter`], so that `audit` (behaviour.md §11) streams the same report over a cluster
//! page by page without holding it.

use std::io::{self, Write};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;
use serde_json::Value;

use super::Checked;
use super::OutputFormat;
use crate::core::engine::Outcome;

/// Writes a whole report at once (`check`).
pub fn write(out: &mut dyn Write, format: OutputFormat, results: &[Checked]) -> io::Result<()> {
    let mut writer = ReportWriter::new(out, format, "wasm-admission check")?;
    for r in results {
        writer.entry(r)?;
    }
    writer.finish()
}

/// How many objects ended which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub mutated: usize,
    pub unchanged: usize,
    pub denied: usize,
    pub errors: usize,
}

impl Tally {
    pub fn count(&mut self, r: &Checked) {
        match r.outcome() {
            None => self.errors += 1,
            Some(Outcome::Mutated) => self.mutated += 1,
            Some(Outcome::Unchanged) => self.unchanged += 1,
            Some(Outcome::Denied) => self.denied += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.mutated + self.unchanged + self.denied + self.errors
    }

    /// Exit codes of behaviour.md §7: 2 when anything could not be read, else 1 when anything is
    /// denied, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.errors > 0 {
            2
        } else if self.denied > 0 {
            1
        } else {
            0
        }
    }
}

/// A report in one of the formats, written as the objects come. Text, JSON and YAML go out one
/// object at a time; JUnit keeps one test case per object (a name, a message and the warnings,
/// not the object) because its header carries the counts.
pub struct ReportWriter<'w> {
    out: &'w mut dyn Write,
    format: OutputFormat,
    tally: Tally,
    junit: Option<TestSuite>,
}

impl<'w> ReportWriter<'w> {
    pub fn new(out: &'w mut dyn Write, format: OutputFormat, suite: &str) -> io::Result<Self> {
        if format == OutputFormat::Json {
            write!(out, "[")?;
        }
        Ok(Self {
            out,
            format,
            tally: Tally::default(),
            junit: (format == OutputFormat::Junit).then(|| TestSuite::new(suite.to_string())),
        })
    }

    pub fn entry(&mut self, r: &Checked) -> io::Result<()> {
        let first = self.tally.total() == 0;
        self.tally.count(r);
        match self.format {
            OutputFormat::Text => text_entry(self.out, r),
            OutputFormat::Json => {
                // The bytes `serde_json::to_writer_pretty` gives for the whole array.
                let entry =
                    serde_json::to_string_pretty(&json_entry(r)).map_err(io::Error::other)?;
                write!(self.out, "{}", if first { "\n" } else { ",\n" })?;
                for (i, line) in entry.lines().enumerate() {
                    if i > 0 {
                        writeln!(self.out)?;
                    }
                    write!(self.out, "  {line}")?;
                }
                Ok(())
            }
            OutputFormat::Yaml => yaml_entry(self.out, r),
            OutputFormat::Junit => {
                if let Some(suite) = &mut self.junit {
                    suite.add_test_case(junit_case(r));
                }
                Ok(())
            }
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Ends the report: the summary line, the closing bracket, or the JUnit document.
    pub fn finish(self) -> io::Result<()> {
        let t = self.tally;
        match self.format {
            OutputFormat::Text => writeln!(
                self.out,
                "{} object{}: {} mutated, {} unchanged, {} denied, {} errors",
                t.total(),
                if t.total() == 1 { "" } else { "s" },
                t.mutated,
                t.unchanged,
                t.denied,
                t.errors
            ),
            OutputFormat::Json => {
                if t.total() > 0 {
                    writeln!(self.out)?;
                }
                writeln!(self.out, "]")
            }
            OutputFormat::Yaml => Ok(()),
            OutputFormat::Junit => {
                let mut report = Report::new("wasm-admission");
                if let Some(suite) = self.junit {
                    report.add_test_suite(suite);
                }
                report.serialize(&mut *self.out).map_err(io::Error::other)?;
                writeln!(self.out)
            }
        }
    }
}

fn subject(r: &Checked) -> String {
    format!("{} {}/{}", r.kind, r.namespace, r.name)
}

fn location(r: &Checked) -> String {
    format!("{}#{}", r.source, r.index)
}

/// One line per object, its warnings below it.
fn text_entry(out: &mut dyn Write, r: &Checked) -> io::Result<()> {
    match &r.result {
        Err(e) => writeln!(out, "ERROR     {}: {e}", location(r)),
        Ok(ev) => {
            let d = &ev.decision;
            match d.outcome() {
                Outcome::Mutated => {
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
                    writeln!(out, "unchanged {} ({})", subject(r), location(r))?;
                }
                Outcome::Denied => {
                    let message = d.message.as_deref().unwrap_or("denied");
                    writeln!(out, "DENIED    {} ({}): {message}", subject(r), location(r))?;
                }
            }
            for w in &d.warnings {
                writeln!(out, "          warning: {w}")?;
            }
            Ok(())
        }
    }
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

fn json_entry(r: &Checked) -> Entry<'_> {
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
}

/// An `admission.k8s.io` AdmissionReview (like the bundled `examples/review/*.json`): a request
/// to a webhook, not an object the apiserver stores.
pub fn is_admission_review(object: &Value) -> bool {
    object["kind"] == "AdmissionReview"
        && object["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("admission.k8s.io/"))
}

/// The object as it would be admitted, ready for `kubectl apply -f -`; denied objects,
/// unreadable documents and AdmissionReviews (which `kubectl apply` refuses; `run` notes each on
/// standard error) are left out.
fn yaml_entry(out: &mut dyn Write, r: &Checked) -> io::Result<()> {
    let Ok(ev) = &r.result else {
        return Ok(());
    };
    if !ev.decision.allowed || is_admission_review(&ev.object) {
        return Ok(());
    }
    let text = serde_yaml_ng::to_string(&ev.object).map_err(io::Error::other)?;
    writeln!(out, "---")?;
    out.write_all(text.as_bytes())
}

/// One test case per object; a denial is a failure, an unreadable document an error.
fn junit_case(r: &Checked) -> TestCase {
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
    case
}
