//! Which redirects a registry read may follow (issue 23, finding 4: a registry named in a pod
//! spec answered 302 to an internal address, and the webhook fetched it).
//!
//! Only redirects on the same host are followed: same host and port with the same scheme, or
//! the same host from `http` to `https`. A redirect to another host, or from `https` to `http`,
//! ends the read with [`Refused`], which the warning names. This also refuses the blob
//! redirects some public registries send to their storage hosts (Docker Hub, GHCR, ECR): for
//! those, an image the manifest alone does not decide stays "unknown" with a warning.

use registry_http::Url;
use registry_http::redirect::{Attempt, Policy};

/// At most this many redirects per read.
const MAX_REDIRECTS: usize = 5;

/// Why a redirect was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("redirect refused (another host)")]
    OtherHost,
    #[error("redirect refused (https to http)")]
    Downgrade,
    #[error("too many redirects")]
    TooMany,
}

/// The redirect policy of the registry client.
pub fn policy() -> Policy {
    Policy::custom(|attempt: Attempt| {
        let verdict = match attempt.previous().last() {
            _ if attempt.previous().len() > MAX_REDIRECTS => Err(Refused::TooMany),
            Some(from) => check(from, attempt.url()),
            None => Ok(()),
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// Whether a redirect from `from` to `to` may be followed.
pub fn check(from: &Url, to: &Url) -> Result<(), Refused> {
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err(Refused::Downgrade);
    }
    let same_host =
        from.host_str().map(str::to_ascii_lowercase) == to.host_str().map(str::to_ascii_lowercase);
    let same_origin =
        from.scheme() == to.scheme() && from.port_or_known_default() == to.port_or_known_default();
    let upgrade = from.scheme() == "http" && to.scheme() == "https";
    if same_host && (same_origin || upgrade) {
        Ok(())
    } else {
        Err(Refused::OtherHost)
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

    #[test]
    fn same_host_redirects_are_followed_and_others_refused() {
        let from = url("https://registry.example/v2/a/manifests/v1");
        assert_eq!(check(&from, &url("https://REGISTRY.example/v2/b")), Ok(()));
        assert_eq!(check(&from, &url("https://registry.example:443/x")), Ok(()));
        assert_eq!(
            check(&from, &url("https://cdn.example/blob")),
            Err(Refused::OtherHost)
        );
        assert_eq!(
            check(&from, &url("https://registry.example:8443/x")),
            Err(Refused::OtherHost)
        );
        assert_eq!(
            check(&from, &url("http://registry.example/x")),
            Err(Refused::Downgrade)
        );
        let insecure = url("http://127.0.0.1:5000/v2/a/manifests/v1");
        assert_eq!(check(&insecure, &url("http://127.0.0.1:5000/v2/b")), Ok(()));
        assert_eq!(check(&insecure, &url("https://127.0.0.1/v2/b")), Ok(()));
        assert_eq!(
            check(
                &insecure,
                &url("http://127.0.0.1:19002/latest/meta-data/iam")
            ),
            Err(Refused::OtherHost)
        );
    }
}
