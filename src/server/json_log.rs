//! `--log-format json`: one JSON object per line, written straight into the line buffer.
//!
//! The lines are those of tracing-subscriber's JSON format with `flatten_event(true)` and no spans:
//! `{"timestamp":"…","level":"INFO","message":"…",<fields>,"target":"…"}`. That formatter sends
//! every field through serde (a serializer over an `io::Write` adaptor over the `fmt::Write`
//! buffer); for the twelve fields of the per-review line that came to about 25,000 instructions,
//! a tenth of `serve`'s CPU per review outside the engine (benches/load.rs; README, Performance).
//! Here each field is a few `write_str` calls.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line format of `serve` (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records of the `log` crate (rustls logs through it) carry their real target here.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        // RFC 3339 digits and separators: nothing to escape.
        SystemTime.format_time(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`: strings escaped, integers and booleans bare, floats as
/// numbers (`null` when not finite), anything else as the string of its `Debug` form.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.out.write_char(',')?;
                write_string(self.out, field.name())?;
                self.out.write_char(':')?;
                value(self.out)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_string(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |out| {
            if value.is_finite() {
                write!(out, "{value:?}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(Escaped(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// A JSON string: quoted and escaped.
fn write_string(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(&mut *out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string, as serde_json does: `"`, `\`
/// and the control characters (short forms where JSON has them, else `\u00XX`).
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        // Almost every string needs no escape: checked in one branch-free pass, written whole.
        let escapes = bytes.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if !escapes {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            // Every byte matched above is ASCII, so `i` is a character boundary.
            self.0.write_str(&s[start..i])?;
            if short.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(short)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing::{error, info, warn};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    struct Shown;
    impl fmt::Display for Shown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a \"quoted\"\tvalue\\ with é and \u{1}")
        }
    }

    fn events() {
        let uid = String::from("705ab4f5-6393-11e8-b7cc-42010a800002");
        info!(
            endpoint = "mutate",
            uid = %uid,
            kind = %"Deployment",
            namespace = %"shop",
            name = %"cart",
            operation = "CREATE",
            outcome = "mutated",
            allowed = true,
            patch_ops = 9usize,
            duration_us = 87u64,
            budget_ms = 10_000u64,
            "admission review"
        );
        warn!(status = 415u16, error = %"Content-Type must be \"application/json\"", duration_us = 4u64, "admission review refused");
        error!(shown = %Shown, debug = ?vec!["x", "y\n"], negative = -3i64, ratio = 0.25f64, whole = 2.0f64, nan = f64::NAN, big = u128::MAX, "line with\nnewline and \u{7f}");
        info!(
            metrics_addr = Option::<String>::None,
            dev = false,
            "listening"
        );
    }

    /// The same events through tracing-subscriber's own JSON format and through [`JsonLines`]
    /// give the same JSON lines, but for the timestamp.
    #[test]
    fn same_lines_as_tracing_subscriber_json() {
        let theirs = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let b = theirs.clone();
                move || b.clone()
            })
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let ours = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let b = ours.clone();
                move || b.clone()
            })
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let (theirs, ours) = (theirs.lines(), ours.lines());
        assert_eq!(theirs.len(), 4);
        assert_eq!(ours.len(), theirs.len());
        for (t, o) in theirs.iter().zip(&ours) {
            let mut tv: Value = serde_json::from_str(t).unwrap();
            let mut ov: Value = serde_json::from_str(o).expect("valid JSON");
            let stamp = ov["timestamp"].as_str().unwrap().to_string();
            assert_eq!(stamp.len(), 27, "{stamp}");
            assert!(stamp.ends_with('Z'), "{stamp}");
            tv["timestamp"] = Value::Null;
            ov["timestamp"] = Value::Null;
            // Same keys in the same order, same values.
            assert_eq!(
                serde_json::to_string(&ov).unwrap(),
                serde_json::to_string(&tv).unwrap()
            );
            // Byte for byte from the level on.
            assert_eq!(
                &o[o.find("\"level\"").unwrap()..],
                &t[t.find("\"level\"").unwrap()..]
            );
        }
    }

    #[test]
    fn escapes_like_serde_json() {
        for s in [
            "plain",
            "q\"b\\s",
            "\u{0}\u{1f}\n\r\t\u{8}\u{c}",
            "é ü 日本",
            "",
        ] {
            let mut out = String::new();
            write_string(&mut out, s).unwrap();
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }
}
