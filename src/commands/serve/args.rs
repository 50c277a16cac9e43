//! `serve`'s command-line arguments. Every flag has a `WASM_ADMISSION_<FLAG>` environment
//! fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::adapters::runtime_classes::WatchMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port of the HTTPS listener [default: 0.0.0.0:8443, or 127.0.0.1:8443 with --dev].
    #[arg(long, env = "WASM_ADMISSION_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain served to the apiserver.
    #[arg(
        long,
        env = "WASM_ADMISSION_TLS_CERT_FILE",
        default_value = "/etc/wasm-admission/tls/tls.crt"
    )]
    pub tls_cert_file: PathBuf,
    /// PEM private key of the serving certificate.
    #[arg(
        long,
        env = "WASM_ADMISSION_TLS_PRIVATE_KEY_FILE",
        default_value = "/etc/wasm-admission/tls/tls.key"
    )]
    pub tls_private_key_file: PathBuf,
    /// Configuration file (behaviour.md §8); re-read when it changes.
    #[arg(long, env = "WASM_ADMISSION_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve /metrics on this plain-HTTP address too.
    #[arg(long, env = "WASM_ADMISSION_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format [default: json, or text with --dev].
    #[arg(long, env = "WASM_ADMISSION_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Development mode: an in-memory CA and certificate for localhost, 127.0.0.1 and ::1; no files
    /// needed (--tls-cert-file and --tls-private-key-file are not read). Prints a curl command to try.
    #[arg(long, env = "WASM_ADMISSION_DEV")]
    pub dev: bool,
    /// Require client certificates signed by this CA (the apiserver's admission client identity).
    #[arg(long, env = "WASM_ADMISSION_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// The webhook's own namespace (always excluded); defaults to $POD_NAMESPACE.
    #[arg(long, env = "WASM_ADMISSION_NAMESPACE")]
    pub namespace: Option<String>,
    /// Watch RuntimeClasses and warn when the injected one does not exist: `auto` when cluster
    /// access is found (in-cluster, or a kubeconfig), `on` (required), `off`.
    #[arg(
        long,
        env = "WASM_ADMISSION_WATCH_RUNTIME_CLASSES",
        value_enum,
        default_value = "auto"
    )]
    pub watch_runtime_classes: WatchMode,
    /// Most HTTPS connections open at once; more are closed at once [default: 16384, or less
    /// when the open-file limit is lower, or one per 16 KiB of half the memory limit (4096 for
    /// 128Mi) when one is known: --memory-limit or the cgroup's memory.max].
    #[arg(long, env = "WASM_ADMISSION_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// The memory the process may use (`128Mi`, `134217728`), to derive --max-connections from
    /// when that is not given [default: the cgroup v2 memory.max, when set].
    #[arg(long, env = "WASM_ADMISSION_MEMORY_LIMIT", value_parser = parse_bytes)]
    pub memory_limit: Option<u64>,
    /// Reviews read or decided at once; one more is answered 429 with Retry-After [default: 256].
    #[arg(long, env = "WASM_ADMISSION_MAX_REVIEWS_IN_FLIGHT", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_reviews_in_flight: Option<u32>,
    /// Request body bytes held at once over all reviews (`32Mi`); a body that does not fit is
    /// answered 429 with Retry-After [default: 32Mi]. At least 8Mi (one review of the largest
    /// size).
    #[arg(long, env = "WASM_ADMISSION_MAX_BODY_MEMORY", value_parser = parse_body_memory)]
    pub max_body_memory: Option<u64>,
    /// An HTTP/2 connection with no request for this long gets GOAWAY and is closed (`60s`).
    #[arg(long, env = "WASM_ADMISSION_H2_IDLE_TIMEOUT", value_parser = parse_timeout)]
    pub h2_idle_timeout: Option<std::time::Duration>,
    /// A TLS handshake not finished within this is dropped (`10s`).
    #[arg(long, env = "WASM_ADMISSION_TLS_HANDSHAKE_TIMEOUT", value_parser = parse_timeout)]
    pub tls_handshake_timeout: Option<std::time::Duration>,
    /// After SIGTERM, keep accepting connections and answering reviews this long, with /readyz
    /// answering 503, before draining: the apiserver keeps calling until the pod's endpoint is
    /// removed. A Go duration (`5s`, `500ms`, `0s`).
    #[arg(long, env = "WASM_ADMISSION_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_delay)]
    pub shutdown_delay: std::time::Duration,
}

fn parse_delay(text: &str) -> Result<std::time::Duration, String> {
    let delay =
        crate::commands::serve::budget::parse_go_duration(text).map_err(|e| e.to_string())?;
    if delay > std::time::Duration::from_secs(60) {
        return Err("at most 60s".into());
    }
    Ok(delay)
}

/// A timeout flag: a Go duration from 1s to 10m.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d = crate::commands::serve::budget::parse_go_duration(text).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(600) {
        return Err("from 1s to 10m".into());
    }
    Ok(d)
}

/// A byte count: digits, optionally with a binary (`Ki`, `Mi`, `Gi`) or decimal (`k`, `M`, `G`)
/// suffix, as Kubernetes writes memory quantities.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count such as 128Mi or 134217728"))?;
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use Ki, Mi, Gi, k, M or G)"
            ));
        }
    };
    number
        .checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_body_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    if bytes < 8 << 20 {
        return Err("at least 8Mi: one review of the largest size must fit".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_bytes("128Mi"), Ok(128 << 20));
        assert_eq!(parse_bytes("134217728"), Ok(134_217_728));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert!(parse_bytes("12 potatoes").is_err());
        assert!(parse_bytes("Mi").is_err());
        assert!(parse_bytes("99999999999999Gi").is_err());
        assert!(parse_body_memory("4Mi").is_err());
        assert!(parse_timeout("0s").is_err());
        assert_eq!(parse_timeout("90s"), Ok(std::time::Duration::from_secs(90)));
    }
}
