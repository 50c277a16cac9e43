//! Reading manifests for `check`: files, folders, standard input; many documents per file;
//! `List` kinds. Every error names the source and the document, and one bad document does not
//! stop the others from being read.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The largest manifest file (or standard input) read.
pub const MAX_INPUT_BYTES: u64 = 32 * 1024 * 1024;

/// One object to check, or the reason a document could not be read.
#[derive(Debug)]
pub struct Document {
    /// The file path, or `-` for standard input.
    pub source: String,
    /// The position of the object in its source (0-based; `List` items count one each; empty
    /// documents are skipped).
    pub index: usize,
    pub content: Result<Value, String>,
}

/// Expands the paths given on the command line into documents, in order.
pub fn read_all(paths: &[String]) -> Vec<Document> {
    let mut out = Vec::new();
    for path in paths {
        if path == "-" {
            let mut text = String::new();
            let read = std::io::stdin()
                .take(MAX_INPUT_BYTES + 1)
                .read_to_string(&mut text);
            match read {
                Ok(n) if n as u64 > MAX_INPUT_BYTES => out.push(error("-", too_large())),
                Ok(_) => parse_source("-", &text, &mut out),
                Err(e) => out.push(error("-", format!("cannot read standard input: {e}"))),
            }
            continue;
        }
        let path = PathBuf::from(path);
        match manifest_files(&path) {
            Ok(found) => {
                for entry in found {
                    match entry {
                        Found::File(file) => read_file(&file, &mut out),
                        Found::Unreadable(entry, message) => {
                            out.push(error(&entry.display().to_string(), message));
                        }
                    }
                }
            }
            Err(e) => out.push(error(&path.display().to_string(), e)),
        }
    }
    out
}

fn too_large() -> String {
    format!("input is larger than {MAX_INPUT_BYTES} bytes")
}

fn error(source: &str, message: String) -> Document {
    Document {
        source: source.to_string(),
        index: 0,
        content: Err(message),
    }
}

/// What a folder walk found: a manifest file to read, or an entry that could not be read (a
/// dangling symbolic link, a folder without permission), reported as an error in its place.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Found {
    File(PathBuf),
    Unreadable(PathBuf, String),
}

impl Found {
    fn path(&self) -> &Path {
        match self {
            Found::File(p) | Found::Unreadable(p, _) => p,
        }
    }
}

/// A file as itself; a folder as its `.yaml`, `.yml` and `.json` files, recursively, sorted.
/// Symbolic links are followed, folders through them too, each folder read once (by its device
/// and inode, which ends loops); in a folder only regular files are read, and anything else
/// with a manifest's name (a FIFO, a socket, a device) is skipped with a note on standard error,
/// so that a walk never blocks. An entry that cannot be read (a dangling symbolic link, a folder
/// without permission) is an error in the report, and the walk goes on with the rest (issue 28,
/// item 10). A path named on the command line is read whatever it is, so that
/// `check <(helm template ...)` works. Each folder costs one `stat` per entry: the walk is linear
/// in the number of folders, however deep (no path is resolved again from the root).
fn manifest_files(path: &Path) -> Result<Vec<Found>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_dir() {
        return Ok(vec![Found::File(path.to_path_buf())]);
    }
    let mut found = Vec::new();
    let mut dirs = vec![(path.to_path_buf(), meta)];
    let mut seen = std::collections::HashSet::new();
    while let Some((dir, meta)) = dirs.pop() {
        if !seen.insert(folder_id(&meta)) {
            note(
                &dir,
                "skipped, a folder already read (a symbolic link loop or a second link)",
            );
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                found.push(Found::Unreadable(
                    dir,
                    format!("cannot read the folder: {e}"),
                ));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    found.push(Found::Unreadable(
                        dir.clone(),
                        format!("cannot read the folder: {e}"),
                    ));
                    break;
                }
            };
            let p = entry.path();
            // Follows symbolic links; a dangling one is an error in its place.
            let meta = match std::fs::metadata(&p) {
                Ok(meta) => meta,
                Err(e) => {
                    let why = match std::fs::symlink_metadata(&p) {
                        Ok(link) if link.file_type().is_symlink() => {
                            format!("cannot read (a symbolic link to nothing readable): {e}")
                        }
                        _ => format!("cannot read: {e}"),
                    };
                    found.push(Found::Unreadable(p, why));
                    continue;
                }
            };
            let manifest_name = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if meta.is_dir() {
                dirs.push((p, meta));
            } else if manifest_name && meta.is_file() {
                found.push(Found::File(p));
            } else if manifest_name {
                note(&p, "skipped, not a regular file");
            }
        }
    }
    found.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(found)
}

/// A folder's identity, whatever path reached it.
fn folder_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

fn note(path: &Path, message: &str) {
    eprintln!("wasm-admission check: {}: {message}", path.display());
}

fn read_file(path: &Path, out: &mut Vec<Document>) {
    let source = path.display().to_string();
    let text = std::fs::File::open(path).and_then(|f| {
        let mut text = String::new();
        f.take(MAX_INPUT_BYTES + 1).read_to_string(&mut text)?;
        Ok(text)
    });
    match text {
        Ok(t) if t.len() as u64 > MAX_INPUT_BYTES => out.push(error(&source, too_large())),
        Ok(t) => parse_source(&source, &t, out),
        Err(e) => out.push(error(&source, format!("cannot read: {e}"))),
    }
}

/// Splits YAML text into documents and each document into objects.
pub fn parse_source(source: &str, text: &str, out: &mut Vec<Document>) {
    let mut index = 0;
    for chunk in split_documents(text) {
        let parsed = super::yaml_limits::parse(chunk);
        let mut push = |content| {
            out.push(Document {
                source: source.to_string(),
                index,
                content,
            });
            index += 1;
        };
        match parsed {
            Ok(Value::Null) => {}
            Ok(value) => match list_items(value) {
                Ok(items) => items.into_iter().for_each(|item| push(check_object(item))),
                Err(e) => push(Err(e)),
            },
            Err(e) => push(Err(e)),
        }
    }
}

/// Splits at `---` document markers. Done by hand rather than with the YAML library's
/// multi-document reader because that reader stops at the first syntax error, and one bad
/// document must not hide the report on the others. A `---` at the start of a line is always a
/// marker: block scalars are indented, so their content never starts a line with it.
fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "...";
        if is_marker || is_end {
            docs.push(&text[start..offset]);
            // The rest of a marker line (`--- {a: 1}`) belongs to the next document.
            start = if is_marker {
                offset + 3
            } else {
                offset + line.len()
            };
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs
}

/// A `List` (`kind: List`, or any `...List` kind with `items`) becomes its items.
fn list_items(value: Value) -> Result<Vec<Value>, String> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some();
    if !is_list {
        return Ok(vec![value]);
    }
    match value.get("items") {
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(Value::Null) => Ok(Vec::new()),
        _ => Err("List has items that are not an array".into()),
    }
}

fn check_object(value: Value) -> Result<Value, String> {
    let has = |f: &str| {
        value
            .get(f)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if !value.is_object() {
        return Err("document is not a mapping".into());
    }
    if !has("apiVersion") || !has("kind") {
        return Err("not a Kubernetes object: apiVersion and kind are required".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Document> {
        let mut out = Vec::new();
        parse_source("t.yaml", text, &mut out);
        out
    }

    #[test]
    fn many_documents_per_file_with_empty_ones_skipped() {
        let docs = parse("---\napiVersion: v1\nkind: A\n---\n---\napiVersion: v1\nkind: B\n...\n");
        let kinds: Vec<_> = docs
            .iter()
            .map(|d| {
                d.content.as_ref().unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(kinds, ["A", "B"]);
        assert_eq!(docs[1].index, 1);
    }

    #[test]
    fn list_kinds_expand_into_items() {
        let docs = parse(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod}\n- {apiVersion: v1, kind: Service}\n",
        );
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].content.as_ref().unwrap()["kind"], "Service");
    }

    #[test]
    fn a_bad_document_does_not_hide_the_others() {
        let docs =
            parse("apiVersion: v1\nkind: A\n---\nkey: [unclosed\n---\napiVersion: v1\nkind: C\n");
        assert_eq!(docs.len(), 3);
        assert!(docs[1].content.is_err());
        assert_eq!(docs[2].content.as_ref().unwrap()["kind"], "C");
    }

    #[test]
    fn marker_line_content_belongs_to_the_next_document() {
        let docs = parse("--- {apiVersion: v1, kind: A}\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].content.as_ref().unwrap()["kind"], "A");
    }

    #[test]
    fn objects_without_api_version_are_errors() {
        let docs = parse("kind: Pod\n");
        assert!(docs[0].content.as_ref().unwrap_err().contains("apiVersion"));
    }

    #[test]
    fn json_files_parse_too() {
        let docs = parse("{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}");
        assert_eq!(docs.len(), 1);
        assert!(docs[0].content.is_ok());
    }
}
