//! Every repository path the user-facing docs name exists, so a moved or deleted file cannot leave
//! a stale reference behind (issue 31: `Dockerfile`, `src/alloc.rs`, a `deny.toml` link that
//! pointed into docs/).
//!
//! Read: README.md, every docs/*.md, the chart's README and examples/README.md. Checked:
//! - each Markdown link target that is not a URL or an anchor, relative to the file that holds it;
//! - each path written in the text that starts with one of the repository's top-level folders
//!   (`src/`, `docs/`, `deploy/`, ...), relative to the repository root. Globs are skipped;
//! - each `#anchor` of a link to a Markdown file (or within the same file): a heading of that
//!   file, as GitHub turns headings into anchors.

use std::path::{Path, PathBuf};

use regex::Regex;

/// The folders at the repository's top level whose paths the docs write out.
const TOP_FOLDERS: &str = "src|docs|deploy|scripts|tests|examples|benches|fuzz|e2e|certs";

/// Paths the docs name that are not in the repository on purpose: files a command writes.
const PRODUCED: &[&str] = &[
    // `wasm-admission certs --out-dir certs`
    "certs/tls.crt",
    "certs/tls.key",
    // cargo-fuzz's own folders, ignored by git
    "fuzz/corpus/",
    "fuzz/artifacts/",
];

/// `deploy/NAME` on a kubectl line is a Deployment (`kubectl logs deploy/wasm-admission`), not a path.
fn is_kubectl_deployment(line: &str, path: &str) -> bool {
    line.contains("kubectl")
        && path
            .strip_prefix("deploy/")
            .is_some_and(|name| !name.contains(['/', '.']))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![
        root.join("README.md"),
        root.join("deploy/helm/wasm-admission/README.md"),
        root.join("examples/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// `(line number, path as written, where it should be)` for every path in `text`.
fn named_paths(file: &Path, text: &str) -> Vec<(usize, String, PathBuf)> {
    let link = Regex::new(r"\]\(([^)\s]+)\)").expect("link pattern");
    let written = Regex::new(&format!(
        r"(?:^|[\s`(\[:=,])((?:{TOP_FOLDERS})/[A-Za-z0-9_.\-/]*[A-Za-z0-9_\-/])"
    ))
    .expect("path pattern");
    let dir = file.parent().expect("a document has a folder");
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for capture in link.captures_iter(line) {
            let target = &capture[1];
            if target.starts_with('#') || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap_or(target);
            found.push((number + 1, target.to_string(), dir.join(path)));
        }
        for capture in written.captures_iter(line) {
            let path = capture[1].trim_end_matches('.');
            if path.contains('*') || PRODUCED.contains(&path) || is_kubectl_deployment(line, path) {
                continue;
            }
            found.push((number + 1, path.to_string(), root().join(path)));
        }
    }
    found
}

/// The anchors GitHub makes of a Markdown file's headings: lower case, punctuation dropped,
/// spaces as `-` (code blocks skipped).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let heading = heading.trim_start_matches('#').trim();
        let anchor: String = heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        found.push(anchor);
    }
    found
}

#[test]
fn every_anchor_the_docs_link_to_exists() {
    let link = Regex::new(r"\]\(([^)\s]*)#([^)\s]+)\)").expect("link pattern");
    let mut missing = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("the document is readable");
        for (number, line) in text.lines().enumerate() {
            for capture in link.captures_iter(line) {
                let (target, anchor) = (&capture[1], &capture[2]);
                if target.contains("://") || (!target.is_empty() && !target.ends_with(".md")) {
                    continue;
                }
                let linked = if target.is_empty() {
                    file.clone()
                } else {
                    file.parent().expect("a folder").join(target)
                };
                let Ok(linked_text) = std::fs::read_to_string(&linked) else {
                    continue; // a missing file is every_path_the_docs_name_exists's
                };
                if !anchors(&linked_text).iter().any(|a| a == anchor) {
                    let shown = file
                        .strip_prefix(root())
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    missing.push(format!("{shown}:{}: {target}#{anchor}", number + 1));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "links to headings that do not exist (fix the anchor or the heading):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_path_the_docs_name_exists() {
    let mut missing = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("the document is readable");
        for (line, written, path) in named_paths(&file, &text) {
            if !path.exists() {
                let shown = file
                    .strip_prefix(root())
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                missing.push(format!("{shown}:{line}: {written}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "paths named in the docs that do not exist (fix the path or the text):\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_moved_file_is_caught() {
    let file = root().join("docs/performance.md");
    let found = named_paths(
        &file,
        "built by the `Dockerfile`; see [deny](deny.toml), `src/alloc.rs`",
    );
    let gone: Vec<_> = found
        .iter()
        .filter(|(_, _, path)| !path.exists())
        .map(|(_, w, _)| w.as_str())
        .collect();
    assert_eq!(gone, ["deny.toml", "src/alloc.rs"]);
}

#[test]
fn headings_become_the_anchors_github_makes() {
    let text = "# Title\n## 8. Configuration, with every default\n```sh\n# a comment\n```\n### `serve` in production\n";
    assert_eq!(
        anchors(text),
        [
            "title",
            "8-configuration-with-every-default",
            "serve-in-production"
        ]
    );
}
