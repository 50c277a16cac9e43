//! The time budget of one review: kube-apiserver appends `?timeout=10s` (the webhook's
//! `timeoutSeconds`, as a Go duration) to every call, and gives up waiting after it.

use std::time::{Duration, Instant};

/// Used when the request names no budget (or one that cannot be read): the apiserver's default
/// `timeoutSeconds`.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// The longest body read allowed, whatever the budget says (the apiserver allows at most 30s).
pub const MAX_BUDGET: Duration = Duration::from_secs(30);

/// How long one review may take, counted from when its request arrived.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub start: Instant,
    pub total: Duration,
    /// Whether the request named the budget (`?timeout=`), or the default applies.
    pub given: bool,
}

impl Budget {
    /// Reads `timeout` from a raw query string; any other parameter is ignored.
    pub fn from_query(start: Instant, query: Option<&str>) -> Self {
        let given = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "timeout")
                .and_then(|(_, v)| parse_go_duration(&v).ok())
        });
        Self {
            start,
            total: given.unwrap_or(DEFAULT_BUDGET).min(MAX_BUDGET),
            given: given.is_some(),
        }
    }

    /// Time left; zero when spent.
    pub fn remaining(&self) -> Duration {
        self.total.saturating_sub(self.start.elapsed())
    }

    pub fn is_spent(&self) -> bool {
        self.start.elapsed() >= self.total
    }
}

/// Why a Go duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Go duration (such as 10s, 500ms or 1m30s): {0:?}")]
pub struct DurationError(String);

/// Parses a Go `time.Duration` string: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), such as `10s`, `1.5h`
/// or `1m30s`; `0` alone is zero. Negative durations are refused (a budget cannot be negative).
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    let s = text.strip_prefix('+').unwrap_or(text);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (number, tail) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(err());
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(err)?;
        // The fraction, to nanosecond precision (Go rounds down too).
        let mut scale = unit_nanos;
        for digit in fraction.bytes().take(30) {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(err)?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err())?;
    // The remainder is below 1e9, so it fits a u32.
    let sub = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| err())?;
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_the_apiserver_sends() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("30s", Duration::from_secs(30)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("2h", Duration::from_secs(7200)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("+3s", Duration::from_secs(3)),
            ("1h2m3.5s", Duration::from_millis(3_723_500)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_refused() {
        for text in [
            "",
            "10",
            "s",
            "-1s",
            "1x",
            "1.2.3s",
            ".s",
            "10 s",
            "99999999999999999999999h",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn budget_comes_from_the_query_or_the_default() {
        let now = Instant::now();
        let b = Budget::from_query(now, Some("timeout=5s"));
        assert_eq!((b.total, b.given), (Duration::from_secs(5), true));
        let b = Budget::from_query(now, Some("x=1&timeout=1m30s"));
        assert_eq!(b.total, MAX_BUDGET);
        let b = Budget::from_query(now, Some("timeout=soon"));
        assert_eq!((b.total, b.given), (DEFAULT_BUDGET, false));
        let b = Budget::from_query(now, None);
        assert_eq!(b.total, DEFAULT_BUDGET);
        let b = Budget::from_query(now, Some("timeout=0"));
        assert!(b.is_spent());
        assert_eq!(b.remaining(), Duration::ZERO);
    }
}
