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
    /// pointer, to their index in `ops`. A lookup, not a scan: scanning them for every add made a
    /// pod with many containers cost quadratic time (one 3 MiB review could pin a core for
    /// minutes).
    created: HashMap<PointerBuf, usize>,
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
        let parent = pointer(&path[..=depth]);
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
            path: parent,
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

/// The RFC 6901 pointer of `tokens`, escaped.
fn pointer(tokens: &[&str]) -> PointerBuf {
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
    // Always valid as written, so `parse` only checks it; were it ever refused, jsonptr builds
    // the pointer from the same tokens instead.
    PointerBuf::parse(out).unwrap_or_else(|_| PointerBuf::from_tokens(tokens.iter().copied()))
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
    fn null_parents_are_replaced_by_an_add() {
        let doc = json!({"spec": {"resources": null}});
        let mut b = PatchBuilder::new(&doc);
        b.add(&["spec", "resources", "limits", "cpu"], json!("1"));
        let out = apply(&doc, &b.build());
        assert_eq!(out["spec"]["resources"], json!({"limits": {"cpu": "1"}}));
    }
}
