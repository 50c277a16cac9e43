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
/// `check <(helm template ...)` works. Each folder costs one `stat` per entry, relative to the
/// folder: the walk is linear in the number of folders, however deep (issue 28, item 10: it
/// resolved every path from the root, 120 s for 2,000 levels).
fn manifest_files(path: &Path) -> Result<Vec<Found>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_dir() {
        return Ok(vec![Found::File(path.to_path_buf())]);
    }
    let mut found = Vec::new();
    // Each folder is opened relative to its parent's descriptor, and its entries looked at relative
    // to its own: no path is resolved again from the root, so the walk costs the same per folder at
    // any depth. A parent's descriptor is closed once its last subfolder is opened.
    let mut pending = vec![Pending {
        path: path.to_path_buf(),
        parent: None,
    }];
    let mut seen = std::collections::HashSet::new();
    while let Some(Pending { path: dir, parent }) = pending.pop() {
        let opened = match (&parent, dir.file_name()) {
            (Some(parent), Some(name)) => walk::open_dir(Some(parent), name).or_else(|e| {
                // Out of descriptors (a very wide and deep tree): by path instead.
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    walk::open_dir(None, dir.as_os_str())
                } else {
                    Err(e)
                }
            }),
            _ => walk::open_dir(None, dir.as_os_str()),
        };
        drop(parent);
        let fd = match opened {
            Ok(fd) => std::rc::Rc::new(fd),
            Err(e) => {
                found.push(Found::Unreadable(
                    dir,
                    format!("cannot read the folder: {e}"),
                ));
                continue;
            }
        };
        match walk::id(&fd) {
            Ok(id) if !seen.insert(id) => {
                note(
                    &dir,
                    "skipped, a folder already read (a symbolic link loop or a second link)",
                );
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                found.push(Found::Unreadable(
                    dir,
                    format!("cannot read the folder: {e}"),
                ));
                continue;
            }
        }
        let names = match walk::entries(&fd) {
            Ok(names) => names,
            Err(e) => {
                found.push(Found::Unreadable(
                    dir,
                    format!("cannot read the folder: {e}"),
                ));
                continue;
            }
        };
        for name in names {
            let p = dir.join(&name);
            // Follows symbolic links; a dangling one is an error in its place.
            let kind = match walk::kind(&fd, &name, true) {
                Ok(kind) => kind,
                Err(e) => {
                    let why = match walk::kind(&fd, &name, false) {
                        Ok(walk::Kind::Link) => {
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
            match kind {
                walk::Kind::Dir => pending.push(Pending {
                    path: p,
                    parent: Some(fd.clone()),
                }),
                walk::Kind::File if manifest_name => found.push(Found::File(p)),
                _ if manifest_name => note(&p, "skipped, not a regular file"),
                _ => {}
            }
        }
    }
    found.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(found)
}

/// A folder still to read, and its parent's descriptor (`None` for the folder named on the
/// command line).
struct Pending {
    path: PathBuf,
    parent: Option<std::rc::Rc<std::os::fd::OwnedFd>>,
}

/// The system calls of the folder walk, relative to a folder's descriptor (`openat`, `fstatat`,
/// `fdopendir`): what `std::fs` offers only by path.
mod walk {
    use std::ffi::{CStr, CString, OsStr, OsString};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    /// What an entry is.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Kind {
        Dir,
        File,
        Link,
        Other,
    }

    fn c_name(name: &OsStr) -> io::Result<CString> {
        CString::new(name.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a name"))
    }

    /// Opens folder `name` inside `parent`, or the path `name` without one (never blocking: a
    /// FIFO is not a folder and is refused by `O_DIRECTORY`).
    pub fn open_dir(parent: Option<&OwnedFd>, name: &OsStr) -> io::Result<OwnedFd> {
        let name = c_name(name)?;
        let at = parent.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: `name` is NUL-terminated; `at` is an open descriptor or AT_FDCWD.
        let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned here alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn filled(rc: libc::c_int, stat: std::mem::MaybeUninit<libc::stat>) -> io::Result<libc::stat> {
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the call succeeded and filled `stat`.
        Ok(unsafe { stat.assume_init() })
    }

    /// The folder's device and inode: its identity whatever path reached it.
    pub fn id(dir: &OwnedFd) -> io::Result<(u64, u64)> {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: an open descriptor, and room for one `stat`.
        let rc = unsafe { libc::fstat(dir.as_raw_fd(), stat.as_mut_ptr()) };
        let stat = filled(rc, stat)?;
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        Ok((stat.st_dev as u64, stat.st_ino as u64))
    }

    /// What entry `name` of `dir` is, through a symbolic link when `follow`.
    pub fn kind(dir: &OwnedFd, name: &OsStr, follow: bool) -> io::Result<Kind> {
        let name = c_name(name)?;
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: an open descriptor, a NUL-terminated name, and room for one `stat`.
        let rc = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), stat.as_mut_ptr(), flags) };
        let stat = filled(rc, stat)?;
        Ok(match stat.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Link,
            _ => Kind::Other,
        })
    }

    /// The names in a folder, without `.` and `..`.
    pub fn entries(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
        // `fdopendir` takes the descriptor it is given: a duplicate, closed by `closedir`.
        // SAFETY: an open descriptor.
        let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` is an open descriptor of a folder, owned here.
        let stream = unsafe { libc::fdopendir(dup) };
        if stream.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: `dup` is still ours when fdopendir failed.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        let mut names = Vec::new();
        let result = loop {
            clear_errno();
            // SAFETY: `stream` is an open directory stream.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                break match e.raw_os_error() {
                    Some(0) | None => Ok(()),
                    Some(_) => Err(e),
                };
            }
            // SAFETY: readdir returned an entry whose `d_name` is NUL-terminated and valid until
            // the next call on this stream; it is copied before that.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        };
        // SAFETY: `stream` is open, and closed once, here.
        unsafe { libc::closedir(stream) };
        result.map(|()| names)
    }

    /// `errno` set to 0, so that the end of a folder and a failed `readdir` can be told apart.
    fn clear_errno() {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: the calling thread's errno.
        unsafe {
            *libc::__errno_location() = 0;
        }
        #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
        // SAFETY: the calling thread's errno.
        unsafe {
            *libc::__error() = 0;
        }
    }
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
