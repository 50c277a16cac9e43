//! JSON Patch (RFC 6902) building against the object exactly as received.
//!
//! Every `add` must find its parent: the apiserver's patch library refuses an `add` under a
//! missing object. The builder therefore asks the original document which parents exist and,
//! where one is missing (or null), adds the highest missing one with the nested value inside it;
//! later adds under that new parent are merged into the same operation.
//!
//! The patch is built as JSON text, which is what the AdmissionReview answer carries (base64),
//! from values of the small [`Node`] tree: strings borrowed from the object, the configuration
//! or the program, objects as sorted lists of borrowed keys. Building `serde_json::Value`s and
//! `json_patch` operations instead (a `String` per key, a `BTreeMap` per object, a checked
//! `PointerBuf` per path), serializing them and dropping them was two thirds of a review's engine
//! time (benches/load/ `--callgrind`, docs/performance.md). [`Patch::operations`] gives the
//! typed `json_patch` operations to the doors and tests that apply the patch.
//!
//! Paths come in as borrowed, unescaped tokens; each pointer is written once, escaped
//! (`~` → `~0`, `/` → `~1`, RFC 6901).

use std::borrow::Cow;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::core::json_text;

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

/// A JSON value a patch adds: every value the rules write is a string, an object of them or an
/// array of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'v> {
    Str(Cow<'v, str>),
    /// A value already written as compact JSON text (objects with their keys in ascending order,
    /// as [`Node::Obj`] writes them), copied into the patch as it is: a value the rules write
    /// whole, built once instead of as a tree.
    Json(Cow<'v, str>),
    /// Keys in ascending order, each once (as `serde_json::Map` keeps them).
    Obj(Vec<(Cow<'v, str>, Node<'v>)>),
    Arr(Vec<Node<'v>>),
}

impl<'v> Node<'v> {
    /// A string value.
    pub fn str(s: impl Into<Cow<'v, str>>) -> Self {
        Node::Str(s.into())
    }

    /// An object from `(key, value)` pairs, in any order; a repeated key keeps its last value.
    pub fn obj<const N: usize>(pairs: [(&'v str, Node<'v>); N]) -> Self {
        let mut object = Node::Obj(Vec::with_capacity(N));
        for (key, value) in pairs {
            object.insert(Cow::Borrowed(key), value);
        }
        object
    }

    /// Sets `key` in an object, keeping the keys sorted; anything else is left as it is.
    fn insert(&mut self, key: Cow<'v, str>, value: Node<'v>) -> Option<&mut Node<'v>> {
        let Node::Obj(entries) = self else {
            return None;
        };
        let at = match entries.binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref())) {
            Ok(at) => {
                entries[at].1 = value;
                at
            }
            Err(at) => {
                entries.insert(at, (key, value));
                at
            }
        };
        Some(&mut entries[at].1)
    }

    /// The value under `key`, created by `make` when absent (objects only).
    fn entry(&mut self, key: &str, make: impl FnOnce() -> Node<'v>) -> Option<&mut Node<'v>> {
        let Node::Obj(entries) = self else {
            return None;
        };
        let at = match entries.binary_search_by(|(k, _)| k.as_ref().cmp(key)) {
            Ok(at) => at,
            Err(at) => {
                entries.insert(at, (Cow::Owned(key.to_string()), make()));
                at
            }
        };
        Some(&mut entries[at].1)
    }

    /// The value as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Node::Str(s) => json_text::push_quoted(out, s),
            Node::Json(text) => out.push_str(text),
            Node::Obj(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_text::push_quoted(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
            Node::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
        }
    }
}

/// An RFC 6902 JSON Patch, as the JSON text of its operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    /// Empty when there is no operation.
    json: String,
    len: usize,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The JSON array of the operations (`[]` when empty).
    pub fn as_json(&self) -> &str {
        if self.json.is_empty() {
            "[]"
        } else {
            &self.json
        }
    }

    /// The operations, typed, for applying the patch (the `check` door, tests).
    pub fn operations(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::from_str(self.as_json())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum OpKind {
    Add,
    Replace,
}

struct Op<'v> {
    kind: OpKind,
    /// Escaped RFC 6901 pointer.
    path: String,
    value: Node<'v>,
}

pub struct PatchBuilder<'v> {
    doc: &'v dyn Document,
    ops: Vec<Op<'v>>,
    /// The `add`s that create a missing parent (the only ones later adds merge into), by escaped
    /// pointer, to their index in `ops`. A lookup, not a scan: scanning them for every add made
    /// a pod with many containers cost quadratic time (one 3 MiB review could pin a core for
    /// minutes). FxHash, not SipHash: the keys are pointers made of the rules' tokens, configured
    /// keys and container indexes, nothing a client can choose to collide, and SipHash was a
    /// tenth of the builder's time.
    created: FxHashMap<String, usize>,
}

impl<'v> PatchBuilder<'v> {
    pub fn new(doc: &'v dyn Document) -> Self {
        Self {
            doc,
            ops: Vec::new(),
            created: FxHashMap::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds `value` at `path` (tokens, unescaped), creating missing parents.
    pub fn add(&mut self, path: &[&str], value: Node<'v>) {
        let Some(parents) = path.len().checked_sub(1) else {
            return; // the whole document is never replaced by an add
        };
        let depth = self.doc.existing_depth(&path[..parents]);
        if depth == parents {
            self.ops.push(Op {
                kind: OpKind::Add,
                path: escaped(path),
                value,
            });
        } else {
            self.add_under_missing(path, depth, value);
        }
    }

    /// Adds each of `values` at `path` in turn (with a final `-`: appends them in order), as that
    /// many [`Self::add`]s would, with the path looked up and escaped once.
    pub fn add_all(&mut self, path: &[&str], values: impl IntoIterator<Item = Node<'v>>) {
        let Some(parents) = path.len().checked_sub(1) else {
            return;
        };
        let depth = self.doc.existing_depth(&path[..parents]);
        if depth < parents {
            // The first value creates the missing parent, the others merge into it.
            for value in values {
                self.add_under_missing(path, depth, value);
            }
            return;
        }
        let pointer = escaped(path);
        for value in values {
            self.ops.push(Op {
                kind: OpKind::Add,
                path: pointer.clone(),
                value,
            });
        }
    }

    /// Adds `value` at `path`, whose parent `path[depth]` is the first one missing (or null) in
    /// the document. A parent is always created at the first missing one, so an earlier add under
    /// it, if any, created exactly `path[..=depth]`: merge into that operation's value.
    fn add_under_missing(&mut self, path: &[&str], depth: usize, value: Node<'v>) {
        let parent = escaped(&path[..=depth]);
        if let Some(&index) = self.created.get(&parent)
            && let Some(op) = self.ops.get_mut(index)
        {
            insert_nested(&mut op.value, &path[depth + 1..], value);
            return;
        }
        let mut nested = container_for(path[depth + 1]);
        insert_nested(&mut nested, &path[depth + 1..], value);
        self.created.insert(parent.clone(), self.ops.len());
        self.ops.push(Op {
            kind: OpKind::Add,
            path: parent,
            value: nested,
        });
    }

    /// Replaces the existing value at `path`.
    pub fn replace(&mut self, path: &[&str], value: Node<'v>) {
        self.ops.push(Op {
            kind: OpKind::Replace,
            path: escaped(path),
            value,
        });
    }

    /// The patch as JSON text: what `serde_json` writes for the same `json_patch` operations,
    /// byte for byte (a unit test compares them).
    pub fn build(self) -> Patch {
        if self.ops.is_empty() {
            return Patch::default();
        }
        let mut json = String::with_capacity(256 * self.ops.len());
        json.push('[');
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(match op.kind {
                OpKind::Add => r#"{"op":"add","path":"#,
                OpKind::Replace => r#"{"op":"replace","path":"#,
            });
            json_text::push_quoted(&mut json, &op.path);
            json.push_str(r#","value":"#);
            op.value.write(&mut json);
            json.push('}');
        }
        json.push(']');
        Patch {
            json,
            len: self.ops.len(),
        }
    }
}

/// `tokens` as an RFC 6901 pointer string, each escaped.
fn escaped(tokens: &[&str]) -> String {
    let mut out = String::with_capacity(96);
    for token in tokens {
        let needs = token
            .bytes()
            .fold(false, |any, b| any | (b == b'~') | (b == b'/'));
        out.push('/');
        if needs {
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

fn child<'v>(v: &'v Value, token: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

/// An empty container of the kind that `next` indexes into.
fn container_for<'v>(next: &str) -> Node<'v> {
    if next == APPEND {
        Node::Arr(Vec::new())
    } else {
        Node::Obj(Vec::new())
    }
}

/// Sets `value` at `tokens` below `target`, creating objects/arrays on the way.
fn insert_nested<'v>(target: &mut Node<'v>, tokens: &[&str], value: Node<'v>) {
    let Some((first, rest)) = tokens.split_first() else {
        *target = value;
        return;
    };
    if rest.is_empty() {
        match target {
            Node::Arr(a) if *first == APPEND => a.push(value),
            Node::Obj(_) => {
                target.insert(Cow::Owned((*first).to_string()), value);
            }
            _ => {}
        }
        return;
    }
    let next = match target {
        Node::Obj(_) => match target.entry(first, || container_for(rest[0])) {
            Some(next) => next,
            None => return,
        },
        Node::Arr(a) if *first == APPEND => {
            a.push(container_for(rest[0]));
            match a.last_mut() {
                Some(next) => next,
                None => return,
            }
        }
        Node::Arr(a) => match first.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(v) => v,
            None => return,
        },
        Node::Str(_) | Node::Json(_) => return,
    };
    insert_nested(next, rest, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: &Value, patch: &Patch) -> Value {
        let mut out = doc.clone();
        json_patch::patch(&mut out, &patch.operations().expect("patch is JSON Patch"))
            .expect("patch applies");
        out
    }

    #[test]
    fn missing_parents_are_created_once() {
        let doc = json!({"metadata": {"name": "x"}});
        let mut b = PatchBuilder::new(&doc);
        b.add(&["metadata", "annotations", "c~d"], Node::str("2"));
        b.add(&["metadata", "annotations", "a/b"], Node::str("1"));
        let patch = b.build();
        assert_eq!(patch.len(), 1);
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
            Node::str("x"),
        );
        b.add(&["metadata", "annotations", "a~b"], Node::str("y"));
        let patch = b.build();
        let text = patch.as_json();
        assert!(
            text.contains("/metadata/annotations/wasm-admission.io~1injected"),
            "{text}"
        );
        assert!(text.contains("/metadata/annotations/a~0b"), "{text}");
        let out = apply(&doc, &patch);
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"wasm-admission.io/injected": "x", "a~b": "y"})
        );
    }

    #[test]
    fn appends_create_the_array_when_absent() {
        let doc = json!({"c": [{"name": "a"}, {"name": "b", "env": [{"name": "X"}]}]});
        let mut b = PatchBuilder::new(&doc);
        b.add(
            &["c", "0", "env", APPEND],
            Node::obj([("name", Node::str("A"))]),
        );
        b.add(
            &["c", "0", "env", APPEND],
            Node::obj([("name", Node::str("B"))]),
        );
        b.add(
            &["c", "1", "env", APPEND],
            Node::obj([("name", Node::str("C"))]),
        );
        let patch = b.build();
        assert_eq!(patch.len(), 2);
        let out = apply(&doc, &patch);
        assert_eq!(out["c"][0]["env"], json!([{"name": "A"}, {"name": "B"}]));
        assert_eq!(out["c"][1]["env"], json!([{"name": "X"}, {"name": "C"}]));
    }

    #[test]
    fn add_all_writes_what_one_add_per_value_writes() {
        let doc = json!({"c": [{"name": "a"}, {"name": "b~/", "env": [{"name": "X"}]}]});
        let values = || {
            ["A", "B", "C"]
                .map(|name| Node::obj([("name", Node::str(name))]))
                .to_vec()
        };
        for path in [["c", "0", "env", APPEND], ["c", "1", "env", APPEND]] {
            let mut each = PatchBuilder::new(&doc);
            for value in values() {
                each.add(&path, value);
            }
            let mut all = PatchBuilder::new(&doc);
            all.add_all(&path, values());
            assert_eq!(all.build(), each.build(), "{path:?}");
        }
    }

    /// The text is what serde_json writes for the same operations, so the answer and `check`'s
    /// output are unchanged byte for byte: keys sorted, the same escapes.
    #[test]
    fn written_json_is_what_serde_json_writes_for_the_same_operations() {
        let doc = json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {}});
        let mut b = PatchBuilder::new(&doc);
        b.add(&["spec", "runtimeClassName"], Node::str("wasm"));
        let tricky: String = (0u8..0x20).map(char::from).collect::<String>()
            + "quote \" backslash \\ delete \u{7f} é ✓ \u{2028}";
        b.add(
            &["metadata", "annotations", "a/b~c\"d"],
            Node::str(tricky.clone()),
        );
        b.add(
            &["spec", "containers", "0", "env", APPEND],
            Node::obj([
                ("value", Node::str("1")),
                ("name", Node::str("X")),
                (
                    "valueFrom",
                    Node::obj([(
                        "fieldRef",
                        Node::obj([("fieldPath", Node::str("spec.nodeName"))]),
                    )]),
                ),
            ]),
        );
        b.add(
            &["spec", "containers", "0", "resources", "limits", "memory"],
            Node::str("64Mi"),
        );
        b.add(
            &["spec", "containers", "0", "resources", "limits", "cpu"],
            Node::str("100m"),
        );
        b.add(
            &["spec", "containers", "0", "extra"],
            Node::Arr(vec![Node::str(""), Node::Arr(vec![]), Node::Obj(vec![])]),
        );
        b.replace(
            &["metadata"],
            Node::obj([("z", Node::str("1")), ("a", Node::str("2"))]),
        );
        let patch = b.build();
        let typed = patch.operations().expect("JSON Patch");
        assert_eq!(patch.len(), typed.0.len());
        assert_eq!(patch.as_json(), serde_json::to_string(&typed).unwrap());
        let expected = json!([
            {"op": "add", "path": "/spec/runtimeClassName", "value": "wasm"},
            {"op": "add", "path": "/metadata/annotations", "value": {"a/b~c\"d": tricky}},
            {"op": "add", "path": "/spec/containers/0/env", "value": [
                {"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
            ]},
            {"op": "add", "path": "/spec/containers/0/resources", "value": {"limits": {"cpu": "100m", "memory": "64Mi"}}},
            {"op": "add", "path": "/spec/containers/0/extra", "value": ["", [], {}]},
            {"op": "replace", "path": "/metadata", "value": {"a": "2", "z": "1"}}
        ]);
        assert_eq!(patch.as_json(), serde_json::to_string(&expected).unwrap());
        assert_eq!(Patch::default().as_json(), "[]");
        assert!(Patch::default().operations().unwrap().0.is_empty());
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
        let indexes: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
        for r in ["cpu", "memory"] {
            for section in ["requests", "limits"] {
                for i in &indexes {
                    let path = ["spec", "containers", i.as_str(), "resources", section, r];
                    b.add(&path, Node::str("1"));
                }
            }
        }
        for i in &indexes {
            for name in ["A", "B"] {
                let path = ["spec", "containers", i.as_str(), "env", APPEND];
                b.add(&path, Node::obj([("name", Node::str(name))]));
            }
        }
        let patch = b.build();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        assert_eq!(patch.len(), 40_000);
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
        b.add(&["spec", "resources", "limits", "cpu"], Node::str("1"));
        let out = apply(&doc, &b.build());
        assert_eq!(out["spec"]["resources"], json!({"limits": {"cpu": "1"}}));
    }
}
