//! The configuration file (behaviour.md §8): one YAML document, every key optional, unknown keys refused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::core::baseline::{Exemptions, SecurityConfig, SecurityPolicy};
use crate::core::quantity::Quantity;

/// The largest configuration file accepted; a ConfigMap cannot be larger than 1 MiB anyway.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Namespaces that are never touched, unless the configuration names others.
pub const DEFAULT_EXCLUDED_NAMESPACES: [&str; 3] =
    ["kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("invalid configuration in {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration, with behaviour.md §8's defaults. Each key's meaning for users is
/// written once, in `config_reference::REFERENCE` (docs/config.md is generated from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// RuntimeClass injected when the pod does not name one (behaviour.md §4.1).
    pub runtime_class_name: String,
    /// Namespaces never touched; the webhook's own namespace is added at start (behaviour.md §6).
    pub excluded_namespaces: Vec<String>,
    /// When false, workload templates are not mutated; Pods still are (behaviour.md §6).
    pub mutate_templates: bool,
    /// Pod annotations added where absent (behaviour.md §4.4).
    pub pod_annotations: BTreeMap<String, String>,
    /// Default requests and limits when no profile is chosen (behaviour.md §4.2). A block that names only
    /// `requests` or only `limits` keeps the built-in default for the other.
    #[serde(deserialize_with = "de_resources")]
    pub resources: ResourceDefaults,
    /// Named profiles chosen by `wasm-admission.io/resource-profile`. Profiles given here are added
    /// to the built-in `edge` and `serverless` ones; a built-in name given here overrides that
    /// profile's `requests` and/or `limits`.
    #[serde(deserialize_with = "de_profiles")]
    pub resource_profiles: BTreeMap<String, ResourceDefaults>,
    pub otel: OtelConfig,
    pub security: SecurityConfig,
    pub detection: DetectionConfig,
}

/// Requests and limits by resource name (`cpu`, `memory`, ...). An empty map turns that default off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourceDefaults {
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
}

/// A `requests`/`limits` block as written: an absent key keeps the default it overrides.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceOverride {
    requests: Option<BTreeMap<String, Quantity>>,
    limits: Option<BTreeMap<String, Quantity>>,
}

impl ResourceOverride {
    fn over(self, base: Option<&ResourceDefaults>) -> ResourceDefaults {
        let base = base.cloned().unwrap_or_default();
        ResourceDefaults {
            requests: self.requests.unwrap_or(base.requests),
            limits: self.limits.unwrap_or(base.limits),
        }
    }
}

fn de_resources<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ResourceDefaults, D::Error> {
    let given = ResourceOverride::deserialize(d)?;
    Ok(given.over(Some(&Config::default().resources)))
}

fn de_profiles<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ResourceDefaults>, D::Error> {
    let given = BTreeMap::<String, ResourceOverride>::deserialize(d)?;
    let mut profiles = Config::default().resource_profiles;
    for (name, over) in given {
        let merged = over.over(profiles.get(&name));
        profiles.insert(name, merged);
    }
    Ok(profiles)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OtelConfig {
    pub enabled: bool,
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// RuntimeClass names that run Wasm (behaviour.md §3 rule 3b); `runtimeClassName` always counts too.
    pub runtime_classes: Vec<String>,
    /// CRI handlers that run Wasm: a watched RuntimeClass with one of them counts (rule 3b).
    pub runtime_handlers: Vec<String>,
    /// Classes kept without a warning on pods detected by the variant annotation (behaviour.md §4.1).
    pub variant_runtime_classes: Vec<String>,
    /// Globs over the full image reference (behaviour.md §3 rule 5).
    pub image_patterns: Vec<String>,
    pub registry: RegistryConfig,
}

/// Registry inspection (behaviour.md §3 rule 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegistryConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(rename = "cacheTTL", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// `host:port` of registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// A docker `config.json`, as mounted from a `kubernetes.io/dockerconfigjson` Secret.
    pub credentials_file: String,
    /// Registries that may be inspected (`host`, `host:port`, `*` within one DNS label); empty:
    /// any. An image on another registry is not fetched and gets a warning.
    pub allowed_hosts: Vec<String>,
    /// Hosts besides the registry's own that a redirect or a `WWW-Authenticate` token realm may
    /// send a read to (HTTPS only from an HTTPS registry): by default the blob storage and token
    /// hosts of Docker Hub, GHCR, ECR and Quay ([`DEFAULT_REDIRECT_HOSTS`]).
    pub redirect_hosts: Vec<String>,
    /// Registry fetches running at once over all reviews; a lookup that finds no place within its
    /// time budget counts as not Wasm, with a warning.
    pub max_concurrent_fetches: usize,
    /// Registry answer bytes held in memory at once over all lookups, in MiB; a read beyond it is
    /// refused (not Wasm, with a warning).
    #[serde(rename = "maxBufferedMiB")]
    pub max_buffered_mib: usize,
}

/// Where public registries send blob reads and token requests (the default of
/// `detection.registry.redirectHosts`): Docker Hub's token service and blob CDN, GHCR's blob
/// host, ECR's per-region layer buckets, Quay's CDN. Each is a public host run by the registry's
/// operator; none resolves to a private address.
pub const DEFAULT_REDIRECT_HOSTS: [&str; 6] = [
    "auth.docker.io",
    "production.cloudflare.docker.com",
    "pkg-containers.githubusercontent.com",
    "prod-*-starport-layer-bucket.s3.*.amazonaws.com",
    "prod-*-starport-layer-bucket.s3.amazonaws.com",
    "cdn*.quay.io",
];

impl Default for Config {
    fn default() -> Self {
        let profile =
            |req_cpu: &str, req_mem: &str, lim_cpu: &str, lim_mem: &str| ResourceDefaults {
                requests: quantities(&[("cpu", req_cpu), ("memory", req_mem)]),
                limits: quantities(&[("cpu", lim_cpu), ("memory", lim_mem)]),
            };
        Self {
            runtime_class_name: "wasm".into(),
            excluded_namespaces: DEFAULT_EXCLUDED_NAMESPACES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            mutate_templates: true,
            pod_annotations: BTreeMap::new(),
            resources: profile("250m", "64Mi", "500m", "128Mi"),
            resource_profiles: BTreeMap::from([
                ("edge".to_string(), profile("50m", "64Mi", "100m", "128Mi")),
                (
                    "serverless".to_string(),
                    profile("10m", "32Mi", "50m", "64Mi"),
                ),
            ]),
            otel: OtelConfig::default(),
            security: SecurityConfig::default(),
            detection: DetectionConfig::default(),
        }
    }
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: "http://otel-collector:4317".into(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(600),
            insecure: Vec::new(),
            credentials_file: String::new(),
            allowed_hosts: Vec::new(),
            redirect_hosts: DEFAULT_REDIRECT_HOSTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_concurrent_fetches: 64,
            max_buffered_mib: 16,
        }
    }
}

/// The Wasm RuntimeClass names of the ecosystem (behaviour.md §8; behaviour.md §3 says where each comes from).
pub const DEFAULT_RUNTIME_CLASSES: [&str; 10] = [
    "wasm",
    "wasmedge",
    "wasmtime",
    "wasmer",
    "spin",
    "wasmtime-spin",
    "wasmtime-spin-v2",
    "wws",
    "slight",
    "lunatic",
];

/// The containerd Wasm shims' handler names (behaviour.md §8).
pub const DEFAULT_RUNTIME_HANDLERS: [&str; 9] = [
    "wasm", "wasmedge", "wasmtime", "wasmer", "wamr", "spin", "slight", "wws", "lunatic",
];

impl Default for DetectionConfig {
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Self {
            runtime_classes: names(&DEFAULT_RUNTIME_CLASSES),
            runtime_handlers: names(&DEFAULT_RUNTIME_HANDLERS),
            variant_runtime_classes: names(&["crun"]),
            image_patterns: Vec::new(),
            registry: RegistryConfig::default(),
        }
    }
}

impl RegistryConfig {
    fn validate(&self) -> Result<(), String> {
        for (key, list) in [
            ("allowedHosts", &self.allowed_hosts),
            ("redirectHosts", &self.redirect_hosts),
        ] {
            for host in list {
                if host.is_empty()
                    || host.contains(['/', '@', '?', '#', ' '])
                    || host.starts_with('.')
                    || host.ends_with('.')
                {
                    return Err(format!(
                        "detection.registry.{key}: {host:?} is not a host or host:port \
                         (no scheme or path; `*` stands for part of one DNS label)"
                    ));
                }
            }
        }
        if self.max_concurrent_fetches == 0 {
            return Err("detection.registry.maxConcurrentFetches: must be at least 1".into());
        }
        if self.max_buffered_mib < 4 || self.max_buffered_mib > 4096 {
            return Err(
                "detection.registry.maxBufferedMiB: must be from 4 (one manifest of the largest size read) to 4096"
                    .into(),
            );
        }
        Ok(())
    }
}

impl DetectionConfig {
    /// RuntimeClass names are DNS subdomains and handlers DNS labels, as Kubernetes checks them.
    fn validate(&self) -> Result<(), String> {
        let lists = [
            ("runtimeClasses", &self.runtime_classes, 253, true),
            ("runtimeHandlers", &self.runtime_handlers, 63, false),
            (
                "variantRuntimeClasses",
                &self.variant_runtime_classes,
                253,
                true,
            ),
        ];
        for (key, names, max, dots) in lists {
            for name in names {
                if !is_dns_name(name, max, dots) {
                    let what = if dots {
                        "a DNS subdomain"
                    } else {
                        "a DNS label"
                    };
                    return Err(format!(
                        "detection.{key}: {name:?} is not a valid name (must be {what}: \
                         lowercase letters, digits and '-'{}, at most {max} characters, \
                         starting and ending with a letter or digit)",
                        if dots { " or '.'" } else { "" }
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Exemptions {
    /// Namespaces are DNS labels and RuntimeClass names DNS subdomains, as Kubernetes checks them;
    /// a user name must not be empty.
    fn validate(&self) -> Result<(), String> {
        for name in &self.usernames {
            if name.is_empty() {
                return Err("security.exemptions.usernames: a user name must not be empty".into());
            }
        }
        for (key, names, max, dots) in [
            ("namespaces", &self.namespaces, 63, false),
            ("runtimeClasses", &self.runtime_classes, 253, true),
        ] {
            for name in names {
                if !is_dns_name(name, max, dots) {
                    return Err(format!(
                        "security.exemptions.{key}: {name:?} is not a valid {}",
                        if dots {
                            "RuntimeClass name"
                        } else {
                            "namespace name"
                        }
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A DNS-1123 label (`dots` false) or subdomain (`dots` true) of at most `max` characters.
fn is_dns_name(name: &str, max: usize, dots: bool) -> bool {
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    name.len() <= max
        && if dots {
            name.split('.').all(label_ok)
        } else {
            label_ok(name)
        }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| {
            let q = Quantity::parse(v).unwrap_or_else(|e| panic!("built-in default {v}: {e}"));
            (k.to_string(), q)
        })
        .collect()
}

impl Config {
    /// Parses and validates configuration text; the error names the offending key.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        // An empty file (or one holding only comments) is the default configuration.
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let config: Config = if value.is_null() {
            Config::default()
        } else {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                if path == "." {
                    e.into_inner().to_string()
                } else {
                    format!("{path}: {}", e.into_inner())
                }
            })?
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration with every default, as YAML (`wasm-admission config`).
    pub fn default_yaml() -> String {
        serde_yaml_ng::to_string(&Config::default()).unwrap_or_default()
    }

    /// Adds the webhook's own namespace to the excluded ones (behaviour.md §6).
    pub fn with_own_namespace(mut self, namespace: Option<&str>) -> Self {
        if let Some(ns) = namespace.filter(|ns| !ns.is_empty())
            && !self.excluded_namespaces.iter().any(|n| n == ns)
        {
            self.excluded_namespaces.push(ns.to_string());
        }
        self
    }

    fn validate(&self) -> Result<(), String> {
        if self.runtime_class_name.is_empty() {
            return Err("runtimeClassName: must not be empty".into());
        }
        let profiles = std::iter::once(("resources".to_string(), &self.resources)).chain(
            self.resource_profiles
                .iter()
                .map(|(name, p)| (format!("resourceProfiles.{name}"), p)),
        );
        for (where_, profile) in profiles {
            for (resource, request) in &profile.requests {
                if let Some(limit) = profile.limits.get(resource)
                    && request > limit
                {
                    return Err(format!(
                        "{where_}: the request for {resource} ({request}) is above its limit ({limit})"
                    ));
                }
            }
        }
        for pattern in &self.detection.image_patterns {
            // Image references are ASCII (the distribution spec's grammar): the engine's globs
            // match bytes and CEL's regular expressions match code points, so a non-ASCII
            // pattern would mean different things at the two doors. It can match no valid image.
            if let Some(ch) = pattern.chars().find(|c| !c.is_ascii()) {
                return Err(format!(
                    "detection.imagePatterns: pattern {pattern:?} contains the non-ASCII character \
                     {ch:?}; image references are ASCII, so it could never match a valid image"
                ));
            }
            crate::core::detection::compile_pattern(pattern)
                .map_err(|e| format!("detection.imagePatterns: {e}"))?;
        }
        self.security.exemptions.validate()?;
        self.detection.validate()?;
        for key in self.pod_annotations.keys() {
            if key.is_empty() {
                return Err("podAnnotations: an annotation key must not be empty".into());
            }
        }
        if self.detection.registry.timeout.is_zero() {
            return Err("detection.registry.timeout: must be above zero".into());
        }
        self.detection.registry.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_spec_defaults() {
        let c = Config::from_yaml("# nothing\n").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.runtime_class_name, "wasm");
        assert_eq!(c.otel.endpoint, "http://otel-collector:4317");
        assert_eq!(c.detection.registry.timeout, Duration::from_secs(2));
        assert_eq!(c.detection.registry.cache_ttl, Duration::from_secs(600));
        assert_eq!(
            c.excluded_namespaces,
            ["kube-system", "kube-public", "kube-node-lease"]
        );
    }

    #[test]
    fn default_yaml_round_trips() {
        let text = Config::default_yaml();
        assert_eq!(Config::from_yaml(&text).unwrap(), Config::default());
        assert!(text.contains("cacheTTL: 10m"), "{text}");
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = Config::from_yaml("otel:\n  endpont: x\n").unwrap_err();
        assert!(err.contains("otel"), "{err}");
        assert!(err.contains("endpont"), "{err}");
        let err = Config::from_yaml("runtimeClass: wasm\n").unwrap_err();
        assert!(err.contains("runtimeClass"), "{err}");
    }

    #[test]
    fn empty_map_turns_a_default_off() {
        let c = Config::from_yaml("resources:\n  limits: {}\n").unwrap();
        assert!(c.resources.limits.is_empty());
        assert_eq!(c.resources.requests, Config::default().resources.requests);
    }

    #[test]
    fn profiles_given_are_added_to_the_built_in_ones() {
        let c = Config::from_yaml(
            "resourceProfiles:\n  big: {requests: {cpu: '1'}}\n  edge: {limits: {cpu: 200m}}\n",
        )
        .unwrap();
        assert_eq!(c.resource_profiles.len(), 3);
        assert!(c.resource_profiles["big"].limits.is_empty());
        let edge = &c.resource_profiles["edge"];
        assert_eq!(edge.limits.len(), 1);
        assert_eq!(
            edge.requests,
            Config::default().resource_profiles["edge"].requests
        );
    }

    #[test]
    fn profile_with_request_above_limit_is_refused() {
        let err = Config::from_yaml("resources:\n  requests: {cpu: '1'}\n  limits: {cpu: 500m}\n")
            .unwrap_err();
        assert!(err.contains("resources") && err.contains("cpu"), "{err}");
    }

    #[test]
    fn invalid_quantity_and_policy_are_refused() {
        assert!(Config::from_yaml("resources:\n  requests: {cpu: lots}\n").is_err());
        let err = Config::from_yaml("security:\n  policy: restricted\n").unwrap_err();
        assert!(err.contains("security.policy"), "{err}");
    }

    #[test]
    fn detection_lists_have_spec_defaults_and_can_be_emptied() {
        let d = Config::default().detection;
        assert_eq!(d.runtime_classes.len(), 10);
        assert!(d.runtime_classes.iter().any(|c| c == "wasmtime-spin-v2"));
        assert!(d.runtime_handlers.iter().any(|h| h == "wamr"));
        assert_eq!(d.variant_runtime_classes, ["crun"]);
        let c = Config::from_yaml(
            "detection:\n  runtimeClasses: []\n  runtimeHandlers: []\n  variantRuntimeClasses: []\n",
        )
        .unwrap();
        assert!(c.detection.runtime_classes.is_empty());
        assert!(c.detection.runtime_handlers.is_empty());
        assert!(c.detection.variant_runtime_classes.is_empty());
        // One list given: the others keep their defaults.
        let c = Config::from_yaml("detection:\n  runtimeClasses: [my-spin]\n").unwrap();
        assert_eq!(c.detection.runtime_classes, ["my-spin"]);
        assert_eq!(c.detection.runtime_handlers, d.runtime_handlers);
    }

    #[test]
    fn invalid_runtime_class_or_handler_names_are_refused_naming_the_key() {
        for (yaml, key) in [
            (
                "detection:\n  runtimeClasses: ['']\n",
                "detection.runtimeClasses",
            ),
            (
                "detection:\n  runtimeClasses: [Spin]\n",
                "detection.runtimeClasses",
            ),
            (
                "detection:\n  runtimeClasses: ['wasm-']\n",
                "detection.runtimeClasses",
            ),
            (
                "detection:\n  runtimeHandlers: [io.containerd.spin.v2]\n",
                "detection.runtimeHandlers",
            ),
            (
                "detection:\n  variantRuntimeClasses: ['crun runc']\n",
                "detection.variantRuntimeClasses",
            ),
        ] {
            let err = Config::from_yaml(yaml).unwrap_err();
            assert!(err.starts_with(key), "{yaml}: {err}");
        }
        let ok = "detection:\n  runtimeClasses: [wasm.example.com, spin-v2]\n  runtimeHandlers: [spin]\n";
        assert!(Config::from_yaml(ok).is_ok());
        assert!(!is_dns_name(&"a".repeat(64), 253, true));
        assert!(is_dns_name(&format!("{}.b", "a".repeat(63)), 253, true));
    }

    #[test]
    fn own_namespace_is_excluded_once() {
        let c = Config::default()
            .with_own_namespace(Some("wasm-admission"))
            .with_own_namespace(Some("wasm-admission"));
        assert_eq!(c.excluded_namespaces.len(), 4);
        assert_eq!(c.excluded_namespaces[3], "wasm-admission");
    }
}
