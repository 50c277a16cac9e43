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
    /// when the open-file limit is lower]. Each connection still in its TLS handshake costs about
    /// 13 KiB.
    #[arg(long, env = "WASM_ADMISSION_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
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
