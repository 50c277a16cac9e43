//! `serve --dev`: no files needed. A throwaway CA and a serving certificate for `localhost`,
//! `127.0.0.1` and `::1` are made in memory; the CA certificate and an example AdmissionReview are
//! written to a private temporary folder so the printed `curl` works from any directory. The folder
//! is removed when the server stops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::adapters::tls::certificates;

/// The example review posted by the printed `curl`: a Wasm Deployment CREATE, as kube-apiserver
/// sends it after defaulting.
pub const EXAMPLE_REVIEW: &str = include_str!("../../../examples/review/deployment-create.json");
pub const EXAMPLE_FILE: &str = "deployment-create.json";

/// Validity of the throwaway certificate.
const DEV_DAYS: u32 = 7;

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot make the development certificate: {0}")]
    Certificate(#[from] certificates::IssueError),
    #[error("cannot write the development files into {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The in-memory serving pair, PEM.
pub struct DevPair {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_pair() -> Result<DevPair, DevError> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let issued = certificates::issue(
        "wasm-admission dev CA (throwaway)",
        "localhost",
        &names,
        DEV_DAYS,
    )?;
    Ok(DevPair {
        ca_pem: issued.ca_pem,
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    })
}

/// What `--dev` wrote and what to run against it.
#[derive(Debug, Clone)]
pub struct DevFiles {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub example: PathBuf,
    pub url: String,
    pub curl: String,
}

impl DevFiles {
    /// Writes the CA certificate and the example review into a new private folder under the
    /// temporary directory.
    pub fn write(ca_pem: &str, addr: SocketAddr) -> Result<Self, DevError> {
        let dir = std::env::temp_dir().join(format!("wasm-admission-dev-{}", std::process::id()));
        let err = |source| DevError::Write {
            path: dir.clone(),
            source,
        };
        // A leftover folder of an earlier process with the same id is replaced.
        let _ = std::fs::remove_dir_all(&dir);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir).map_err(err)?;
        let ca = dir.join("ca.crt");
        let example = dir.join(EXAMPLE_FILE);
        std::fs::write(&ca, ca_pem).map_err(err)?;
        std::fs::write(&example, EXAMPLE_REVIEW).map_err(err)?;
        let host = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            match addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                std::net::IpAddr::V4(ip) => ip.to_string(),
            }
        };
        let url = format!("https://{host}:{}/mutate", addr.port());
        let curl = format!(
            "curl -sS --cacert {} -H 'Content-Type: application/json' --data @{} {url}",
            shell_quote(&ca),
            shell_quote(&example),
        );
        Ok(Self {
            dir,
            ca,
            example,
            url,
            curl,
        })
    }

    /// Removes the folder (best effort).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The lines `serve --dev` prints on standard output.
    pub fn banner(&self, addr: SocketAddr) -> String {
        format!(
            "wasm-admission serve --dev: listening on https://{addr} with a throwaway certificate for localhost, 127.0.0.1 and ::1\n\
             CA certificate: {}\n\
             Try it (a Wasm Deployment CREATE; the answer carries a base64 JSON Patch):\n\
             \n  {}\n\n\
             Stop with Ctrl-C; the files above are removed then.",
            self.ca.display(),
            self.curl,
        )
    }
}

/// Quotes a path for a POSIX shell when it needs quoting.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_review_is_an_admission_review() {
        let v: serde_json::Value = serde_json::from_str(EXAMPLE_REVIEW).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(
            v["request"]["object"]["spec"]["template"]["metadata"]["annotations"]["wasm-admission.io/wasm"],
            "true"
        );
    }

    #[test]
    fn paths_with_spaces_are_quoted() {
        assert_eq!(shell_quote(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(shell_quote(Path::new("/tmp/ab.crt")), "/tmp/ab.crt");
    }
}
