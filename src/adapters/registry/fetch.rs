//! The I/O of registry inspection: reading a manifest (and, where needed, an index entry's
//! manifest and the image config) from an OCI distribution registry, with every answer bounded
//! in size and checked against its digest.
//!
//! oci-client does the authentication (the `WWW-Authenticate` challenge, the token endpoint, basic
//! credentials) and supplies the references and manifest types. The reads themselves go through
//! the same HTTP client (reqwest) but here, because oci-client's manifest pulls read the whole
//! body into memory with no limit, and a registry named in a pod spec is not to be trusted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use registry_http::StatusCode;
use registry_http::header::{ACCEPT, CONTENT_LENGTH};

use super::RegistryError;
use super::credentials::Credentials;
use super::signals::{self, ImageConfig, IndexStep, ManifestStep, Verdict};

/// The largest manifest or index read (OCI asks registries to accept at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest image config read.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// How long a registry token is reused before a new one is asked for (Docker Hub's last five
/// minutes; a token refused earlier is replaced at once).
const TOKEN_REUSE: Duration = Duration::from_secs(240);

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// What is sent as `Authorization` to one repository.
#[derive(Clone)]
enum Authorization {
    None,
    Bearer(String),
    Basic(String, String),
}

/// Reads images from registries. One per configuration; shared by every lookup.
pub struct Fetcher {
    http: registry_http::Client,
    oci: oci_client::Client,
    insecure: Vec<String>,
    credentials_file: PathBuf,
    /// (registry, repository) → what was last accepted there, and when it was obtained.
    authorizations: Mutex<HashMap<(String, String), (Authorization, Instant)>>,
}

impl Fetcher {
    /// Builds the HTTP clients. rustls needs its process-wide provider (ring) installed first.
    pub fn new(
        insecure: Vec<String>,
        credentials_file: PathBuf,
        timeout: Duration,
    ) -> Result<Self, RegistryError> {
        crate::adapters::tls::install_crypto_provider();
        let http = registry_http::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .user_agent(concat!("wasm-admission/", env!("CARGO_PKG_VERSION")))
            .redirect(super::redirect::policy())
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.clone()),
            connect_timeout: Some(timeout),
            read_timeout: Some(timeout),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let oci = oci_client::Client::try_from(config)
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(Self {
            http,
            oci,
            insecure,
            credentials_file,
            authorizations: Mutex::new(HashMap::new()),
        })
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.insecure.iter().any(|h| h == registry) {
            "http"
        } else {
            "https"
        }
    }

    /// Inspects one image: its manifest (through an index to the entry a node would pull), then,
    /// when nothing there decided, its config.
    pub async fn inspect(&self, reference: &Reference) -> Result<Verdict, RegistryError> {
        let credentials = Credentials::read(&self.credentials_file).await?;
        let auth = credentials.for_host(reference.resolve_registry());
        let target = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let manifest = self
            .manifest(reference, &auth, &target, reference.digest())
            .await?;
        let image = match manifest {
            OciManifest::Image(image) => image,
            OciManifest::ImageIndex(index) => match signals::decide_index(&index) {
                IndexStep::Wasm(signal) => return Ok(Verdict::Wasm(signal)),
                IndexStep::NotWasm => return Ok(Verdict::NotWasm),
                IndexStep::Follow { digest } => {
                    match self
                        .manifest(reference, &auth, &digest, Some(&digest))
                        .await?
                    {
                        OciManifest::Image(image) => image,
                        OciManifest::ImageIndex(_) => return Err(RegistryError::NestedIndex),
                    }
                }
            },
        };
        match signals::decide_manifest(&image) {
            ManifestStep::Wasm(signal) => Ok(Verdict::Wasm(signal)),
            ManifestStep::NotWasm => Ok(Verdict::NotWasm),
            ManifestStep::ReadConfig { digest, size } => {
                if usize::try_from(size).map_or(true, |s| s > MAX_CONFIG_BYTES) {
                    return Err(RegistryError::TooLarge {
                        what: "image config",
                        limit: MAX_CONFIG_BYTES,
                    });
                }
                let url = format!(
                    "{}://{}/v2/{}/blobs/{digest}",
                    self.scheme(reference.resolve_registry()),
                    reference.resolve_registry(),
                    reference.repository()
                );
                let body = self
                    .get(
                        reference,
                        &auth,
                        &url,
                        "application/json, */*",
                        MAX_CONFIG_BYTES,
                        "image config",
                    )
                    .await?;
                verify_digest(&body, &digest, "image config")?;
                let config: ImageConfig =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                        what: "image config",
                        message: e.to_string(),
                    })?;
                Ok(signals::decide_config(&config))
            }
        }
    }

    /// Reads a manifest or index by tag or digest; a digest, when known, must match.
    async fn manifest(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        target: &str,
        digest: Option<&str>,
    ) -> Result<OciManifest, RegistryError> {
        let registry = reference.resolve_registry();
        let url = format!(
            "{}://{registry}/v2/{}/manifests/{target}",
            self.scheme(registry),
            reference.repository()
        );
        let body = self
            .get(
                reference,
                auth,
                &url,
                MANIFEST_ACCEPT,
                MAX_MANIFEST_BYTES,
                "manifest",
            )
            .await?;
        if let Some(digest) = digest {
            verify_digest(&body, digest, "manifest")?;
        }
        parse_manifest(&body)
    }

    /// One GET with the repository's authorization; on 401 a new authorization is obtained
    /// (through oci-client) and the GET is tried once more. The body is read up to `limit`.
    /// Redirects are followed on the same host only (src/registry/redirect.rs).
    async fn get(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        url: &str,
        accept: &str,
        limit: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        let key = (
            reference.resolve_registry().to_string(),
            reference.repository().to_string(),
        );
        let mut authorization = self.cached_authorization(&key);
        let mut refreshed = false;
        loop {
            let mut request = self.http.get(url).header(ACCEPT, accept);
            request = match &authorization {
                Authorization::None => request,
                Authorization::Bearer(token) => request.bearer_auth(token),
                Authorization::Basic(user, pass) => request.basic_auth(user, Some(pass)),
            };
            let response = request
                .send()
                .await
                .map_err(|e| RegistryError::http(what, &e))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                authorization = self.authorize(reference, auth).await?;
                self.remember(key.clone(), authorization.clone());
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(RegistryError::Denied {
                    status: status.as_u16(),
                    anonymous: matches!(auth, RegistryAuth::Anonymous),
                });
            }
            if !status.is_success() {
                return Err(RegistryError::Status {
                    what,
                    status: status.as_u16(),
                });
            }
            return read_limited(response, limit, what).await;
        }
    }

    fn cached_authorization(&self, key: &(String, String)) -> Authorization {
        let map = self
            .authorizations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match map.get(key) {
            Some((authorization, at)) if at.elapsed() < TOKEN_REUSE => authorization.clone(),
            _ => Authorization::None,
        }
    }

    fn remember(&self, key: (String, String), authorization: Authorization) {
        let mut map = self
            .authorizations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() > 1000 {
            map.retain(|_, (_, at)| at.elapsed() < TOKEN_REUSE);
        }
        map.insert(key, (authorization, Instant::now()));
    }

    /// Answers a 401: a bearer token from the registry's token service when it has one (anonymous
    /// or with the credentials), else the basic credentials themselves.
    async fn authorize(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<Authorization, RegistryError> {
        let token = self
            .oci
            .auth(reference, auth, RegistryOperation::Pull)
            .await
            .map_err(|e| RegistryError::Auth(e.to_string()))?;
        match (token, auth) {
            (Some(token), _) => Ok(Authorization::Bearer(token)),
            (None, RegistryAuth::Basic(user, pass)) => {
                Ok(Authorization::Basic(user.clone(), pass.clone()))
            }
            (None, RegistryAuth::Bearer(token)) => Ok(Authorization::Bearer(token.clone())),
            (None, RegistryAuth::Anonymous) => Err(RegistryError::Denied {
                status: 401,
                anonymous: true,
            }),
        }
    }
}

/// The body, refused as soon as it is known to exceed `limit` (declared length or bytes read).
async fn read_limited(
    mut response: registry_http::Response,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge { what, limit };
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.map_or(16 * 1024, |n| n as usize));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RegistryError::http(what, &e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a manifest or an index (OCI or Docker schema 2).
pub fn parse_manifest(body: &[u8]) -> Result<OciManifest, RegistryError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        schema_version: i64,
        #[serde(default)]
        media_type: Option<String>,
    }
    let invalid = |message: String| RegistryError::Invalid {
        what: "manifest",
        message,
    };
    let versioned: Versioned = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if versioned.schema_version != 2 {
        return Err(RegistryError::Unsupported(format!(
            "manifest schema version {}",
            versioned.schema_version
        )));
    }
    if let Some(media_type) = versioned.media_type.as_deref()
        && ![
            OCI_IMAGE_MEDIA_TYPE,
            OCI_IMAGE_INDEX_MEDIA_TYPE,
            IMAGE_MANIFEST_MEDIA_TYPE,
            IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        ]
        .contains(&media_type)
    {
        return Err(RegistryError::Unsupported(format!(
            "manifest media type {media_type}"
        )));
    }
    serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))
}

/// Checks content against an `algorithm:hex` digest (sha256 or sha512).
pub fn verify_digest(body: &[u8], digest: &str, what: &'static str) -> Result<(), RegistryError> {
    let (algorithm, expected) = digest
        .split_once(':')
        .ok_or(RegistryError::DigestMismatch { what })?;
    let algorithm = match algorithm {
        "sha256" => &ring::digest::SHA256,
        "sha512" => &ring::digest::SHA512,
        other => {
            return Err(RegistryError::Unsupported(format!(
                "digest algorithm {other}"
            )));
        }
    };
    let actual = ring::digest::digest(algorithm, body);
    let hex: String = actual.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if hex.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        let body = b"{}";
        let good = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert!(verify_digest(body, good, "manifest").is_ok());
        let bad = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(matches!(
            verify_digest(body, bad, "manifest"),
            Err(RegistryError::DigestMismatch { .. })
        ));
        assert!(verify_digest(body, "md5:abc", "manifest").is_err());
        assert!(verify_digest(body, "nocolon", "manifest").is_err());
    }

    #[test]
    fn manifests_of_other_schemas_are_refused() {
        assert!(matches!(
            parse_manifest(br#"{"schemaVersion": 1, "name": "x"}"#),
            Err(RegistryError::Unsupported(_))
        ));
        assert!(matches!(
            parse_manifest(
                br#"{"schemaVersion": 2, "mediaType": "text/html", "config": {}, "layers": []}"#
            ),
            Err(RegistryError::Unsupported(_))
        ));
        assert!(matches!(
            parse_manifest(b"<html>"),
            Err(RegistryError::Invalid { .. })
        ));
        let index = br#"{"schemaVersion": 2, "manifests": []}"#;
        assert!(matches!(
            parse_manifest(index),
            Ok(OciManifest::ImageIndex(_))
        ));
    }
}
