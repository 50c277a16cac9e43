//! `wasm-admission certs`: a CA and an ECDSA P-256 serving certificate for the webhook Service.
//!
//! Writes `ca.crt`, `ca.key`, `tls.crt` and `tls.key` (the keys mode 0600) into `--out-dir` and
//! prints the base64 `caBundle` for the webhook configurations on standard output (everything else
//! goes to standard error, so `CA_BUNDLE=$(wasm-admission certs ...)` works). With `--ca-cert` and
//! `--ca-key` it signs a new serving pair with an existing CA instead, so a renewal leaves the
//! `caBundle` as it is. A CA is never overwritten, `--force` or not: the old `ca.crt` is what a
//! rollover to a new CA keeps in the `caBundle` until the new serving pair is live.
//! `certs bundle NEW OLD` prints a `caBundle` holding several CAs for that rollover
//! (certs/README.md, "Renewal").

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use rcgen::{Issuer, KeyPair};
use time::OffsetDateTime;

use crate::adapters::tls::certificates::{MAX_DAYS, new_ca, service_dns_names, serving_pair};

use clap::{Args, Subcommand};

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

/// The files written, in the names a `kubernetes.io/tls` Secret uses (and `ca.key` beside them).
pub const CA_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
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
    #[error(
        "--extra-name {0:?} is neither an IP address nor a DNS name (lowercase labels of letters, digits and '-', separated by dots)"
    )]
    BadExtraName(String),
    #[error("--days must be between 1 and {MAX_DAYS}, got {0}")]
    BadDays(u32),
    #[error("refusing to overwrite {}: pass --force to replace them", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Exists(Vec<PathBuf>),
    #[error(
        "refusing to replace the CA in {}: a CA is never overwritten, --force or not (a rollover needs the old ca.crt in the caBundle until the new serving pair is live). To renew with this CA: --ca-cert {} --ca-key {} --force; for a new CA, choose another --out-dir",
        .dir.display(), .dir.join(CA_FILE).display(), .dir.join(CA_KEY_FILE).display()
    )]
    CaExists { dir: PathBuf },
    #[error(
        "refusing to replace {} with a different CA than --ca-cert {}: choose another --out-dir",
        .existing.display(), .given.display()
    )]
    OtherCa { existing: PathBuf, given: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
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
    #[error("cannot make the certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// An existing CA, loaded from `--ca-cert` and `--ca-key`.
struct LoadedCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

fn read_text(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|source| CertsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The DER of every `CERTIFICATE` block of a PEM text.
fn pem_certificates(path: &Path, text: &str) -> Result<Vec<Vec<u8>>, CertsError> {
    let bad = |reason: String| CertsError::BadCa {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| bad(format!("not PEM: {e}")))?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(bad("no PEM CERTIFICATE in it".into()));
    }
    Ok(out)
}

/// Checks that `der` is a CA certificate valid now; its end.
fn check_ca(path: &Path, der: &[u8]) -> Result<OffsetDateTime, CertsError> {
    let bad = |reason: String| CertsError::BadCa {
        path: path.to_path_buf(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(bad(format!(
            "{} is not a CA certificate (no basicConstraints CA:true)",
            cert.subject()
        )));
    }
    let not_after = cert.validity().not_after.to_datetime();
    if not_after <= OffsetDateTime::now_utc() {
        return Err(bad(format!(
            "{} expired on {}",
            cert.subject(),
            not_after.date()
        )));
    }
    Ok(not_after)
}

fn load_ca(cert_path: &Path, key_path: &Path) -> Result<LoadedCa, CertsError> {
    let pem = read_text(cert_path)?;
    let ders = pem_certificates(cert_path, &pem)?;
    if ders.len() != 1 {
        return Err(CertsError::BadCa {
            path: cert_path.to_path_buf(),
            reason: format!("holds {} certificates; --ca-cert takes one", ders.len()),
        });
    }
    let not_after = check_ca(cert_path, &ders[0])?;
    let key_text = read_text(key_path)?;
    let key = KeyPair::from_pem(&key_text).map_err(|e| CertsError::BadCa {
        path: key_path.to_path_buf(),
        reason: format!(
            "not a PKCS#8 PEM private key (\"PRIVATE KEY\"; `openssl pkcs8 -topk8 -nocrypt` converts others): {e}"
        ),
    })?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&ders[0]).map_err(|e| CertsError::BadCa {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CertsError::BadCa {
            path: key_path.to_path_buf(),
            reason: format!("is not the key of --ca-cert {}", cert_path.display()),
        });
    }
    let issuer = Issuer::from_ca_cert_der(&ders[0].clone().into(), key)?;
    Ok(LoadedCa {
        pem,
        issuer,
        not_after,
    })
}

/// An IP address, or a DNS name of RFC 1123 labels.
fn check_extra_name(name: &str) -> Result<(), CertsError> {
    let dns = name.len() <= 253
        && name
            .split('.')
            .all(|label| check_label("extra-name", label, false).is_ok());
    if name.parse::<IpAddr>().is_ok() || dns {
        Ok(())
    } else {
        Err(CertsError::BadExtraName(name.to_string()))
    }
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
    /// `ca.key`, when a new CA was made.
    pub ca_key: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_bundle: String,
    pub names: Vec<String>,
    pub not_after: OffsetDateTime,
    /// The serving certificate ends with its CA rather than after `--days`.
    pub capped_by_ca: bool,
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// The `certs` command without its printing.
pub fn write_certs(args: &CertsArgs) -> Result<Written, CertsError> {
    check_label("service", &args.service, true)?;
    check_label("namespace", &args.namespace, false)?;
    for name in &args.extra_name {
        check_extra_name(name)?;
    }
    if args.days == 0 || args.days > MAX_DAYS {
        return Err(CertsError::BadDays(args.days));
    }
    let dir = &args.out_dir;
    let ca = dir.join(CA_FILE);
    let ca_key = dir.join(CA_KEY_FILE);
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    let loaded = match (&args.ca_cert, &args.ca_key) {
        (Some(c), Some(k)) => Some(load_ca(c, k)?),
        _ => None,
    };
    // The CA files: never replaced.
    match (&loaded, &args.ca_cert) {
        (None, _) if exists(&ca) || exists(&ca_key) => {
            return Err(CertsError::CaExists { dir: dir.clone() });
        }
        (Some(l), Some(given)) if exists(&ca) => {
            let same = std::fs::read_to_string(&ca).is_ok_and(|t| t == l.pem);
            if !same {
                return Err(CertsError::OtherCa {
                    existing: ca,
                    given: given.clone(),
                });
            }
        }
        _ => {}
    }
    if !args.force {
        let existing: Vec<PathBuf> = [&cert, &key]
            .into_iter()
            .filter(|p| exists(p))
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(CertsError::Exists(existing));
        }
    }
    // Created 0700 (issue 28): the folder holds private keys, and a file briefly world-readable
    // under an umask of 022 would be enough. A folder that exists already keeps its mode.
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| CertsError::OutDir {
        path: dir.clone(),
        source,
    })?;
    let mut names = service_dns_names(&args.service, &args.namespace);
    for extra in &args.extra_name {
        if !names.contains(extra) {
            names.push(extra.clone());
        }
    }
    let now = OffsetDateTime::now_utc();
    let not_before = now - time::Duration::minutes(5);
    let mut not_after = now + time::Duration::days(i64::from(args.days));
    let common_name = format!("{}.{}.svc", args.service, args.namespace);
    let mut capped_by_ca = false;
    let (ca_pem, new_ca_key, cert_pem, key_pem) = match loaded {
        Some(l) => {
            if l.not_after < not_after {
                not_after = l.not_after;
                capped_by_ca = true;
            }
            let (cert_pem, key_pem) =
                serving_pair(&l.issuer, &common_name, &names, not_before, not_after)?;
            (l.pem, None, cert_pem, key_pem)
        }
        None => {
            let (ca_pem, key_pair, params) = new_ca(
                // Unique per run, so two CAs of one rollover are told apart by name too.
                &format!(
                    "wasm-admission-ca@{}.{:06}",
                    now.unix_timestamp(),
                    now.microsecond()
                ),
                not_before,
                not_after,
            )?;
            let ca_key_pem = key_pair.serialize_pem();
            let issuer = Issuer::new(params, key_pair);
            let (cert_pem, key_pem) =
                serving_pair(&issuer, &common_name, &names, not_before, not_after)?;
            (ca_pem, Some(ca_key_pem), cert_pem, key_pem)
        }
    };
    // Keys first: a folder never holds a certificate without its key.
    if let Some(k) = &new_ca_key {
        write_file(&ca_key, k.as_bytes(), 0o600)?;
    }
    write_file(&key, key_pem.as_bytes(), 0o600)?;
    write_file(&cert, cert_pem.as_bytes(), 0o644)?;
    if !exists(&ca) {
        write_file(&ca, ca_pem.as_bytes(), 0o644)?;
    }
    Ok(Written {
        ca,
        ca_key: new_ca_key.map(|_| ca_key),
        cert,
        key,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()),
        names,
        not_after,
        capped_by_ca,
    })
}

/// One CA of a bundle, for the report.
pub struct BundledCa {
    pub subject: String,
    pub not_after: OffsetDateTime,
}

/// `certs bundle`: the base64 of the CA certificates of `files`, in order, as PEM (a certificate
/// given twice is kept once).
pub fn bundle(files: &[PathBuf]) -> Result<(String, Vec<BundledCa>), CertsError> {
    let mut pem = String::new();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut cas = Vec::new();
    for file in files {
        let text = read_text(file)?;
        for der in pem_certificates(file, &text)? {
            let not_after = check_ca(file, &der)?;
            if seen.contains(&der) {
                continue;
            }
            let subject = x509_parser::parse_x509_certificate(&der)
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_default();
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).unwrap_or_default());
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
            seen.push(der);
            cas.push(BundledCa { subject, not_after });
        }
    }
    Ok((
        base64::engine::general_purpose::STANDARD.encode(pem.as_bytes()),
        cas,
    ))
}

pub fn run(args: CertsArgs) -> ExitCode {
    if let Some(CertsCommand::Bundle { files }) = &args.command {
        return match bundle(files) {
            Ok((b64, cas)) => {
                eprintln!(
                    "caBundle of {} CA certificate(s), on standard output:",
                    cas.len()
                );
                for ca in &cas {
                    eprintln!("  {} (valid until {})", ca.subject, ca.not_after.date());
                }
                println!("{b64}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wasm-admission certs bundle: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match write_certs(&args) {
        Ok(w) => {
            match &w.ca_key {
                Some(ca_key) => eprintln!(
                    "wrote {} (new CA) and {} (its private key, mode 0600: keep it out of the cluster; it signs the renewals, with --ca-cert and --ca-key)",
                    w.ca.display(),
                    ca_key.display(),
                ),
                None => eprintln!("signed with the existing CA {}", w.ca.display()),
            }
            eprintln!(
                "wrote {} (serving certificate for {}) and {} (private key, mode 0600); valid until {}{}",
                w.cert.display(),
                w.names.join(", "),
                w.key.display(),
                w.not_after.date(),
                if w.capped_by_ca {
                    " (the CA's end: the certificate does not outlive its CA)"
                } else {
                    ""
                },
            );
            eprintln!(
                "create or replace the Secret with: kubectl -n {} create secret tls {}-tls --cert={} --key={} --dry-run=client -o yaml | kubectl apply -f -",
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
