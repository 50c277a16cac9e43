//! Command-line interface (SPEC §7, §9). Every `serve` flag has a `WASM_ADMISSION_<FLAG>`
//! environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "wasm-admission",
    version,
    about = "Kubernetes admission webhook for WebAssembly workloads"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook.
    Serve(ServeArgs),
    /// Dry-run the webhook over manifest files, for CI pipelines.
    Check(CheckArgs),
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(CertsArgs),
    /// Print the configuration file with every default.
    Config,
}

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
    /// Configuration file (SPEC §8); re-read when it changes.
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
    pub watch_runtime_classes: crate::runtime_classes::WatchMode,
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
    let delay = crate::server::budget::parse_go_duration(text).map_err(|e| e.to_string())?;
    if delay > std::time::Duration::from_secs(60) {
        return Err("at most 60s".into());
    }
    Ok(delay)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
    Junit,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Files or folders of YAML/JSON manifests; `-` reads standard input.
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Configuration file (SPEC §8).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Namespace for objects that name none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Inspect images in their registries (SPEC §3 rule 6), with the `detection.registry`
    /// settings of --config, whatever its `enabled` says. Off by default so CI runs stay offline.
    #[arg(long)]
    pub registry: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, default_value = "wasm-admission")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, default_value = "wasm-admission")]
    pub namespace: String,
    /// Where to write ca.crt, tls.crt and tls.key.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Validity of the certificates, in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}
