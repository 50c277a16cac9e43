//! Bounds on what one YAML document may cost `check`, enforced before the object is built.
//!
//! Two costs are unbounded in the YAML library itself: its scanner is quadratic in the depth of
//! flow collections (`[[[[...`), which it reads in full before anything else sees the document,
//! and alias expansion (`*a` repeated, nested anchors) builds every copy. So:
//!
//! - [`prescan`] walks the bytes once, before the library, and refuses flow nesting deeper than
//!   [`MAX_DEPTH`]. It is a small lexer that knows quoted scalars, comments and block scalars,
//!   so brackets inside strings do not count.
//! - [`parse`] builds the value through a visitor that counts every node and scalar byte it
//!   receives, including those replayed by aliases, and stops at a budget proportional to the
//!   document's size (an alias-free document can never reach it), or at [`MAX_DEPTH`] levels of
//!   any kind of nesting.
//! - YAML merge keys (`<<`) are refused rather than applied: kubectl reads YAML 1.1 and merges
//!   them, the YAML 1.2 library keeps a literal `<<` key, and reproducing YAML 1.1's merge rules
//!   exactly (precedence of explicit keys, sequences of maps, a quoted `"<<"` being an ordinary
//!   key) needs the scalar's style, which a visitor does not see. Refusing keeps `check` from
//!   ever reporting on an object other than the one the cluster would receive. No Kubernetes
//!   field, label or annotation key can be `<<`, so nothing valid is lost.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The deepest nesting of collections accepted (a Pod inside a Deployment is about 10 deep;
/// deep CRD schemas about 40). Below the YAML library's own limit of 128.
pub const MAX_DEPTH: usize = 100;

/// Fixed part of the expansion budget, so that small documents may still use a few aliases.
const BUDGET_BASE: usize = 64 * 1024;

/// Refuses flow nesting deeper than [`MAX_DEPTH`], in one pass over the bytes.
pub fn prescan(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let deeper = || format!("YAML nesting is deeper than {MAX_DEPTH} levels");
    let mut i = 0;
    let mut depth = 0usize;
    // A quote here starts a quoted scalar (start of a node).
    let mut at_node = true;
    let mut prev_ws = true;
    let mut line_indent = 0usize;
    // The indentation a line must exceed to continue the plain scalar in progress, if any: the
    // column of the innermost block collection it is in (as the YAML scanner counts it).
    let mut plain_indent: Option<usize> = None;
    // That column: a block sequence's `-`, or a block mapping's first key (`a` in `- a: x`).
    let mut block_col = 0usize;
    // The column of the current node on this line: the line's indentation, or the first
    // character after a `- ` or `? ` indicator (`None` until that character is seen).
    let mut node_col: Option<usize> = Some(0);
    let mut line_begin = 0usize;
    // Block scalar: the header's line indentation, then the content's indentation.
    let mut block_header: Option<usize> = None;
    let mut block_content: Option<usize> = None;
    let mut line_start = true;
    while i < b.len() {
        if line_start {
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let indent = j - i;
            let blank = b[j..]
                .iter()
                .take_while(|&&c| c != b'\n')
                .all(|c| matches!(c, b' ' | b'\t' | b'\r'));
            let in_block_scalar = match (block_header, block_content) {
                (_, Some(content)) => blank || indent >= content,
                (Some(header), None) => {
                    if blank {
                        true
                    } else if indent > header {
                        block_content = Some(indent);
                        true
                    } else {
                        false
                    }
                }
                (None, None) => false,
            };
            if in_block_scalar {
                i = next_line(b, j);
                continue;
            }
            block_header = None;
            block_content = None;
            line_indent = indent;
            node_col = Some(indent);
            if depth == 0 {
                block_col = indent;
            }
            line_begin = i;
            line_start = false;
            prev_ws = true;
            if depth == 0 {
                // A more indented line after a plain scalar continues it; anything else starts
                // a node (a key, an entry, or a value after `key:`).
                match plain_indent {
                    Some(p) if indent > p => {}
                    _ => {
                        at_node = true;
                        plain_indent = None;
                    }
                }
            }
            i = j;
            continue;
        }
        let c = b[i];
        if node_col.is_none() && !matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            node_col = Some(i - line_begin);
        }
        let next_blank = b
            .get(i + 1)
            .is_none_or(|n| matches!(n, b' ' | b'\t' | b'\n' | b'\r'));
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                prev_ws = true;
                i += 1;
                continue;
            }
            b'#' if prev_ws => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' if at_node => {
                i = skip_quoted(b, i);
                at_node = false;
                prev_ws = false;
                continue;
            }
            b'[' | b'{' if at_node || depth > 0 => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(deeper());
                }
                at_node = true;
                plain_indent = None;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                at_node = false;
            }
            b',' if depth > 0 => at_node = true,
            b':' if depth > 0 || next_blank => {
                if depth == 0 {
                    block_col = node_col.unwrap_or(line_indent);
                }
                at_node = true;
                plain_indent = None;
            }
            b'-' | b'?' if at_node && next_blank => {
                if depth == 0 {
                    block_col = i - line_begin;
                    node_col = None;
                }
            }
            b'|' | b'>' if at_node && depth == 0 => {
                block_header = Some(line_indent);
                at_node = false;
            }
            b'&' | b'!' | b'*' if at_node => {
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | b',') {
                    i += 1;
                }
                // An anchor or a tag comes before its node; an alias is the node.
                at_node = c != b'*';
                prev_ws = false;
                continue;
            }
            _ => {
                if at_node && depth == 0 {
                    plain_indent = Some(block_col);
                }
                at_node = false;
            }
        }
        prev_ws = false;
        i += 1;
    }
    Ok(())
}

fn next_line(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i + 1
}

/// The index just past the quoted scalar starting at `start`.
fn skip_quoted(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 2,
            q if q == quote => {
                if quote == b'\'' && b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// Parses one YAML (or JSON) document within the limits above.
pub fn parse(text: &str) -> Result<Value, String> {
    prescan(text)?;
    let budget = Cell::new(BUDGET_BASE.saturating_add(text.len().saturating_mul(4)));
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    Node {
        budget: &budget,
        depth: 0,
    }
    .deserialize(deserializer)
    .map_err(|e| {
        let message = e.to_string();
        if message.contains(LIMIT_MARK) {
            message.replace(LIMIT_MARK, "")
        } else {
            format!("not valid YAML or JSON: {message}")
        }
    })
}

/// Marks the errors raised here, which are not syntax errors.
const LIMIT_MARK: &str = "\u{1}limit\u{1}";

#[derive(Clone, Copy)]
struct Node<'a> {
    budget: &'a Cell<usize>,
    depth: usize,
}

impl Node<'_> {
    fn charge<E: serde::de::Error>(&self, cost: usize) -> Result<(), E> {
        match self.budget.get().checked_sub(cost.saturating_add(1)) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "{LIMIT_MARK}YAML aliases expand to more than 4 times the document's size; \
                 refused before building it"
            ))),
        }
    }

    fn nested<E: serde::de::Error>(&self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "{LIMIT_MARK}YAML nesting is deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Node {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.charge(0)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.charge(0)?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.charge(0)?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.charge(v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.charge(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.charge(0)?;
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            out.push(item);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.charge(0)?;
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "<<" {
                return Err(A::Error::custom(format!(
                    "{LIMIT_MARK}YAML merge keys (<<) are not supported: kubectl would merge \
                     them and check would not, so the object is refused; write the fields out"
                )));
            }
            self.charge(key.len())?;
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_inside_strings_comments_and_block_scalars_do_not_count() {
        let deep = "[".repeat(MAX_DEPTH + 5);
        for text in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: 1 # {deep}\n"),
            format!("a: |\n  {deep}\n  more\nb: 1\n"),
            format!("- >-\n    {deep}\n\n    x\n"),
            format!("a: x{deep}\n"),
            format!("a: plain\n  continued \"{deep}\n"),
            format!("- - x\n    \"{deep}\n"),
        ] {
            assert_eq!(prescan(&text), Ok(()), "{text}");
        }
    }

    #[test]
    fn flow_nesting_is_counted_after_strings_and_scalars_end() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        for text in [
            format!("a: |\n  x\nb: {deep}\n"),
            format!("a: \"]]]\"\nb: {deep}\n"),
            format!("{{\"a\":\"]\",\"b\":{deep}"),
            format!("a: x 'y\nb: {deep}\n"),
            format!("a: x\n  \"y\nb: {deep}\n"),
            // A quoted key on the line after `- a: x` is a new key, not a continuation.
            format!("- a: x\n  \"k: '\": v\n  b: {deep}\n"),
            // ... but the line after `- x` continues the scalar.
            format!("- x\n  'y\n- {deep}\n"),
            format!("a:\n  - x\n    'y\n  - {deep}\n"),
        ] {
            assert!(prescan(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn values_are_built_as_before() {
        let text = "a: [1, -2, 1.5, true, null, ~, 'x']\nb: {c: d}\n\"e\": |\n  f\n";
        let expected: Value = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(parse(text).unwrap(), expected);
    }

    #[test]
    fn a_few_aliases_are_still_accepted() {
        let v = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        assert_eq!(v["c"]["b"], 1);
    }
}
