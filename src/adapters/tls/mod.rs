//! TLS: the process's crypto provider, certificate material ([`certificates`]), and the serving
//! certificate: loading, checking that key and certificate belong together, and
//! handing the current pair to rustls one new connection at a time.
//!
//! Rotation works without a restart: [`CertResolver`] holds the pair in an [`ArcSwap`], rustls
//! asks it for the pair on every handshake, and `serve`'s reload loop swaps in a new
//! pair only after [`load_pair`] has proved that its private key matches its certificate. A
//! connection keeps the pair it was opened with, so requests in flight never notice a swap.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SignatureScheme};

pub mod certificates;

/// Installs ring as the process's rustls provider (there is no aws-lc-rs in this build). Every
/// configuration here also names the provider explicitly; this covers code that asks for the
/// process default.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; the explicit one is used anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// ALPN protocols offered, in order of preference: HTTP/2, then HTTP/1.1.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate, key or client CA file cannot be used. Each message names the flag that
/// points at the file, so the person reading the log knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the serving certificate {path} (--tls-cert-file): {source}")]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the private key {path} (--tls-private-key-file): {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} (--tls-cert-file) holds no PEM certificate (expected a \"-----BEGIN CERTIFICATE-----\" block)"
    )]
    NoCertificate { path: PathBuf },
    #[error("{path} (--tls-cert-file) is not valid PEM: {message}")]
    BadCertificatePem { path: PathBuf, message: String },
    #[error("the certificate in {path} (--tls-cert-file) cannot be parsed: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error(
        "{path} (--tls-private-key-file) holds no PEM private key (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY): {message}"
    )]
    NoKey { path: PathBuf, message: String },
    #[error("the private key in {path} (--tls-private-key-file) cannot be used: {source}")]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "the private key {key} (--tls-private-key-file) does not belong to the certificate {cert} (--tls-cert-file): {reason}"
    )]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot read the client CA file {path} (--client-ca-file): {source}")]
    ReadClientCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} (--client-ca-file) holds no usable CA certificate: {message}")]
    BadClientCa { path: PathBuf, message: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// A certificate chain and its private key, checked to belong together.
#[derive(Clone)]
pub struct LoadedPair {
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf certificate, in seconds since the Unix epoch.
    pub not_after: i64,
    /// Serial number of the leaf certificate, as colon-separated hex (for logs).
    pub serial: String,
}

impl fmt::Debug for LoadedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPair")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Where the pair comes from, for error messages.
#[derive(Debug, Clone)]
pub struct PairPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Parses a PEM certificate chain and PEM private key, and checks that the key is the one the
/// leaf certificate was issued for. A half-written pair (new certificate, old key) fails here.
pub fn load_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    paths: &PairPaths,
    provider: &CryptoProvider,
) -> Result<LoadedPair, TlsError> {
    let chain = parse_certificates(cert_pem).map_err(|message| TlsError::BadCertificatePem {
        path: paths.cert.clone(),
        message,
    })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: paths.cert.clone(),
        });
    };
    let (not_after, serial) = leaf_facts(leaf).map_err(|message| TlsError::BadCertificate {
        path: paths.cert.clone(),
        message,
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        path: paths.key.clone(),
        message: e.to_string(),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::BadKey {
            path: paths.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    check_key_matches(&certified, provider).map_err(|reason| TlsError::KeyMismatch {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        reason,
    })?;
    Ok(LoadedPair {
        key: Arc::new(certified),
        not_after,
        serial,
    })
}

fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// The leaf's expiry (Unix seconds) and serial number.
fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(i64, String), String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| e.to_string())?;
    Ok((
        cert.validity().not_after.timestamp(),
        cert.raw_serial_as_string(),
    ))
}

/// Proves that the private key belongs to the leaf certificate: by comparing public keys where the
/// key can tell its own public key, else by signing a message and verifying the signature with
/// the certificate's public key.
fn check_key_matches(certified: &CertifiedKey, provider: &CryptoProvider) -> Result<(), String> {
    match certified.keys_match() {
        Ok(()) => return Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(e.to_string()),
    }
    let schemes = [
        SignatureScheme::ED25519,
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ECDSA_NISTP521_SHA512,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PSS_SHA384,
        SignatureScheme::RSA_PSS_SHA512,
    ];
    let signer = certified
        .key
        .choose_scheme(&schemes)
        .ok_or_else(|| "the key supports no TLS 1.3 signature scheme".to_string())?;
    let message = b"wasm-admission: does this key belong to this certificate?";
    let signature = signer.sign(message).map_err(|e| e.to_string())?;
    let leaf = certified.end_entity_cert().map_err(|e| e.to_string())?;
    let leaf = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
    let verifies = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .filter(|(scheme, _)| *scheme == signer.scheme())
        .flat_map(|(_, algs)| algs.iter())
        .any(|alg| leaf.verify_signature(*alg, message, &signature).is_ok());
    if verifies {
        Ok(())
    } else {
        Err(
            "a signature made with the key does not verify with the certificate's public key"
                .into(),
        )
    }
}

/// Parses a client CA bundle (PEM, one or more certificates).
pub fn load_client_ca(pem: &[u8], path: &Path) -> Result<RootCertStore, TlsError> {
    let bad = |message: String| TlsError::BadClientCa {
        path: path.to_path_buf(),
        message,
    };
    let certs = parse_certificates(pem).map_err(bad)?;
    if certs.is_empty() {
        return Err(bad("no \"-----BEGIN CERTIFICATE-----\" block".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

/// Hands rustls the current serving pair on every handshake.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        Self {
            current: ArcSwap::new(initial),
        }
    }

    /// Serves `pair` to every connection opened from now on.
    pub fn replace(&self, pair: Arc<CertifiedKey>) {
        self.current.store(pair);
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// TLS 1.3 and 1.2 only, HTTP/2 and HTTP/1.1 by ALPN, the serving pair from `resolver`, and client
/// certificates required when a client CA is given.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    client_ca: Option<RootCertStore>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn paths() -> PairPaths {
        PairPaths {
            cert: "tls.crt".into(),
            key: "tls.key".into(),
        }
    }

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn matching_pair_loads_with_its_expiry() {
        let (cert, key) = pair("a.example");
        let loaded = load_pair(cert.as_bytes(), key.as_bytes(), &paths(), &provider()).unwrap();
        assert!(loaded.not_after > 0);
        assert!(!loaded.serial.is_empty());
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let (cert, _) = pair("a.example");
        let (_, other_key) = pair("b.example");
        let err =
            load_pair(cert.as_bytes(), other_key.as_bytes(), &paths(), &provider()).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("--tls-private-key-file"), "{err}");
    }

    #[test]
    fn ed25519_pair_is_checked_by_signature() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["c.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key_pem = key.serialize_pem();
        load_pair(
            cert.pem().as_bytes(),
            key_pem.as_bytes(),
            &paths(),
            &provider(),
        )
        .unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let err = load_pair(
            cert.pem().as_bytes(),
            other.serialize_pem().as_bytes(),
            &paths(),
            &provider(),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn empty_or_garbage_files_are_named() {
        let (cert, key) = pair("a.example");
        let err = load_pair(b"", key.as_bytes(), &paths(), &provider()).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = load_pair(cert.as_bytes(), b"junk", &paths(), &provider()).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        assert!(err.to_string().contains("tls.key"), "{err}");
    }

    #[test]
    fn client_ca_needs_a_certificate() {
        let err = load_client_ca(b"", Path::new("ca.crt")).unwrap_err();
        assert!(err.to_string().contains("--client-ca-file"), "{err}");
        let (cert, _) = pair("ca.example");
        assert_eq!(
            load_client_ca(cert.as_bytes(), Path::new("ca.crt"))
                .unwrap()
                .len(),
            1
        );
    }
}
