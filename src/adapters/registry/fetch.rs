//! The I/O of registry inspection: reading a manifest (and, where needed, an index entry's
//! manifest and the image config) from an OCI distribution registry, with every answer bounded
//! in size and checked against its digest.
//!
//! oci-client supplies the references and manifest types. The reads go through the same HTTP
//! client (reqwest) but here, because oci-client's manifest pulls read the whole body into memory
//! with no limit, and a registry named in a pod spec is not to be trusted. The answer to a 401 is
//! here too: oci-client's token request goes to whatever realm the registry names, follows
//! redirects to any host and reads the token answer with no limit; here the realm must pass the
//! same host rules as a redirect ([`super::redirect::check`]) and every answer is bounded. The
//! challenge itself is parsed by `http-auth`, the parser oci-client uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_client::Reference;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use registry_http::header::{ACCEPT, CONTENT_LENGTH, WWW_AUTHENTICATE};
use registry_http::{StatusCode, Url};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::RegistryError;
use super::credentials::Credentials;
use super::image_facts::{self, ImageConfig, IndexStep, ManifestStep, Verdict};
use super::redirect::{self, HostList};

/// The largest manifest or index read (OCI asks registries to accept at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest image config read.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// How long a registry token is reused before a new one is asked for (Docker Hub's last five
/// minutes; a token refused earlier is replaced at once).
const TOKEN_REUSE: Duration = Duration::from_secs(240);
/// The largest token-service answer read (a JSON object with a token of a few KiB).
const MAX_TOKEN_BYTES: usize = 64 * 1024;

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

/// What a [`Fetcher`] is built from (the `detection.registry` settings it reads).
pub struct FetcherSettings {
    pub insecure: Vec<String>,
    pub credentials_file: PathBuf,
    pub timeout: Duration,
    /// Hosts besides the registry's own that redirects and token realms may go to.
    pub redirect_hosts: HostList,
    /// Answer bytes held at once over all reads of this fetcher.
    pub max_buffered_bytes: usize,
}

/// Reads images from registries. One per configuration; shared by every lookup.
pub struct Fetcher {
    http: registry_http::Client,
    insecure: Vec<String>,
    credentials_file: PathBuf,
    redirect_hosts: HostList,
    /// One permit per byte of registry answers held in memory.
    buffered: Semaphore,
    max_buffered_bytes: usize,
    /// (registry, repository) → what was last accepted there, and when it was obtained.
    authorizations: Mutex<HashMap<(String, String), (Authorization, Instant)>>,
}

/// A registry answer, and its place in the byte budget (given back when dropped).
struct Body<'a> {
    bytes: Vec<u8>,
    _held: Option<SemaphorePermit<'a>>,
}

impl Fetcher {
    /// Builds the HTTP client. rustls needs its process-wide provider (ring) installed first.
    pub fn new(settings: FetcherSettings) -> Result<Self, RegistryError> {
        crate::adapters::tls::install_crypto_provider();
        let http = registry_http::Client::builder()
            .connect_timeout(settings.timeout)
            .read_timeout(settings.timeout)
            .user_agent(concat!("wasm-admission/", env!("CARGO_PKG_VERSION")))
            .redirect(redirect::policy(settings.redirect_hosts.clone()))
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        let max_buffered_bytes = settings.max_buffered_bytes.min(Semaphore::MAX_PERMITS);
        Ok(Self {
            http,
            insecure: settings.insecure,
            credentials_file: settings.credentials_file,
            redirect_hosts: settings.redirect_hosts,
            buffered: Semaphore::new(max_buffered_bytes),
            max_buffered_bytes,
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
            OciManifest::ImageIndex(index) => match image_facts::decide_index(&index) {
                IndexStep::Wasm(fact) => return Ok(Verdict::Wasm(fact)),
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
        match image_facts::decide_manifest(&image) {
            ManifestStep::Wasm(fact) => Ok(Verdict::Wasm(fact)),
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
                verify_digest(&body.bytes, &digest, "image config")?;
                let config: ImageConfig =
                    serde_json::from_slice(&body.bytes).map_err(|e| RegistryError::Invalid {
                        what: "image config",
                        message: e.to_string(),
                    })?;
                Ok(image_facts::decide_config(&config))
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
            verify_digest(&body.bytes, digest, "manifest")?;
        }
        parse_manifest(&body.bytes)
    }

    /// One GET with the repository's authorization; on 401 a new authorization is obtained
    /// from the answer's challenge and the GET is tried once more. The body is read up to
    /// `limit`. Redirects follow the host rules of src/adapters/registry/redirect.rs.
    async fn get(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        url: &str,
        accept: &str,
        limit: usize,
        what: &'static str,
    ) -> Result<Body<'_>, RegistryError> {
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
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let answered = response.url().clone();
                drop(response);
                authorization = self
                    .authorize(reference, auth, &answered, challenge.as_deref())
                    .await?;
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
            return self.read_limited(response, limit, what).await;
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

    /// Answers a 401: a bearer token from the token service its `WWW-Authenticate` challenge
    /// names (anonymous or with the credentials), else the basic credentials themselves. The
    /// realm must pass the redirect rules from the URL that answered 401: the registry's own
    /// origin or a `redirectHosts` host, never from HTTPS to HTTP.
    async fn authorize(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        answered: &Url,
        challenge: Option<&str>,
    ) -> Result<Authorization, RegistryError> {
        if let RegistryAuth::Bearer(token) = auth {
            return Ok(Authorization::Bearer(token.clone()));
        }
        let denied = || RegistryError::Denied {
            status: 401,
            anonymous: matches!(auth, RegistryAuth::Anonymous),
        };
        let Some(bearer) = challenge.and_then(bearer_challenge) else {
            return match auth {
                RegistryAuth::Basic(user, pass) => {
                    Ok(Authorization::Basic(user.clone(), pass.clone()))
                }
                _ => Err(denied()),
            };
        };
        let mut realm = Url::parse(&bearer.realm)
            .map_err(|e| RegistryError::Auth(format!("token realm is not a URL: {e}")))?;
        if let Err(refused) = redirect::check(answered, &realm, &self.redirect_hosts) {
            tracing::warn!(
                registry = reference.resolve_registry(),
                realm = %realm,
                %refused,
                "token realm refused"
            );
            return Err(RegistryError::Realm(match refused {
                redirect::Refused::Downgrade => "https to http",
                _ => "another host",
            }));
        }
        {
            let mut query = realm.query_pairs_mut();
            query.append_pair(
                "scope",
                &format!("repository:{}:pull", reference.repository()),
            );
            if let Some(service) = &bearer.service {
                query.append_pair("service", service);
            }
        }
        let mut request = self.http.get(realm);
        if let RegistryAuth::Basic(user, pass) = auth {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::http("token", &e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Denied {
                status: status.as_u16(),
                anonymous: matches!(auth, RegistryAuth::Anonymous),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Auth(format!(
                "token service: HTTP {}",
                status.as_u16()
            )));
        }
        let body = self
            .read_limited(response, MAX_TOKEN_BYTES, "token")
            .await?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body.bytes).map_err(|e| RegistryError::Invalid {
                what: "token",
                message: e.to_string(),
            })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .map(Authorization::Bearer)
            .ok_or_else(|| RegistryError::Auth("token service answered no token".into()))
    }

    /// The body, refused as soon as it is known to exceed `limit` (declared length or bytes
    /// read), or when the bytes held over all reads would pass the byte budget.
    async fn read_limited(
        &self,
        mut response: registry_http::Response,
        limit: usize,
        what: &'static str,
    ) -> Result<Body<'_>, RegistryError> {
        let too_large = || RegistryError::TooLarge { what, limit };
        let over_budget = || RegistryError::ByteLimit(self.max_buffered_bytes / (1024 * 1024));
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut held: Option<SemaphorePermit<'_>> = None;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RegistryError::http(what, &e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            let n = u32::try_from(chunk.len()).map_err(|_| too_large())?;
            let permit = self
                .buffered
                .try_acquire_many(n)
                .map_err(|_| over_budget())?;
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Body {
            bytes: body,
            _held: held,
        })
    }
}

/// The Bearer challenge of a `WWW-Authenticate` header, if it has one with a realm.
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

fn bearer_challenge(header: &str) -> Option<BearerChallenge> {
    http_auth::parser::ChallengeParser::new(header)
        .filter_map(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|c| {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            Some(BearerChallenge {
                realm: param("realm")?,
                service: param("service"),
            })
        })
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
    fn bearer_challenges_give_realm_and_service() {
        let c = bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert!(bearer_challenge(r#"Basic realm="test-realm""#).is_none());
        assert!(bearer_challenge("Bearer service=x").is_none());
        assert!(bearer_challenge("").is_none());
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
