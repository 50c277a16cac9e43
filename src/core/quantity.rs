//! Kubernetes resource quantities, compared by value (`0.1` = `100m`, `128Mi` ≠ `128M`).
//!
//! Written here rather than taken from `kube_quantity`: that crate parses the number through an
//! `f64` (so `0.1` and `100m` need not compare equal) and its comparisons multiply `Decimal`s,
//! which panics on overflow for hostile input such as `9e18E`. This parser follows the grammar of
//! `k8s.io/apimachinery/pkg/api/resource` exactly and keeps the value as a saturating count of
//! nano-units in an `i128`: exact for every quantity a container can carry, and total (never panics).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed quantity: the text as written (kept for display and for patches) and its value.
#[derive(Clone, Debug)]
pub struct Quantity {
    text: String,
    nanos: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error("quantity {0:?} is longer than 64 characters")]
    TooLong(String),
    #[error(
        "quantity {0:?} does not match the Kubernetes quantity format (e.g. 100m, 0.5, 64Mi, 1e3)"
    )]
    Malformed(String),
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let nanos = parse_nanos(text)?;
        Ok(Self {
            text: text.to_string(),
            nanos,
        })
    }

    /// The value in nano-units (1 = `1n`), saturated at the bounds of `i128`.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Kubernetes accepts a bare number where a quantity string is expected; so do we.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Float(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
        };
        Quantity::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses `<sign><digits>[.<digits>]<suffix>` where suffix is a binary SI suffix (`Ki`..`Ei`),
/// a decimal SI suffix (`n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent
/// (`e3`, `E-2`).
fn parse_nanos(text: &str) -> Result<i128, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    if text.len() > 64 {
        return Err(QuantityError::TooLong(text.chars().take(64).collect()));
    }
    let malformed = || QuantityError::Malformed(text.to_string());
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    // Digits before and after the decimal point, as one integer mantissa with a power of ten.
    let mut mantissa: i128 = 0;
    let mut pow10: i32 = 0;
    let mut digits = 0usize;
    let mut saturated = false;
    let mut push_digit = |d: u8, fractional: bool, mantissa: &mut i128, pow10: &mut i32| {
        match mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(d - b'0')))
        {
            Some(m) if !saturated => {
                *mantissa = m;
                if fractional {
                    *pow10 -= 1;
                }
            }
            // Past 38 significant digits further digits only scale (integer part) or are
            // dropped (fraction); the value is already far beyond any real resource.
            _ => {
                saturated = true;
                if !fractional {
                    *pow10 += 1;
                }
            }
        }
    };
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        push_digit(bytes[i], false, &mut mantissa, &mut pow10);
        digits += 1;
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            push_digit(bytes[i], true, &mut mantissa, &mut pow10);
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return Err(malformed());
    }
    let suffix = &text[i..];
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits_start = usize::from(exp.starts_with(['+', '-']));
            if exp.len() == digits_start || !exp[digits_start..].bytes().all(|b| b.is_ascii_digit())
            {
                return Err(malformed());
            }
            // Longer exponents saturate below: any |exponent| past 1000 is off every scale.
            let e: i32 = exp
                .parse()
                .unwrap_or(if exp.starts_with('-') { -1000 } else { 1000 });
            (e.clamp(-1000, 1000), 0)
        }
        _ => return Err(malformed()),
    };
    let mut value = scale(mantissa, pow10 + exp10 + 9);
    if exp2 > 0 {
        value = value.checked_mul(1i128 << exp2).unwrap_or(i128::MAX);
    }
    Ok(if negative { -value } else { value })
}

/// `mantissa × 10^exp`, rounding a fraction of a nano-unit up (as Kubernetes does) and
/// saturating at `i128::MAX`.
fn scale(mantissa: i128, exp: i32) -> i128 {
    if mantissa == 0 {
        return 0;
    }
    if exp >= 0 {
        let mut v = mantissa;
        for _ in 0..exp {
            match v.checked_mul(10) {
                Some(n) => v = n,
                None => return i128::MAX,
            }
        }
        v
    } else {
        let mut v = mantissa;
        let mut rest = false;
        for _ in 0..(-exp) {
            rest |= v % 10 != 0;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if rest { v + 1 } else { v }
    }
}

/// One unit in nano-units; used by tests and callers that reason in whole units.
pub const fn units(n: i128) -> i128 {
    n * NANOS_PER_UNIT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn decimal_fraction_equals_milli_suffix() {
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("1."), q("1"));
        assert_eq!(q("1"), q("1000m"));
    }

    #[test]
    fn binary_and_decimal_suffixes_differ() {
        assert_ne!(q("128Mi"), q("128M"));
        assert!(q("128Mi") > q("128M"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_ne!(q("1Gi"), q("1G"));
    }

    #[test]
    fn exponents_scale_by_powers_of_ten() {
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1000"));
        assert_eq!(q("5e-1"), q("500m"));
        assert_eq!(q("1e+2"), q("100"));
    }

    #[test]
    fn sub_nano_fractions_round_up() {
        assert_eq!(q("0.5n").nanos(), 1);
        assert_eq!(q("1n").nanos(), 1);
        assert_eq!(q("1u").nanos(), 1000);
    }

    #[test]
    fn signs_are_honoured() {
        assert!(q("-1") < q("0"));
        assert_eq!(q("+1"), q("1"));
    }

    #[test]
    fn malformed_quantities_are_errors() {
        for bad in [
            "", "m", "1.2.3", "1Kb", "1 Mi", "abc", "1e", "1e+", "--1", "1ee3", "0x10", "１",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            Quantity::parse(&"9".repeat(65)),
            Err(QuantityError::TooLong(_))
        ));
    }

    #[test]
    fn huge_values_saturate_instead_of_panicking() {
        assert_eq!(q("9e999").nanos(), i128::MAX);
        assert_eq!(
            q("99999999999999999999999999999999999999999999999999Ei").nanos(),
            i128::MAX
        );
        assert_eq!(q("1e-999").nanos(), 1);
        assert!(q("9e999") > q("1E"));
    }

    #[test]
    fn display_keeps_the_text_as_written() {
        assert_eq!(q("0.1").to_string(), "0.1");
        assert_eq!(units(2), q("2").nanos());
    }

    #[test]
    fn bare_numbers_deserialize() {
        let v: Quantity = serde_json::from_str("2").unwrap();
        assert_eq!(v, q("2"));
        let v: Quantity = serde_json::from_str("0.5").unwrap();
        assert_eq!(v, q("500m"));
    }
}
