//! Registry inspection (behaviour.md §3 rule 6): the lookups that the `serve` and `check` doors make
//! before they ask the engine, and the read-only [`RegistryFacts`] they hand it.
//!
//! - [`image_facts`]: the pure decision over a manifest, an index and an image config.
//! - [`fetch`]: the I/O (bounded reads, digests, authentication through oci-client).
//! - [`credentials`]: a docker `config.json`.
//! - this module: the cache and the time budget.
//!
//! Caching: an image pinned by digest is cached for good (its content cannot change), a tag for
//! `cacheTTL`; a failed lookup is not cached, so the next review tries again. At most
//! [`CACHE_CAPACITY`] images are kept, the least recently used going first. Concurrent lookups of
//! one image share one fetch: the fetch runs in its own task, bounded by
//! `detection.registry.timeout`, and every review waits on it for at most its own budget, so a
//! review that gives up does not cancel the fetch and the next review finds its answer.
//!
//! Limits across reviews (issue 23, finding 5): an image whose registry is not in
//! `detection.registry.allowedHosts` (when that is set) is never fetched; at most
//! `maxConcurrentFetches` fetches run at once (a fetch that finds no place within half its timeout
//! gives up); at most `maxBufferedMiB` of registry answers are held in memory at once (a read that
//! would pass it is refused at once). Each of these is "not Wasm" with a warning, and counted in
//! [`RegistryCounters`].

pub mod credentials;
pub mod fetch;
pub mod image_facts;
pub mod redirect;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use lru::LruCache;
use oci_client::Reference;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::core::config::RegistryConfig;
use crate::core::detection::{ImageClass, ImageClassifier};
use fetch::Fetcher;
use image_facts::Verdict;

/// How many images the cache holds at most.
pub const CACHE_CAPACITY: usize = 10_000;

/// Why one image could not be inspected. The text becomes part of a warning (at most 120
/// characters with the image name), so it is short; details go to the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid image reference: {0}")]
    Reference(String),
    #[error("cannot read credentials file {path}: {message}")]
    Credentials { path: String, message: String },
    #[error("registry client: {0}")]
    Client(String),
    #[error("{what}: {kind}")]
    Http {
        what: &'static str,
        kind: &'static str,
        /// The full error, for the log.
        detail: String,
    },
    #[error("{what}: HTTP {status}")]
    Status { what: &'static str, status: u16 },
    #[error("{}access denied (HTTP {status})", if *anonymous { "anonymous " } else { "" })]
    Denied { status: u16, anonymous: bool },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("{what} larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    #[error("{what} does not match its digest")]
    DigestMismatch { what: &'static str },
    #[error("{what} is not valid JSON: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("an index entry is itself an index")]
    NestedIndex,
    #[error("no answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("lookup failed unexpectedly")]
    TaskFailed,
    #[error("registry not in allowedHosts")]
    HostNotAllowed,
    #[error("token realm refused ({0})")]
    Realm(&'static str),
    #[error("registry fetch limit ({0}) reached")]
    FetchLimit(usize),
    #[error("registry read budget ({0} MiB) full")]
    ByteLimit(usize),
}

/// Why a lookup was refused by a rule of this webhook rather than answered by the registry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `host_not_allowed`, `redirect`, `token_realm`, `fetch_limit` or `byte_limit`.
    pub reason: &'static str,
}

/// Registry lookups refused by the allowlist, the redirect and realm rules or the global caps;
/// `serve` exports them as `wasm_admission_registry_lookups_refused_total{reason}`.
#[derive(Clone, Debug, Default)]
pub struct RegistryCounters {
    pub refused: Family<RefusedLabels, Counter>,
}

impl RegistryCounters {
    fn count(&self, error: &RegistryError) {
        let reason = match error {
            RegistryError::HostNotAllowed => "host_not_allowed",
            RegistryError::Realm(_) => "token_realm",
            RegistryError::FetchLimit(_) => "fetch_limit",
            RegistryError::ByteLimit(_) => "byte_limit",
            RegistryError::Http {
                kind: "redirect refused (another host)" | "redirect refused (https to http)",
                ..
            } => "redirect",
            _ => return,
        };
        self.refused.get_or_create(&RefusedLabels { reason }).inc();
    }
}

impl RegistryError {
    pub(crate) fn http(what: &'static str, e: &registry_http::Error) -> Self {
        let kind = if let Some(refused) = redirect::refusal(e) {
            match refused {
                redirect::Refused::OtherHost => "redirect refused (another host)",
                redirect::Refused::Downgrade => "redirect refused (https to http)",
                redirect::Refused::TooMany => "too many redirects",
            }
        } else if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else if e.is_redirect() {
            "too many redirects"
        } else if e.is_body() || e.is_decode() {
            "reading the answer failed"
        } else {
            "request failed"
        };
        Self::Http {
            what,
            kind,
            detail: error_chain(e),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What one fetch ended with (cloneable, so that every waiter gets it).
type Outcome = Result<Verdict, RegistryError>;

#[derive(Clone)]
struct Entry {
    lookup: Shared<BoxFuture<'static, Outcome>>,
    started: Instant,
    pinned: bool,
}

impl Entry {
    /// Whether this entry may answer a lookup now: in flight, or done with an answer that has
    /// not expired. A failure is never reused.
    fn usable(&self, ttl: Duration) -> bool {
        match self.lookup.peek() {
            None => true,
            Some(Err(_)) => false,
            Some(Ok(_)) => self.pinned || self.started.elapsed() < ttl,
        }
    }
}

/// Looks images up in their registries, with a cache. One per registry configuration.
pub struct Inspector {
    settings: RegistryConfig,
    fetcher: Result<Arc<Fetcher>, RegistryError>,
    cache: Mutex<LruCache<String, Entry>>,
    allowed: redirect::HostList,
    fetches: Arc<Semaphore>,
    counters: RegistryCounters,
}

impl Inspector {
    /// An inspector for these settings. A client that cannot be built makes every lookup
    /// `Unknown` with the reason (and a log line), rather than stopping the door.
    pub fn new(settings: &RegistryConfig) -> Self {
        Self::with_capacity(settings, CACHE_CAPACITY)
    }

    pub fn with_capacity(settings: &RegistryConfig, capacity: usize) -> Self {
        Self::with_counters(settings, capacity, RegistryCounters::default())
    }

    pub fn with_counters(
        settings: &RegistryConfig,
        capacity: usize,
        counters: RegistryCounters,
    ) -> Self {
        let fetcher = Fetcher::new(fetch::FetcherSettings {
            insecure: settings.insecure.clone(),
            credentials_file: PathBuf::from(&settings.credentials_file),
            timeout: settings.timeout,
            redirect_hosts: redirect::HostList::new(&settings.redirect_hosts),
            max_buffered_bytes: settings.max_buffered_mib.saturating_mul(1024 * 1024),
        })
        .map(Arc::new);
        if let Err(e) = &fetcher {
            warn!(error = %e, "registry inspection cannot start; every image counts as not Wasm, with a warning");
        }
        Self {
            settings: settings.clone(),
            fetcher,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            allowed: redirect::HostList::new(&settings.allowed_hosts),
            fetches: Arc::new(Semaphore::new(settings.max_concurrent_fetches.max(1))),
            counters,
        }
    }

    /// A lookup that is refused before any request, counted.
    fn refused(&self, error: RegistryError) -> Shared<BoxFuture<'static, Outcome>> {
        self.counters.count(&error);
        futures_util::future::ready(Err(error)).boxed().shared()
    }

    pub fn settings(&self) -> &RegistryConfig {
        &self.settings
    }

    /// How many images the cache holds (answers, failures and lookups in flight).
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Entry>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shared lookup of one image: from the cache, or a new fetch.
    fn lookup(&self, image: &str) -> Shared<BoxFuture<'static, Outcome>> {
        // Keyed by the normalized reference (cheap string work); the reference is only parsed
        // on a miss, so a cache hit costs a hash and a lock.
        let key = crate::core::detection::normalize_image(image);
        let mut cache = self.lock();
        if let Some(entry) = cache.get(&key)
            && entry.usable(self.settings.cache_ttl)
        {
            return entry.lookup.clone();
        }
        let reference = match Reference::from_str(image) {
            Ok(reference) => reference,
            Err(e) => {
                let error = RegistryError::Reference(e.to_string());
                return futures_util::future::ready(Err(error)).boxed().shared();
            }
        };
        if !self.allowed.is_empty()
            && !self.allowed.allows_registry(reference.registry())
            && !self.allowed.allows_registry(reference.resolve_registry())
        {
            debug!(
                image,
                registry = reference.registry(),
                "registry not in allowedHosts; not fetched"
            );
            return self.refused(RegistryError::HostNotAllowed);
        }
        let fetcher = match &self.fetcher {
            Ok(fetcher) => fetcher.clone(),
            Err(e) => return futures_util::future::ready(Err(e.clone())).boxed().shared(),
        };
        let cap = self.settings.timeout;
        let name = reference.whole();
        let pinned = reference.digest().is_some();
        let fetches = self.fetches.clone();
        let max_fetches = self.settings.max_concurrent_fetches;
        let counters = self.counters.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + cap;
            // A place among the fetches in flight, waited for at most half of this fetch's own
            // time budget: a fetch left with less would rarely finish anyway.
            let wait_until = tokio::time::Instant::now() + cap / 2;
            let outcome = match tokio::time::timeout_at(wait_until, fetches.acquire_owned()).await {
                Ok(Ok(_place)) => {
                    match tokio::time::timeout_at(deadline, fetcher.inspect(&reference)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(RegistryError::Timeout(cap)),
                    }
                }
                Ok(Err(_)) => Err(RegistryError::TaskFailed),
                Err(_) => Err(RegistryError::FetchLimit(max_fetches)),
            };
            if let Err(e) = &outcome {
                counters.count(e);
            }
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &outcome {
                Ok(verdict) => debug!(image = %name, ?verdict, elapsed_ms, "registry lookup"),
                Err(RegistryError::Http { detail, .. }) => {
                    warn!(image = %name, error = %detail, elapsed_ms, "registry lookup failed")
                }
                Err(e) => warn!(image = %name, error = %e, elapsed_ms, "registry lookup failed"),
            }
            outcome
        });
        let lookup = async move { task.await.unwrap_or(Err(RegistryError::TaskFailed)) }
            .boxed()
            .shared();
        cache.put(
            key,
            Entry {
                lookup: lookup.clone(),
                started: Instant::now(),
                pinned,
            },
        );
        lookup
    }

    /// Looks every image up at once; the whole set gets `budget`, after which the images still
    /// unanswered are `Unknown`. Answers already in the cache come back at once, even with no
    /// budget left.
    pub async fn inspect<'a>(
        &self,
        images: impl IntoIterator<Item = &'a str>,
        budget: Duration,
    ) -> RegistryFacts {
        let deadline = tokio::time::Instant::now() + budget;
        let mut unique: Vec<&str> = images.into_iter().filter(|i| !i.is_empty()).collect();
        unique.sort_unstable();
        unique.dedup();
        let lookups = unique.into_iter().map(|image| {
            let lookup = self.lookup(image);
            async move {
                let class = match tokio::time::timeout_at(deadline, lookup).await {
                    Ok(Ok(Verdict::Wasm(_))) => ImageClass::Wasm,
                    Ok(Ok(Verdict::NotWasm)) => ImageClass::NotWasm,
                    Ok(Err(e)) => ImageClass::Unknown {
                        reason: e.to_string(),
                    },
                    Err(_) => ImageClass::Unknown {
                        reason: RegistryError::Timeout(budget).to_string(),
                    },
                };
                (image.to_string(), class)
            }
        });
        RegistryFacts {
            classes: futures_util::future::join_all(lookups)
                .await
                .into_iter()
                .collect(),
        }
    }
}

/// The results of one door's lookups, as the engine reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryFacts {
    pub classes: HashMap<String, ImageClass>,
}

impl ImageClassifier for RegistryFacts {
    fn classify(&self, image: &str) -> ImageClass {
        self.classes
            .get(image)
            .cloned()
            .unwrap_or_else(|| ImageClass::Unknown {
                reason: "not looked up".into(),
            })
    }
}

/// The budget of one review's lookups: what the apiserver's `?timeout=` leaves, less a safety
/// margin (a quarter of that timeout, at most 1s) for deciding, encoding and the way back, and
/// never more than `detection.registry.timeout`.
pub fn review_budget(remaining: Duration, apiserver_timeout: Duration, cap: Duration) -> Duration {
    let margin = (apiserver_timeout / 4).min(Duration::from_secs(1));
    remaining.saturating_sub(margin).min(cap)
}

/// The `serve` door's inspector, rebuilt (with an empty cache) when the registry settings change
/// on a configuration reload.
#[derive(Default)]
pub struct InspectorSlot {
    current: Mutex<Option<Arc<Inspector>>>,
    counters: RegistryCounters,
}

impl InspectorSlot {
    /// A slot whose inspectors count refusals in `counters`.
    pub fn with_counters(counters: RegistryCounters) -> Self {
        Self {
            current: Mutex::new(None),
            counters,
        }
    }

    /// The inspector for these settings; `None` when registry inspection is off.
    pub fn for_settings(&self, settings: &RegistryConfig) -> Option<Arc<Inspector>> {
        if !settings.enabled {
            return None;
        }
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match current.as_ref() {
            Some(inspector) if inspector.settings() == settings => Some(inspector.clone()),
            _ => {
                let inspector = Arc::new(Inspector::with_counters(
                    settings,
                    CACHE_CAPACITY,
                    self.counters.clone(),
                ));
                *current = Some(inspector.clone());
                Some(inspector)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_budget_keeps_a_margin_and_the_cap() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // The apiserver's default 10s: the 2s cap applies.
        assert_eq!(review_budget(s(10), s(10), s(2)), s(2));
        // timeoutSeconds: 1 leaves 750ms.
        assert_eq!(review_budget(s(1), s(1), s(2)), ms(750));
        // Time already spent reading the body counts.
        assert_eq!(review_budget(ms(1200), s(2), s(2)), ms(700));
        assert_eq!(review_budget(ms(100), s(2), s(2)), Duration::ZERO);
        // A long cap is held to the apiserver's budget less 1s.
        assert_eq!(review_budget(s(30), s(30), s(60)), s(29));
    }

    #[test]
    fn warnings_stay_short() {
        let errors = [
            RegistryError::Http {
                what: "manifest",
                kind: "cannot connect",
                detail: "x".repeat(500),
            },
            RegistryError::Denied {
                status: 401,
                anonymous: true,
            },
            RegistryError::Timeout(Duration::from_millis(1500)),
            RegistryError::Status {
                what: "manifest",
                status: 404,
            },
        ];
        for e in errors {
            assert!(e.to_string().len() < 40, "{e}");
        }
        assert_eq!(
            RegistryError::Timeout(Duration::from_millis(1500)).to_string(),
            "no answer within 1500ms"
        );
    }

    #[test]
    fn facts_answer_unknown_for_images_not_looked_up() {
        let facts = RegistryFacts::default();
        assert!(matches!(
            facts.classify("ghcr.io/a/b:1"),
            ImageClass::Unknown { .. }
        ));
    }

    #[tokio::test]
    async fn invalid_references_are_unknown_without_any_request() {
        let inspector = Inspector::new(&RegistryConfig {
            enabled: true,
            ..RegistryConfig::default()
        });
        let facts = inspector
            .inspect(["UPPER/Case:Bad Tag"], Duration::from_secs(1))
            .await;
        let class = facts.classify("UPPER/Case:Bad Tag");
        assert!(
            matches!(&class, ImageClass::Unknown { reason } if reason.starts_with("invalid image reference")),
            "{class:?}"
        );
        assert_eq!(inspector.cached(), 0);
    }
}
