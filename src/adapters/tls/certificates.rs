//! Certificate material made in memory: a throwaway CA and an ECDSA P-256 serving certificate
//! signed by it. `wasm-admission certs` writes them to files; `serve --dev` keeps them in memory.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

/// The longest validity accepted, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("--days must be between 1 and {MAX_DAYS}, got {0}")]
    BadDays(u32),
    #[error("cannot make the certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A CA certificate and a serving certificate and key, all PEM.
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: OffsetDateTime,
}

/// The DNS names the apiserver may use for `<service>` in `<namespace>`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A new CA (ECDSA P-256) valid from `not_before` to `not_after`: its certificate PEM, its key
/// and its parameters (for an [`Issuer`]).
pub fn new_ca(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, KeyPair, CertificateParams), rcgen::Error> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, common_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    Ok((ca_cert.pem(), ca_key, ca))
}

/// An ECDSA P-256 serving certificate for `names` (DNS names or IP addresses) signed by
/// `issuer`: the certificate and key PEM.
pub fn serving_pair(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &[String],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, common_name);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let cert = leaf.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Makes a throwaway CA and, signed by it, an ECDSA P-256 serving certificate for `names` (DNS
/// names or IP addresses), valid for `days` from now (backdated 5 minutes for clock skew).
pub fn issue(
    ca_common_name: &str,
    common_name: &str,
    names: &[String],
    days: u32,
) -> Result<Issued, IssueError> {
    if days == 0 || days > MAX_DAYS {
        return Err(IssueError::BadDays(days));
    }
    let now = OffsetDateTime::now_utc();
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + time::Duration::days(i64::from(days));
    let (ca_pem, ca_key, ca) = new_ca(ca_common_name, not_before, not_after)?;
    let issuer = Issuer::new(ca, ca_key);
    let (cert_pem, key_pem) = serving_pair(&issuer, common_name, names, not_before, not_after)?;
    Ok(Issued {
        ca_pem,
        cert_pem,
        key_pem,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_the_four_the_apiserver_may_use() {
        assert_eq!(
            service_dns_names("wh", "ns"),
            ["wh", "wh.ns", "wh.ns.svc", "wh.ns.svc.cluster.local"]
        );
    }

    #[test]
    fn days_out_of_range_are_refused() {
        assert!(matches!(
            issue("ca", "cn", &["a".into()], 0),
            Err(IssueError::BadDays(0))
        ));
        assert!(issue("ca", "cn", &["a".into()], MAX_DAYS + 1).is_err());
    }
}
