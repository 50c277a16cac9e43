//! `wasm-admission certs`: a CA and an ECDSA P-256 serving certificate for the webhook Service.
//!
//! Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `--out-dir` and prints the base64
//! `caBundle` for the webhook configurations on standard output (everything else goes to standard
//! error, so `CA_BUNDLE=$(wasm-admission certs ...)` works). The CA's private key is never written:
//! nothing can be signed with this CA after the command ends. To renew, run it again and update the
//! Secret and the `caBundle` together (or let cert-manager do both; see certs/README.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Args;
use time::OffsetDateTime;

use crate::adapters::tls::certificates::{IssueError, MAX_DAYS, issue, service_dns_names};

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

/// The files written, in the names a `kubernetes.io/tls` Secret uses.
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "--{flag} {value:?} is not a valid DNS label (lowercase letters, digits and '-', at most 63, starting with a letter{and_digit} and ending with a letter or digit)"
    )]
    BadName {
        flag: &'static str,
        value: String,
        and_digit: &'static str,
    },
    #[error("refusing to overwrite {}: pass --force to replace them", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Exists(Vec<PathBuf>),
    #[error("cannot create the output folder {path} (--out-dir): {source}")]
    OutDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// An RFC 1123 DNS label (`rfc1035` also requires a leading letter, as Service names do).
fn check_label(flag: &'static str, value: &str, rfc1035: bool) -> Result<(), CertsError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || (!rfc1035 && b.is_ascii_digit()))
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(CertsError::BadName {
            flag,
            value: value.to_string(),
            and_digit: if rfc1035 { "" } else { " or digit" },
        })
    }
}

/// Writes `contents` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees half a file; `mode` applies from the moment the file exists.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertsError> {
    let err = |source| CertsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// What `certs` did, for its report.
pub struct Written {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_bundle: String,
    pub names: Vec<String>,
    pub not_after: OffsetDateTime,
}

/// The `certs` command without its printing.
pub fn write_certs(args: &CertsArgs) -> Result<Written, CertsError> {
    check_label("service", &args.service, true)?;
    check_label("namespace", &args.namespace, false)?;
    if args.days == 0 || args.days > MAX_DAYS {
        return Err(IssueError::BadDays(args.days).into());
    }
    let dir = &args.out_dir;
    let ca = dir.join(CA_FILE);
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    if !args.force {
        let existing: Vec<PathBuf> = [&ca, &cert, &key]
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(CertsError::Exists(existing));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| CertsError::OutDir {
        path: dir.clone(),
        source,
    })?;
    let names = service_dns_names(&args.service, &args.namespace);
    let issued = issue(
        &format!(
            "wasm-admission-ca@{}",
            OffsetDateTime::now_utc().unix_timestamp()
        ),
        &format!("{}.{}.svc", args.service, args.namespace),
        &names,
        args.days,
    )?;
    // The key first: a folder never holds a certificate without its key.
    write_file(&key, issued.key_pem.as_bytes(), 0o600)?;
    write_file(&cert, issued.cert_pem.as_bytes(), 0o644)?;
    write_file(&ca, issued.ca_pem.as_bytes(), 0o644)?;
    Ok(Written {
        ca,
        cert,
        key,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(issued.ca_pem.as_bytes()),
        names,
        not_after: issued.not_after,
    })
}

pub fn run(args: CertsArgs) -> ExitCode {
    match write_certs(&args) {
        Ok(w) => {
            eprintln!(
                "wrote {} (CA), {} (serving certificate for {}) and {} (private key, mode 0600); valid until {}",
                w.ca.display(),
                w.cert.display(),
                w.names.join(", "),
                w.key.display(),
                w.not_after.date(),
            );
            eprintln!(
                "create the Secret with: kubectl -n {} create secret tls {}-tls --cert={} --key={}",
                args.namespace,
                args.service,
                w.cert.display(),
                w.key.display(),
            );
            eprintln!(
                "caBundle for the MutatingWebhookConfiguration and ValidatingWebhookConfiguration (on standard output):"
            );
            println!("{}", w.ca_bundle);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasm-admission certs: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_kubernetes_rules() {
        assert!(check_label("service", "wasm-admission", true).is_ok());
        assert!(check_label("namespace", "1team", false).is_ok());
        for bad in ["", "Upper", "-x", "x-", "a.b", "1svc", &"a".repeat(64)] {
            assert!(check_label("service", bad, true).is_err(), "{bad}");
        }
    }
}
