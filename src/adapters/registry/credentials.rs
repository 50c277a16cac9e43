//! Registry credentials from a docker `config.json`, as mounted from a
//! `kubernetes.io/dockerconfigjson` Secret (its `.dockerconfigjson` key).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::RegistryError;

/// The largest credentials file read (a Secret cannot be larger than 1 MiB).
pub const MAX_CREDENTIALS_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// A bearer token for the registry itself.
    #[serde(default)]
    registrytoken: Option<String>,
}

/// Credentials by registry host (normalized by [`normalize_host`]).
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    by_host: BTreeMap<String, RegistryAuth>,
}

/// `https://index.docker.io/v1/` → `docker.io`; `ghcr.io/` → `ghcr.io`; `localhost:5000` stays.
/// Docker Hub's several names are one registry.
pub fn normalize_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

impl Credentials {
    /// Parses the text of a docker `config.json`.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let config: DockerConfig = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut by_host = BTreeMap::new();
        for (key, entry) in config.auths {
            let auth = if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
                RegistryAuth::Bearer(token)
            } else if let Some(encoded) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = BASE64
                    .decode(encoded.trim())
                    .map_err(|e| format!("auths.{key}.auth is not base64: {e}"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                let (user, pass) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                RegistryAuth::Basic(user.to_string(), pass.to_string())
            } else if let (Some(user), Some(pass)) = (entry.username, entry.password) {
                RegistryAuth::Basic(user, pass)
            } else {
                continue;
            };
            by_host.insert(normalize_host(&key), auth);
        }
        Ok(Self { by_host })
    }

    /// Reads a credentials file; an empty path means no credentials.
    pub async fn read(path: &Path) -> Result<Self, RegistryError> {
        if path.as_os_str().is_empty() {
            return Ok(Self::default());
        }
        let err = |message: String| RegistryError::Credentials {
            path: path.display().to_string(),
            message,
        };
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| err(e.to_string()))?;
        if meta.len() > MAX_CREDENTIALS_BYTES {
            return Err(err(format!("larger than {MAX_CREDENTIALS_BYTES} bytes")));
        }
        let text = tokio::fs::read(path)
            .await
            .map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// The credentials for a registry host, anonymous when there are none.
    pub fn for_host(&self, host: &str) -> RegistryAuth {
        self.by_host
            .get(&normalize_host(host))
            .cloned()
            .unwrap_or(RegistryAuth::Anonymous)
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_field_and_username_password_are_both_read() {
        let text = br#"{"auths": {
            "registry.example.com": {"auth": "dXNlcjpwYXNzOndvcmQ="},
            "https://index.docker.io/v1/": {"username": "hub", "password": "secret"},
            "localhost:5000": {"registrytoken": "tok"},
            "empty.example.com": {}
        }}"#;
        let c = Credentials::parse(text).unwrap();
        assert_eq!(
            c.for_host("registry.example.com"),
            RegistryAuth::Basic("user".into(), "pass:word".into())
        );
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                c.for_host(hub),
                RegistryAuth::Basic("hub".into(), "secret".into()),
                "{hub}"
            );
        }
        assert_eq!(
            c.for_host("localhost:5000"),
            RegistryAuth::Bearer("tok".into())
        );
        assert_eq!(c.for_host("empty.example.com"), RegistryAuth::Anonymous);
        assert_eq!(c.for_host("ghcr.io"), RegistryAuth::Anonymous);
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(Credentials::parse(b"not json").is_err());
        assert!(Credentials::parse(br#"{"auths": {"x": {"auth": "%%%"}}}"#).is_err());
        // "nopassword" base64
        assert!(Credentials::parse(br#"{"auths": {"x": {"auth": "bm9wYXNzd29yZA=="}}}"#).is_err());
        assert!(Credentials::parse(b"{}").unwrap().is_empty());
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("https://ghcr.io/"), "ghcr.io");
        assert_eq!(
            normalize_host("http://LOCALHOST:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
    }
}
