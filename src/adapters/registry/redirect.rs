//! Which hosts a registry read may be sent to besides the registry's own (issue 23, finding 4: a
//! registry named in a pod spec answered 302 to an internal address, and the webhook fetched it).
//!
//! A redirect, and the token realm of a `WWW-Authenticate: Bearer realm=...` challenge, are
//! followed when they stay on the registry's own origin (same host and port with the same scheme,
//! or the same host from `http` to `https`), or go to a host of `detection.registry.redirectHosts`
//! ([`HostList`]). Never from `https` to `http`. Anything else ends the read with [`Refused`],
//! which the warning names. The default `redirectHosts` are the blob storage and token hosts of
//! Docker Hub, GHCR, ECR and Quay (behaviour.md and hardening.md say why each is safe to reach).

use registry_http::Url;
use registry_http::redirect::{Attempt, Policy};

/// At most this many redirects per read.
const MAX_REDIRECTS: usize = 5;

/// Why a redirect or token realm was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("redirect refused (another host)")]
    OtherHost,
    #[error("redirect refused (https to http)")]
    Downgrade,
    #[error("too many redirects")]
    TooMany,
}

/// Host patterns, as `detection.registry.allowedHosts` and `redirectHosts` write them: `host` (any
/// port) or `host:port`, compared without regard to case; `*` stands for any run of characters
/// within one DNS label (never a dot), so `*.dkr.ecr.*.amazonaws.com` matches every ECR region and
/// `*` alone any single-label host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostList {
    patterns: Vec<String>,
}

impl HostList {
    pub fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns.iter().map(|p| p.to_ascii_lowercase()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `host` (with `port`, if known) matches one of the patterns.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.patterns.iter().any(|pattern| {
            let (name, wanted_port) = split_port(pattern);
            let port_ok = match wanted_port {
                None => true,
                Some(p) => port == Some(p),
            };
            port_ok && host_matches(name, host)
        })
    }

    /// Whether an image's registry, as written (`ghcr.io`, `127.0.0.1:5000`) or as oci-client
    /// resolves it (`docker.io` → `index.docker.io`), is listed.
    pub fn allows_registry(&self, registry: &str) -> bool {
        let (host, port) = split_port(registry);
        self.matches(host, port)
    }
}

/// `host:port` into its parts; an IPv6 literal keeps its brackets' content.
fn split_port(text: &str) -> (&str, Option<u16>) {
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (text, None),
        },
        _ => (text, None),
    }
}

/// One pattern against one host, label by label; `*` never crosses a dot.
fn host_matches(pattern: &str, host: &str) -> bool {
    let mut pattern_labels = pattern.split('.');
    let mut host_labels = host.split('.');
    loop {
        match (pattern_labels.next(), host_labels.next()) {
            (None, None) => return true,
            (Some(p), Some(h)) if label_matches(p, h) => {}
            _ => return false,
        }
    }
}

fn label_matches(pattern: &str, label: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == label,
        Some((prefix, rest)) => {
            let Some(tail) = label.strip_prefix(prefix) else {
                return false;
            };
            // The shortest tail for the first `*` that lets the rest match.
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| label_matches(rest, &tail[i..]))
        }
    }
}

/// The redirect policy of the registry client.
pub fn policy(hosts: HostList) -> Policy {
    Policy::custom(move |attempt: Attempt| {
        let verdict = match attempt.previous().last() {
            _ if attempt.previous().len() > MAX_REDIRECTS => Err(Refused::TooMany),
            Some(from) => check(from, attempt.url(), &hosts),
            None => Ok(()),
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// Whether a read of `from` may go on to `to` (a redirect's target or a token realm).
pub fn check(from: &Url, to: &Url, hosts: &HostList) -> Result<(), Refused> {
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err(Refused::Downgrade);
    }
    if !matches!(to.scheme(), "http" | "https") {
        return Err(Refused::OtherHost);
    }
    let same_host =
        from.host_str().map(str::to_ascii_lowercase) == to.host_str().map(str::to_ascii_lowercase);
    let same_origin =
        from.scheme() == to.scheme() && from.port_or_known_default() == to.port_or_known_default();
    let upgrade = from.scheme() == "http" && to.scheme() == "https";
    if same_host && (same_origin || upgrade) {
        return Ok(());
    }
    match to.host_str() {
        Some(host) if hosts.matches(host, to.port_or_known_default()) => Ok(()),
        _ => Err(Refused::OtherHost),
    }
}

/// The refusal behind a client error, if it is one.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return Some(*refused);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn none() -> HostList {
        HostList::default()
    }

    #[test]
    fn same_host_redirects_are_followed_and_others_refused() {
        let from = url("https://registry.example/v2/a/manifests/v1");
        let check = |from: &Url, to: &str| check(from, &url(to), &none());
        assert_eq!(check(&from, "https://REGISTRY.example/v2/b"), Ok(()));
        assert_eq!(check(&from, "https://registry.example:443/x"), Ok(()));
        assert_eq!(
            check(&from, "https://cdn.example/blob"),
            Err(Refused::OtherHost)
        );
        assert_eq!(
            check(&from, "https://registry.example:8443/x"),
            Err(Refused::OtherHost)
        );
        assert_eq!(
            check(&from, "http://registry.example/x"),
            Err(Refused::Downgrade)
        );
        let insecure = url("http://127.0.0.1:5000/v2/a/manifests/v1");
        assert_eq!(check(&insecure, "http://127.0.0.1:5000/v2/b"), Ok(()));
        assert_eq!(check(&insecure, "https://127.0.0.1/v2/b"), Ok(()));
        assert_eq!(
            check(&insecure, "http://127.0.0.1:19002/latest/meta-data/iam"),
            Err(Refused::OtherHost)
        );
    }

    #[test]
    fn listed_redirect_hosts_are_followed_over_https_only() {
        let hosts = HostList::new(&[
            "production.cloudflare.docker.com".into(),
            "prod-*-starport-layer-bucket.s3.*.amazonaws.com".into(),
            "127.0.0.1:9000".into(),
        ]);
        let from = url("https://registry-1.docker.io/v2/library/alpine/blobs/sha256:ab");
        let ok = |to: &str| check(&from, &url(to), &hosts);
        assert_eq!(
            ok("https://production.cloudflare.docker.com/registry-v2/x"),
            Ok(())
        );
        assert_eq!(
            ok("http://production.cloudflare.docker.com/x"),
            Err(Refused::Downgrade)
        );
        assert_eq!(
            ok("https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/x"),
            Ok(())
        );
        // `*` never crosses a dot.
        assert_eq!(
            ok("https://prod-a.evil.example-starport-layer-bucket.s3.x.amazonaws.com/"),
            Err(Refused::OtherHost)
        );
        assert_eq!(
            ok("https://evil.production.cloudflare.docker.com/"),
            Err(Refused::OtherHost)
        );
        assert_eq!(
            ok("https://169.254.169.254/latest/meta-data"),
            Err(Refused::OtherHost)
        );
        let insecure = url("http://127.0.0.1:5000/v2/");
        assert_eq!(
            check(&insecure, &url("http://127.0.0.1:9000/token"), &hosts),
            Ok(())
        );
        assert_eq!(
            check(&insecure, &url("http://127.0.0.1:9001/token"), &hosts),
            Err(Refused::OtherHost)
        );
        assert_eq!(
            check(&insecure, &url("file:///etc/passwd"), &hosts),
            Err(Refused::OtherHost)
        );
    }

    #[test]
    fn host_patterns_match_by_label_and_port() {
        let hosts = HostList::new(&[
            "GHCR.io".into(),
            "*.dkr.ecr.*.amazonaws.com".into(),
            "10.0.0.5:5000".into(),
        ]);
        assert!(hosts.allows_registry("ghcr.io"));
        assert!(hosts.allows_registry("ghcr.io:443"));
        assert!(hosts.allows_registry("123456789012.dkr.ecr.eu-west-1.amazonaws.com"));
        assert!(!hosts.allows_registry("dkr.ecr.eu-west-1.amazonaws.com"));
        assert!(!hosts.allows_registry("a.b.dkr.ecr.eu-west-1.amazonaws.com"));
        assert!(hosts.allows_registry("10.0.0.5:5000"));
        assert!(!hosts.allows_registry("10.0.0.5:5001"));
        assert!(!hosts.allows_registry("10.0.0.5"));
        assert!(!hosts.allows_registry("ghcr.io.evil.example"));
        assert!(HostList::new(&["[::1]:5000".into()]).allows_registry("[::1]:5000"));
    }
}
