//! `security.baselineVersion` (behaviour.md §8): which Pod Security Standards version the baseline checks
//! follow, written as Pod Security Admission's `pod-security.kubernetes.io/enforce-version` label
//! is: `latest` or `v1.N`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The oldest version accepted.
pub const OLDEST_MINOR: u32 = 30;
/// The newest version with a baseline change in the upstream policy package; `latest` means it.
pub const LATEST_MINOR: u32 = 37;

/// A baseline version as configured. A `v1.N` newer than [`LATEST_MINOR`] is kept as written but
/// evaluated as the latest, as Pod Security Admission evaluates a version newer than its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaselineVersion {
    #[default]
    Latest,
    /// `v1.N`, N at least [`OLDEST_MINOR`].
    Minor(u32),
}

impl BaselineVersion {
    /// The Kubernetes 1.x minor whose checks apply.
    pub fn minor(self) -> u32 {
        match self {
            Self::Latest => LATEST_MINOR,
            Self::Minor(n) => n.min(LATEST_MINOR),
        }
    }

    /// Whether a check or an allowance that appeared in `v1.since` applies.
    pub fn at_least(self, since: u32) -> bool {
        self.minor() >= since
    }
}

/// The accepted values, for error messages.
fn accepted() -> String {
    format!(
        "\"latest\" or \"v1.{OLDEST_MINOR}\" to \"v1.{LATEST_MINOR}\" (a newer \"v1.N\" is evaluated as latest)"
    )
}

impl FromStr for BaselineVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "latest" {
            return Ok(Self::Latest);
        }
        // As PSA's `^v1\.(0|[1-9][0-9]*)$`: no sign, no leading zero, no patch number.
        let minor = s
            .strip_prefix("v1.")
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (n.len() == 1 || !n.starts_with('0'))
            })
            .and_then(|n| n.parse::<u32>().ok());
        match minor {
            Some(n) if n >= OLDEST_MINOR => Ok(Self::Minor(n)),
            Some(_) => Err(format!(
                "{s:?} is older than this webhook implements; must be {}",
                accepted()
            )),
            None => Err(format!("{s:?} is not a version; must be {}", accepted())),
        }
    }
}

impl fmt::Display for BaselineVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Minor(n) => write!(f, "v1.{n}"),
        }
    }
}

impl Serialize for BaselineVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BaselineVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BaselineVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // An unquoted `v1.30` is a string, but `1.30` is the number 1.3: the message says
                // what is accepted.
                write!(f, "a string, {}", accepted())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_version_parses_latest_and_every_implemented_minor() {
        assert_eq!("latest".parse(), Ok(BaselineVersion::Latest));
        for n in OLDEST_MINOR..=LATEST_MINOR {
            let v: BaselineVersion = format!("v1.{n}").parse().unwrap();
            assert_eq!(v.minor(), n);
            assert_eq!(v.to_string(), format!("v1.{n}"));
        }
        assert_eq!(BaselineVersion::Latest.minor(), LATEST_MINOR);
    }

    #[test]
    fn baseline_version_newer_than_latest_is_evaluated_as_latest() {
        let v: BaselineVersion = "v1.40".parse().unwrap();
        assert_eq!(v.minor(), LATEST_MINOR);
        assert_eq!(v.to_string(), "v1.40", "kept as written");
    }

    #[test]
    fn baseline_version_refuses_older_and_malformed_values() {
        for bad in [
            "v1.29", "v1.0", "1.30", "v1.030", "v1.30.1", "V1.30", "v2.0", "v1.", "v1.-1", "",
            "Latest",
        ] {
            let err = bad.parse::<BaselineVersion>().unwrap_err();
            assert!(
                err.contains("\"latest\" or \"v1.30\" to \"v1.37\""),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn config_baseline_version_is_read_and_a_bad_one_refused_with_the_key_and_accepted_values() {
        use crate::core::config::Config;
        assert_eq!(
            Config::default().security.baseline_version,
            BaselineVersion::Latest
        );
        assert!(Config::default_yaml().contains("baselineVersion: latest"));
        let c = Config::from_yaml("security:\n  baselineVersion: v1.32\n").unwrap();
        assert_eq!(c.security.baseline_version, BaselineVersion::Minor(32));
        // `1.30` unquoted is the YAML number 1.3.
        for bad in ["v1.29", "v1.3x", "1.30", "latest-1"] {
            let err =
                Config::from_yaml(&format!("security:\n  baselineVersion: {bad}\n")).unwrap_err();
            assert!(err.contains("security.baselineVersion"), "{err}");
            assert!(
                err.contains("\"latest\" or \"v1.30\" to \"v1.37\""),
                "{err}"
            );
        }
    }
}
