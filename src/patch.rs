//! JSON Patch (RFC 6902) building against the object exactly as received.
//!
//! Every `add` must find its parent: the apiserver's patch library refuses an `add` under a
//! missing object. The builder therefore asks the original document which parents exist and,
//! where one is missing (or null), adds the highest missing one with the nested value inside it;
//! later adds under that new parent are merged into the same operation.
//!
//! Paths come in as borrowed, unescaped tokens and each operation's pointer is written once,
//! escaped (`~` → `~0`, `/` → `~1`, RFC 6901) straight into its string, which
//! `PointerBuf::parse` then only checks. jsonptr's `PointerBuf::from_tokens` builds the same
//! pointer a token at a time with an allocation each: that was a tenth of a review's
//! instructions (benches/load.rs `--callgrind`).

use std::collections::HashMap;

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::{Map, Value};

/// The array-append token of RFC 6901/6902.
pub const APPEND: &str = "-";

/// What the builder needs to know of the original document: how many leading tokens of a path
/// exist (non-null).
pub trait Document {
    fn existing_depth(&self, path: &[&str]) -> usize;
}

impl Document for Value {
    fn existing_depth(&self, path: &[&str]) -> usize {
        let mut at = self;
        for (depth, token) in path.iter().enumerate() {
            match child(at, token) {
                Some(next) if !next.is_null() => at = next,
                _ => return depth,
            }
        }
        path.len()
    }
}

enum Op {
    Add { path: PointerBuf, value: Value },
    Replace { path: PointerBuf, value: Value },
}

pub struct PatchBuilder<'a> {
    doc: &'a dyn Document,
    ops: Vec<Op>,
    /// The `add`s that create a missing parent (the only ones later adds merge into), by escaped
    /// pointer string, to their index in `ops`. A lookup, not a scan: scanning them for every
    /// add made a pod with many containers cost quadratic time (one 3 MiB review could pin a
    /// core for minutes).
    created: HashMap<String, usize>,
}

impl<'a> PatchBuilder<'a> {
    pub fn new(doc: &'a dyn Document) -> Self {
        Self {
            doc,
            ops: Vec::new(),
            created: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds `value` at `path` (tokens, unescaped), creating missing parents.
    pub fn add(&mut self, path: &[&str], value: Value) {
        let Some(parents) = path.len().checked_sub(1) else {
            return; // the whole document is never replaced by an add
        };
        let depth = self.doc.existing_depth(&path[..parents]);
        if depth == parents {
            self.ops.push(Op::Add {
                path: pointer(path),
                value,
            });
            return;
        }
        // `path[depth]` is the first missing (or null) parent. A parent is always created at the
        // first missing one, so an earlier add under it, if any, created exactly `path[..=depth]`:
        // merge into that operation's value.
        let parent = escaped(&path[..=depth]);
        if let Some(&index) = self.created.get(&parent)
            && let Some(Op::Add { value: subtree, .. }) = self.ops.get_mut(index)
        {
            insert_nested(subtree, &path[depth + 1..], value);
            return;
        }
        let mut nested = container_for(path[depth + 1]);
        insert_nested(&mut nested, &path[depth + 1..], value);
        self.created.insert(parent.clone(), self.ops.len());
        self.ops.push(Op::Add {
            path: pointer_buf(parent, &path[..=depth]),
            value: nested,
        });
    }

    /// Replaces the existing value at `path`.
    pub fn replace(&mut self, path: &[&str], value: Value) {
        self.ops.push(Op::Replace {
            path: pointer(path),
            value,
        });
    }

    pub fn build(self) -> Patch {
        Patch(
            self.ops
                .into_iter()
                .map(|op| match op {
                    Op::Add { path, value } => PatchOperation::Add(AddOperation { path, value }),
                    Op::Replace { path, value } => {
                        PatchOperation::Replace(ReplaceOperation { path, value })
                    }
                })
                .collect(),
        )
    }
}

/// The RFC 6901 pointer of `tokens`.
fn pointer(tokens: &[&str]) -> PointerBuf {
    pointer_buf(escaped(tokens), tokens)
}

/// `tokens` as an RFC 6901 pointer string, each escaped.
fn escaped(tokens: &[&str]) -> String {
    let mut out = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum::<usize>() + 8);
    for token in tokens {
        out.push('/');
        if token.bytes().any(|b| b == b'~' || b == b'/') {
            for c in token.chars() {
                match c {
                    '~' => out.push_str("~0"),
                    '/' => out.push_str("~1"),
                    c => out.push(c),
                }
            }
        } else {
            out.push_str(token);
        }
    }
    out
}

/// The pointer [`escaped`] wrote for `tokens`: always valid, so `parse` only checks it; were it
/// ever refused, jsonptr builds the pointer from the same tokens instead.
fn pointer_buf(escaped: String, tokens: &[&str]) -> PointerBuf {
    PointerBuf::parse(escaped).unwrap_or_else(|_| PointerBuf::from_tokens(tokens.iter().copied()))
}

/// Writes `patch` as JSON, byte for byte what `serde_json::to_vec(patch)` writes.
///
/// By hand because serde_json checks every byte of every string for escapes one at a time: for
/// the patch of a one-container Deployment that was 18,000 of the review's 190,000 instructions
/// (benches/load.rs `--callgrind`). Here a string is checked in one branch-free pass and copied
/// whole; the rare string that needs escapes, and everything but `add` and `replace`, still goes
/// through serde_json.
pub fn write_json(patch: &Patch, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.push(b'[');
    for (i, op) in patch.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (op, path, value) = match op {
            PatchOperation::Add(a) => ("add", &a.path, &a.value),
            PatchOperation::Replace(r) => ("replace", &r.path, &r.value),
            other => {
                serde_json::to_writer(&mut *out, other)?;
                continue;
            }
        };
        out.extend_from_slice(br#"{"op":""#);
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(br#"","path":"#);
        write_string(out, path.as_str())?;
        out.extend_from_slice(br#","value":"#);
        write_value(out, value)?;
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
            Ok(())
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key)?;
                out.push(b':');
                write_value(out, item)?;
            }
            out.push(b'}');
            Ok(())
        }
        scalar => serde_json::to_writer(&mut *out, scalar),
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    // What serde_json escapes: `"`, `\` and the control characters below 0x20.
    let escapes = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        return serde_json::to_writer(&mut *out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

fn child<'v>(v: &'v Value, token: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

/// An empty container of the kind that `next` indexes into.
fn container_for(next: &str) -> Value {
    if next == APPEND {
        Value::Array(Vec::new())
    } else {
        Value::Object(Map::new())
    }
}

/// Sets `value` at `tokens` below `target`, creating objects/arrays on the way.
fn insert_nested(target: &mut Value, tokens: &[&str], value: Value) {
    let Some((first, rest)) = tokens.split_first() else {
        *target = value;
        return;
    };
    if rest.is_empty() {
        match target {
            Value::Array(a) if *first == APPEND => a.push(value),
            Value::Object(m) => {
                m.insert((*first).to_string(), value);
            }
            _ => {}
        }
        return;
    }
    let next = match target {
        Value::Object(m) => m.entry(*first).or_insert_with(|| container_for(rest[0])),
        Value::Array(a) if *first == APPEND => {
            a.push(container_for(rest[0]));
            let last = a.len() - 1;
            &mut a[last]
        }
        Value::Array(a) => match first.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(v) => v,
            None => return,
        },
        _ => return,
    };
    insert_nested(next, rest, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: &Value, patch: &Patch) -> Value {
        let mut out = doc.clone();
        json_patch::patch(&mut out, patch).expect("patch applies");
        out
    }

    #[test]
    fn missing_parents_are_created_once() {
        let doc = json!({"metadata": {"name": "x"}});
        let mut b = PatchBuilder::new(&doc);
        b.add(&["metadata", "annotations", "a/b"], json!("1"));
        b.add(&["metadata", "annotations", "c~d"], json!("2"));
        let patch = b.build();
        assert_eq!(patch.0.len(), 1);
        let out = apply(&doc, &patch);
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"a/b": "1", "c~d": "2"})
        );
    }

    #[test]
    fn keys_are_escaped_in_pointers() {
        let doc = json!({"metadata": {"annotations": {}}});
        let mut b = PatchBuilder::new(&doc);
        b.add(
            &["metadata", "annotations", "wasm-admission.io/injected"],
            json!("x"),
        );
        let text = serde_json::to_string(&b.build()).unwrap();
        assert!(
            text.contains("/metadata/annotations/wasm-admission.io~1injected"),
            "{text}"
        );
    }

    #[test]
    fn appends_create_the_array_when_absent() {
        let doc = json!({"c": [{"name": "a"}, {"name": "b", "env": [{"name": "X"}]}]});
        let mut b = PatchBuilder::new(&doc);
        b.add(&["c", "0", "env", APPEND], json!({"name": "A"}));
        b.add(&["c", "0", "env", APPEND], json!({"name": "B"}));
        b.add(&["c", "1", "env", APPEND], json!({"name": "C"}));
        let patch = b.build();
        assert_eq!(patch.0.len(), 2);
        let out = apply(&doc, &patch);
        assert_eq!(out["c"][0]["env"], json!([{"name": "A"}, {"name": "B"}]));
        assert_eq!(out["c"][1]["env"], json!([{"name": "X"}, {"name": "C"}]));
    }

    #[test]
    fn patch_building_is_linear_in_the_number_of_containers() {
        // 20,000 containers without env or resources: 120,000 adds. A scan of the earlier
        // operations per add is quadratic (about 10^9 path comparisons here); the lookup by path
        // takes milliseconds.
        let containers: Vec<Value> = (0..20_000)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect();
        let doc = json!({"spec": {"containers": containers}});
        let started = std::time::Instant::now();
        let mut b = PatchBuilder::new(&doc);
        for r in ["cpu", "memory"] {
            for section in ["requests", "limits"] {
                for i in 0..20_000 {
                    let i = i.to_string();
                    let path = ["spec", "containers", &i, "resources", section, r];
                    b.add(&path, json!("1"));
                }
            }
        }
        for i in 0..20_000 {
            let i = i.to_string();
            for name in ["A", "B"] {
                let path = ["spec", "containers", &i, "env", APPEND];
                b.add(&path, json!({"name": name}));
            }
        }
        let patch = b.build();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        assert_eq!(patch.0.len(), 40_000);
        let out = apply(&doc, &patch);
        assert_eq!(
            out["spec"]["containers"][19_999]["env"],
            json!([{"name": "A"}, {"name": "B"}])
        );
        assert_eq!(
            out["spec"]["containers"][7]["resources"]["limits"]["memory"],
            "1"
        );
    }

    #[test]
    fn written_json_is_what_serde_json_writes() {
        let doc = json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {}});
        let mut b = PatchBuilder::new(&doc);
        b.add(&["spec", "runtimeClassName"], json!("wasm"));
        b.add(
            &["metadata", "annotations", "a/b~c"],
            json!("quote \" backslash \\ newline \n tab \t bell \u{7} é ✓"),
        );
        b.add(
            &["spec", "containers", "0", "env", APPEND],
            json!({"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
        );
        b.add(
            &["spec", "containers", "0", "extra"],
            json!([null, true, false, 0, -7, 1.5, 1e300, "", [], {}, {"z": 1, "a": [2]}]),
        );
        b.replace(&["metadata"], json!({"\u{0}key\u{1f}": "\u{7f}"}));
        let mut patch = b.build();
        patch
            .0
            .push(serde_json::from_value(json!({"op": "remove", "path": "/x"})).unwrap());
        patch.0.push(
            serde_json::from_value(json!({"op": "move", "from": "/a", "path": "/b"})).unwrap(),
        );
        let mut ours = Vec::new();
        write_json(&patch, &mut ours).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&patch).unwrap()
        );
        let mut empty = Vec::new();
        write_json(&Patch(Vec::new()), &mut empty).unwrap();
        assert_eq!(empty, b"[]");
    }

    #[test]
    fn null_parents_are_replaced_by_an_add() {
        let doc = json!({"spec": {"resources": null}});
        let mut b = PatchBuilder::new(&doc);
        b.add(&["spec", "resources", "limits", "cpu"], json!("1"));
        let out = apply(&doc, &b.build());
        assert_eq!(out["spec"]["resources"], json!({"limits": {"cpu": "1"}}));
    }
}
