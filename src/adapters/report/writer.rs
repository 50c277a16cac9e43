//! `check`'s four report formats (behaviour.md §7), written one object at a time by a
//! [`ReportWriter`], so that `audit` (behaviour.md §11) streams the same report over a cluster
//! page by page without holding it.

use std::io::{self, Seek, Write};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;
use serde_json::Value;

use super::Checked;
use super::OutputFormat;
use crate::core::engine::Outcome;
use crate::core::verdict::{RuleId, RuleResult};

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
/// object at a time. JUnit's header carries the counts, so its test cases are serialized as they
/// come into an unnamed temporary file (memory when none can be created) and copied out after the
/// header: memory does not grow with the number of objects.
pub struct ReportWriter<'w> {
    out: &'w mut dyn Write,
    format: OutputFormat,
    tally: Tally,
    junit: Option<JunitCases>,
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
            junit: (format == OutputFormat::Junit).then(|| JunitCases::new(suite)),
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
            OutputFormat::Junit => match &mut self.junit {
                Some(cases) => cases.add(junit_case(r)),
                None => Ok(()),
            },
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
            OutputFormat::Junit => match self.junit {
                Some(cases) => cases.finish(self.out),
                None => Ok(()),
            },
        }
    }
}

/// JUnit test cases serialized as they come (quick-junit's bytes for each, indentation included),
/// kept in `spill` until [`JunitCases::finish`] knows the counts for the header.
struct JunitCases {
    suite: String,
    spill: Spill,
    /// What follows the last test case: the suite's and the report's end tags.
    tail: Option<Vec<u8>>,
    /// The suite's counts, as quick-junit keeps them for the cases added so far.
    tests: usize,
    disabled: usize,
    errors: usize,
    failures: usize,
}

/// Where the serialized test cases wait: an unnamed temporary file, or memory when none could be
/// created (a read-only file system).
enum Spill {
    File(io::BufWriter<std::fs::File>),
    Memory(Vec<u8>),
}

impl JunitCases {
    fn new(suite: &str) -> Self {
        let spill = match tempfile::tempfile() {
            Ok(file) => Spill::File(io::BufWriter::new(file)),
            Err(_) => Spill::Memory(Vec::new()),
        };
        Self {
            suite: suite.to_string(),
            spill,
            tail: None,
            tests: 0,
            disabled: 0,
            errors: 0,
            failures: 0,
        }
    }

    /// Serializes one test case as it appears inside the whole report.
    fn add(&mut self, case: TestCase) -> io::Result<()> {
        let mut suite = TestSuite::new(self.suite.clone());
        suite.add_test_case(case);
        self.tests += suite.tests;
        self.disabled += suite.disabled;
        self.errors += suite.errors;
        self.failures += suite.failures;
        let bytes = serialize(suite)?;
        let start = suite_start_end(&bytes)?;
        let end = find_last(&bytes, SUITE_END)
            .filter(|&end| end >= start)
            .ok_or_else(|| io::Error::other("JUnit: no end of the test suite"))?;
        if self.tail.is_none() {
            self.tail = Some(bytes[end..].to_vec());
        }
        match &mut self.spill {
            Spill::File(file) => file.write_all(&bytes[start..end]),
            Spill::Memory(buffer) => {
                buffer.extend_from_slice(&bytes[start..end]);
                Ok(())
            }
        }
    }

    /// Writes the report: the header with the counts, the test cases, the end tags.
    fn finish(self, out: &mut dyn Write) -> io::Result<()> {
        let mut suite = TestSuite::new(self.suite);
        suite.tests = self.tests;
        suite.disabled = self.disabled;
        suite.errors = self.errors;
        suite.failures = self.failures;
        let skeleton = serialize(suite)?;
        let Some(tail) = &self.tail else {
            // No test case: the empty suite as it is.
            out.write_all(&skeleton)?;
            return writeln!(out);
        };
        let start = suite_start_end(&skeleton)?;
        out.write_all(&skeleton[..start])?;
        match self.spill {
            Spill::File(file) => {
                let mut file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
                file.rewind()?;
                io::copy(&mut file, out)?;
            }
            Spill::Memory(buffer) => out.write_all(&buffer)?,
        }
        out.write_all(tail)?;
        writeln!(out)
    }
}

/// The report of one suite, serialized as quick-junit does.
fn serialize(suite: TestSuite) -> io::Result<Vec<u8>> {
    let mut report = Report::new("wasm-admission");
    report.add_test_suite(suite);
    let mut bytes = Vec::new();
    report.serialize(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes)
}

/// The end tag of the one test suite, as quick-junit indents it.
const SUITE_END: &[u8] = b"\n    </testsuite>";

/// Where the `<testsuite ...>` start tag ends (attribute values are escaped: no `>` inside).
fn suite_start_end(bytes: &[u8]) -> io::Result<usize> {
    let tag = find_first(bytes, b"<testsuite ")
        .ok_or_else(|| io::Error::other("JUnit: no test suite"))?;
    bytes[tag..]
        .iter()
        .position(|&b| b == b'>')
        .map(|i| tag + i + 1)
        .ok_or_else(|| io::Error::other("JUnit: an unterminated test suite tag"))
}

fn find_first(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn subject(r: &Checked) -> String {
    format!("{} {}/{}", r.kind, r.namespace, r.name)
}

fn location(r: &Checked) -> String {
    format!("{}#{}", r.source, r.index)
}

/// One line per object, its warnings below it. Every line is written through [`printable`]: the
/// names, messages and warnings carry tenant strings (a capability name, an annotation) that the
/// apiserver stores as given.
fn text_entry(out: &mut dyn Write, r: &Checked) -> io::Result<()> {
    let mut line = |text: String| writeln!(out, "{}", printable(&text));
    match &r.result {
        Err(e) => line(format!("ERROR     {}: {e}", location(r))),
        Ok(ev) => {
            let d = &ev.decision;
            match d.outcome() {
                Outcome::Mutated => {
                    let what = d.audit_annotations.get("injected").map(String::as_str);
                    line(format!(
                        "mutated   {} ({}): {}",
                        subject(r),
                        location(r),
                        what.unwrap_or("patched")
                    ))?;
                }
                Outcome::Unchanged => {
                    line(format!("unchanged {} ({})", subject(r), location(r)))?;
                }
                Outcome::Denied => {
                    let message = d.message.as_deref().unwrap_or("denied");
                    line(format!(
                        "DENIED    {} ({}): {message}",
                        subject(r),
                        location(r)
                    ))?;
                }
            }
            for w in &d.warnings {
                line(format!("          warning: {w}"))?;
            }
            Ok(())
        }
    }
}

/// `text` with every character that a terminal acts on instead of showing written as a visible
/// escape (issue 28, item 8): C0 controls (ESC, BEL, CR, LF, backspace, ...), DEL, C1 controls
/// (CSI, OSC, ...) and the bidirectional overrides that reorder what is shown. An OSC 52 clipboard
/// write `ESC ] 52 ; ...` becomes the text `\u{1b}]52;...`; a newline cannot forge a report line.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
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
    /// The rules that acted or spoke (docs/behaviour.md, "Rule ids"); `[]` for a document that
    /// could not be read.
    rules: &'r [RuleResult],
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
        rules: &[],
        patch: &[],
        object: None,
    };
    match &r.result {
        Ok(ev) => Entry {
            allowed: Some(ev.decision.allowed),
            message: ev.decision.message.as_deref(),
            warnings: &ev.decision.warnings,
            rules: &ev.decision.rules,
            patch: &ev.operations.0,
            object: ev.object.as_ref(),
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
    let Some(object) = &ev.object else {
        return Ok(());
    };
    if !ev.decision.allowed || is_admission_review(object) {
        return Ok(());
    }
    let text = serde_yaml_ng::to_string(object).map_err(io::Error::other)?;
    writeln!(out, "---")?;
    out.write_all(text.as_bytes())
}

/// One test case per object; a denial is a failure whose type is the failing rule's id, an
/// unreadable document an error.
fn junit_case(r: &Checked) -> TestCase {
    let status = match &r.result {
        Ok(ev) if ev.decision.allowed => TestCaseStatus::success(),
        Ok(ev) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(ev.decision.message.clone().unwrap_or_default());
            // The failing rule's id names the failure (docs/behaviour.md, "Rule ids").
            s.set_type(ev.decision.failed_rule().map_or("denied", RuleId::as_str));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::check::{Document, check_documents, parse_source};
    use crate::core::config::Config;
    use crate::core::engine::{Engine, Facts};

    /// Objects of every JUnit status: unchanged, mutated, with a warning, denied, unreadable.
    fn checked() -> Vec<Checked> {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: "spin <&>", namespace: shop, annotations: {wasm-admission.io/wasm: "true", wasm-admission.io/profile: nope}}
spec: {containers: [{name: app, image: ghcr.io/acme/app:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: debug, annotations: {wasm-admission.io/wasm: "true"}}
spec: {hostNetwork: true, containers: [{name: app, image: ghcr.io/acme/app:1, securityContext: {privileged: true}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mixed, namespace: shop}
spec: {containers: [{name: a, image: ghcr.io/acme/wasm-a:1}, {name: b, image: nginx}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop, annotations: {wasm-admission.io/wasm: "true"}}
spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: app, image: ghcr.io/acme/cart:1}]}}}
"#;
        let mut documents = Vec::new();
        parse_source("t.yaml", text, &mut documents);
        documents.push(Document {
            source: "t.yaml".into(),
            index: 9,
            content: Err("not YAML".into()),
        });
        let mut config = Config::default();
        config.detection.image_patterns = vec!["ghcr.io/acme/wasm-*".into()];
        let engine = Engine::new(config).expect("engine");
        check_documents(&engine, &Facts::default(), documents, "default")
    }

    /// quick-junit's serialization of the whole suite at once, as `finish` wrote it before the
    /// test cases were streamed.
    fn whole(results: &[Checked]) -> String {
        let mut suite = TestSuite::new("wasm-admission check");
        for r in results {
            suite.add_test_case(junit_case(r));
        }
        let mut report = Report::new("wasm-admission");
        report.add_test_suite(suite);
        let mut text = report.to_string().expect("serialize");
        text.push('\n');
        text
    }

    fn streamed(results: &[Checked], in_memory: bool) -> String {
        let mut out = Vec::new();
        let mut writer =
            ReportWriter::new(&mut out, OutputFormat::Junit, "wasm-admission check").expect("new");
        if in_memory && let Some(cases) = &mut writer.junit {
            cases.spill = Spill::Memory(Vec::new());
        }
        for r in results {
            writer.entry(r).expect("entry");
        }
        writer.finish().expect("finish");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn streamed_junit_equals_the_whole_report() {
        let results = checked();
        let statuses: Vec<_> = results.iter().map(|r| r.outcome()).collect();
        assert!(statuses.contains(&None), "an unreadable document");
        assert!(statuses.contains(&Some(Outcome::Denied)), "a denial");
        assert!(statuses.contains(&Some(Outcome::Mutated)), "a mutation");
        for n in 0..=results.len() {
            let expected = whole(&results[..n]);
            assert_eq!(streamed(&results[..n], false), expected, "{n} cases, file");
            assert_eq!(streamed(&results[..n], true), expected, "{n} cases, memory");
        }
        assert!(
            whole(&results).contains("<system-out>"),
            "a warning in the cases"
        );
    }
}
