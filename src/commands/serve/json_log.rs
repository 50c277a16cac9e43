//! `--log-format json`: one JSON object per line, written straight into the line buffer.
//!
//! The lines are those of tracing-subscriber's JSON format with `flatten_event(true)` and no spans:
//! `{"timestamp":"…","level":"INFO","message":"…",<fields>,"target":"…"}`. That formatter sends
//! every field through serde (a serializer over an `io::Write` adaptor over the `fmt::Write`
//! buffer); for the twelve fields of the per-review line that came to about 25,000 instructions,
//! a tenth of `serve`'s CPU per review outside the engine (docs/performance.md). Here each field
//! is a few `write_str` calls.
//!
//! Why it is kept instead of `.json()`: under the load benchmark (`cargo bench --bench load --
//! --quick`, release build, 25 keep-alive connections), `serve` used 2.52× the transport floor's
//! CPU per review with this formatter and 3.28× with tracing-subscriber's, 23% less; it was lower
//! at 1, 8 and 64 connections too (docs/performance.md, "Hand-written code, remeasured").

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::core::json_text;

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
        writer.write_str(&rfc3339_micros(std::time::SystemTime::now()))?;
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
        json_text::write_quoted(&mut writer, meta.target())?;
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
                json_text::write_quoted(self.out, field.name())?;
                self.out.write_char(':')?;
                value(self.out)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| json_text::write_quoted(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    // Integers through `itoa`: `write!` took 500 instructions for each.
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
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

/// `at` as tracing-subscriber's `SystemTime` timer writes it (`2026-11-25T20:00:00.123456Z`, UTC,
/// microseconds) for years 1970 to 9999; a clock outside them reads as the epoch (the `time`
/// crate's `From<SystemTime>` would panic past its range). The calendar is the `time` crate's;
/// the digits are written here because going through `fmt` for them was a quarter of the log
/// line's instructions.
fn rfc3339_micros(at: std::time::SystemTime) -> TimeText {
    let t = at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| {
            let nanos = i128::try_from(since.as_nanos()).ok()?;
            time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
        })
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut text = TimeText(*b"0000-00-00T00:00:00.000000Z");
    let year = t.year().clamp(0, 9999) as u32;
    text.digits(0, 4, year);
    text.digits(5, 2, u32::from(u8::from(t.month())));
    text.digits(8, 2, u32::from(t.day()));
    text.digits(11, 2, u32::from(t.hour()));
    text.digits(14, 2, u32::from(t.minute()));
    text.digits(17, 2, u32::from(t.second()));
    text.digits(20, 6, t.microsecond());
    text
}

/// The 27 ASCII bytes of an RFC 3339 UTC timestamp with microseconds.
struct TimeText([u8; 27]);

impl TimeText {
    /// Writes `value` as `len` decimal digits ending before `at + len`.
    fn digits(&mut self, at: usize, len: usize, mut value: u32) {
        for slot in self.0[at..at + len].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
}

impl std::ops::Deref for TimeText {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII digits and separators are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Escapes what passes through it for the inside of a JSON string (the `Debug` form of a field).
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        json_text::write_escaped(&mut self.0, s)
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
        error!(shown = %Shown, debug = ?vec!["x", "y\n"], negative = -3i64, min = i64::MIN, max = u64::MAX, ratio = 0.25f64, whole = 2.0f64, nan = f64::NAN, big = u128::MAX, "line with\nnewline and \u{7f}");
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
    fn timestamps_are_written_as_tracing_subscriber_writes_them_and_never_panic() {
        use std::time::{Duration, UNIX_EPOCH};
        for (secs, nanos, text) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 999_999_999, "2000-02-29T00:00:00.999999Z"),
            (1_709_251_199, 1_000, "2024-02-29T23:59:59.000001Z"),
            (1_795_636_800, 123_456_789, "2026-11-25T20:00:00.123456Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000000Z"),
            // Past the calendar's range: the epoch, not a panic.
            (253_402_300_800, 0, "1970-01-01T00:00:00.000000Z"),
            (u64::MAX / 4, 0, "1970-01-01T00:00:00.000000Z"),
        ] {
            let at = UNIX_EPOCH + Duration::new(secs, nanos);
            assert_eq!(&*rfc3339_micros(at), text);
        }
    }
}
