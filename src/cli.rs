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
#[command(args_conflicts_with_subcommands = true)]
pub struct CertsArgs {
    /// `certs bundle`: print a caBundle of existing CA certificates instead.
    #[command(subcommand)]
    pub command: Option<CertsCommand>,
    /// Name of the webhook's Service.
    #[arg(long, default_value = "wasm-admission")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, default_value = "wasm-admission")]
    pub namespace: String,
    /// Where to write ca.crt, ca.key (only with a new CA), tls.crt and tls.key.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Validity of the certificates, in days (a serving certificate never outlives its CA).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Replace an existing tls.crt and tls.key. A CA (ca.crt, ca.key) is never replaced: a new CA
    /// goes into a new --out-dir, because the old ca.crt stays in the caBundle until a rollover
    /// ends.
    #[arg(long)]
    pub force: bool,
    /// Sign with this existing CA certificate (PEM) instead of making a new CA; needs --ca-key.
    /// The caBundle then stays the same, so a renewal is only a Secret update.
    #[arg(long, requires = "ca_key", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (PKCS#8 PEM, "PRIVATE KEY", as `certs` writes ca.key).
    #[arg(long, requires = "ca_cert", value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
    /// Also cover this DNS name or IP address (repeatable), e.g. the host of the chart's
    /// webhook.url for a webhook outside the cluster.
    #[arg(long, value_name = "NAME")]
    pub extra_name: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CertsCommand {
    /// Print the base64 caBundle holding these CA certificates (PEM files), in this order: with
    /// the new CA and the old one during a CA rollover.
    Bundle {
        /// PEM files of CA certificates (each may hold several).
        #[arg(required = true, value_name = "CA_FILE")]
        files: Vec<PathBuf>,
    },
}
