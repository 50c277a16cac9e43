//! Prometheus metrics of the `serve` door, in the OpenMetrics text format.
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `wasm_admission_reviews_total` | endpoint, kind, operation, outcome, rule | reviews answered; outcome is `mutated`, `unchanged`, `denied` or `error` (a request answered with HTTP 4xx/5xx); rule, on denials only, is the id of the first failing rule (docs/behaviour.md, "Rule ids"; a fixed set) |
//! | `wasm_admission_review_duration_seconds` | endpoint | time from request to answer, body read included (buckets from 50µs to 1s) |
//! | `wasm_admission_reviews_in_flight` | | reviews being read or answered right now |
//! | `wasm_admission_reviews_over_budget_total` | endpoint | answers given after the apiserver's `?timeout=` had run out |
//! | `wasm_admission_certificate_expiry_timestamp_seconds` | | `notAfter` of the certificate being served, in Unix seconds |
//! | `wasm_admission_reloads_total` | what, result | re-reads of changed files; what is `certificate`, `client_ca` or `config`, result is `success` or `failure` |
//! | `wasm_admission_connections_open` | | connections open right now (both listeners) |
//! | `wasm_admission_connections_refused_total` | | connections closed at once because the connection cap was reached |
//! | `wasm_admission_registry_lookups_refused_total` | reason | registry lookups refused by this webhook's own rules: `host_not_allowed` (`allowedHosts`), `redirect` and `token_realm` (host rules), `fetch_limit` and `byte_limit` (the caps across reviews) |
//! | `wasm_admission_build_info` | version | always 1 |
//! | `wasm_admission_nodes_watched` | | nodes whose labels the Node watch holds (behaviour.md §11) |
//! | `wasm_admission_node_watch_state` | | the Node watch: 0 off, 1 listing, 2 watching, 3 failing (retrying; a missing permission among others) |

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::core::engine::{Endpoint, Outcome};
use crate::core::kinds::WorkloadKind;
use crate::core::verdict::RuleId;

/// Latency buckets, in seconds: answers are usually well under a millisecond.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The Content-Type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ReviewLabels {
    endpoint: &'static str,
    kind: &'static str,
    operation: &'static str,
    outcome: &'static str,
    /// The failing rule's id on a denial, else empty: then the label is left out, as Prometheus
    /// reads an empty label as no label, and the series of other outcomes keep their four labels.
    rule: &'static str,
}

impl EncodeLabelSet for ReviewLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        [
            ("endpoint", self.endpoint),
            ("kind", self.kind),
            ("operation", self.operation),
            ("outcome", self.outcome),
        ]
        .encode(encoder)?;
        if self.rule.is_empty() {
            return Ok(());
        }
        [("rule", self.rule)].encode(encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    what: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// What a reload was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadWhat {
    Certificate,
    ClientCa,
    Config,
}

impl ReloadWhat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::ClientCa => "client_ca",
            Self::Config => "config",
        }
    }
}

/// How a review ended, as counted: the engine's outcome, or an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Decided(Outcome),
    /// A denial, with the rule that failed first.
    Denied(RuleId),
    Error,
}

pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    over_budget: Family<EndpointLabels, Counter>,
    in_flight: Gauge,
    certificate_expiry: Gauge<i64, AtomicI64>,
    reloads: Family<ReloadLabels, Counter>,
    connections_open: Gauge,
    connections_refused: Counter,
    nodes_watched: Gauge,
    node_watch_state: Gauge,
    registry_lookups: crate::adapters::registry::RegistryCounters,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasm_admission");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "Admission reviews answered, by endpoint, kind, operation and outcome, and for denials the failing rule",
            reviews.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "review_duration_seconds",
            "Time from request to answer, body read included",
            duration.clone(),
        );
        let over_budget = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "reviews_over_budget",
            "Reviews answered after the time budget the apiserver gave (?timeout=) had run out",
            over_budget.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reviews_in_flight",
            "Reviews being read or answered right now",
            in_flight.clone(),
        );
        let certificate_expiry = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, in seconds since the Unix epoch",
            certificate_expiry.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Re-reads of changed certificate, client CA and configuration files, by result",
            reloads.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Version of this build", build);
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Connections open right now, on both listeners",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once because the connection cap was reached",
            connections_refused.clone(),
        );
        let nodes_watched = Gauge::default();
        registry.register(
            "nodes_watched",
            "Nodes whose labels the Node watch holds",
            nodes_watched.clone(),
        );
        let node_watch_state = Gauge::default();
        registry.register(
            "node_watch_state",
            "The Node watch: 0 off, 1 listing, 2 watching, 3 failing and retrying",
            node_watch_state.clone(),
        );
        let registry_counters = crate::adapters::registry::RegistryCounters::default();
        registry.register(
            "registry_lookups_refused",
            "Registry lookups refused by allowedHosts, the redirect and token realm host rules, or the caps across reviews",
            registry_counters.refused.clone(),
        );
        // Every series exists from the start, so rate() and alerts see a zero before the first event.
        for what in [
            ReloadWhat::Certificate,
            ReloadWhat::ClientCa,
            ReloadWhat::Config,
        ] {
            for result in ["success", "failure"] {
                let _ = reloads.get_or_create(&ReloadLabels {
                    what: what.as_str(),
                    result,
                });
            }
        }
        Self {
            registry,
            reviews,
            duration,
            over_budget,
            in_flight,
            certificate_expiry,
            reloads,
            connections_open,
            connections_refused,
            nodes_watched,
            node_watch_state,
            registry_lookups: registry_counters,
        }
    }

    /// The gauges the Node watch counts into: nodes watched, and its state.
    pub fn node_gauges(&self) -> (Gauge, Gauge) {
        (self.nodes_watched.clone(), self.node_watch_state.clone())
    }

    /// The counters registry inspection adds to.
    pub fn registry_counters(&self) -> crate::adapters::registry::RegistryCounters {
        self.registry_lookups.clone()
    }

    /// Counts one answered review. `kind` and `operation` come from the request; kinds this webhook
    /// does not know are counted as `other` so a client cannot blow up the number of series.
    pub fn review(
        &self,
        endpoint: Endpoint,
        kind: &str,
        operation: &str,
        counted: Counted,
        seconds: f64,
    ) {
        let (outcome, rule) = match counted {
            Counted::Decided(outcome) => (outcome.as_str(), ""),
            Counted::Denied(rule) => (Outcome::Denied.as_str(), rule.as_str()),
            Counted::Error => ("error", ""),
        };
        self.reviews
            .get_or_create(&ReviewLabels {
                endpoint: endpoint.as_str(),
                kind: known_kind(kind),
                operation: known_operation(operation),
                outcome,
                rule,
            })
            .inc();
        self.duration
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .observe(seconds);
    }

    /// Counts a review as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn over_budget(&self, endpoint: Endpoint) {
        self.over_budget
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .inc();
    }

    pub fn certificate_expiry(&self, not_after_unix: i64) {
        self.certificate_expiry.set(not_after_unix);
    }

    pub fn reload(&self, what: ReloadWhat, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                what: what.as_str(),
                result: if ok { "success" } else { "failure" },
            })
            .inc();
    }

    /// The connections gauge, for the connection guard to count with.
    pub fn connections_open(&self) -> Gauge {
        self.connections_open.clone()
    }

    /// The refused-connections counter, for the connection guard to count with.
    pub fn connections_refused(&self) -> Counter {
        self.connections_refused.clone()
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Decrements `wasm_admission_reviews_in_flight` when dropped (also when the handler is cancelled
/// because the client went away).
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn known_kind(kind: &str) -> &'static str {
    WorkloadKind::ALL
        .iter()
        .map(|k| k.as_str())
        .find(|k| *k == kind)
        .unwrap_or(if kind.is_empty() { "" } else { "other" })
}

fn known_operation(operation: &str) -> &'static str {
    match operation {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "" => "",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = Metrics::new();
        m.review(
            Endpoint::Mutate,
            "Deployment",
            "CREATE",
            Counted::Decided(Outcome::Mutated),
            0.0002,
        );
        m.review(Endpoint::Validate, "Secret", "CREATE", Counted::Error, 0.01);
        m.review(
            Endpoint::Mutate,
            "Pod",
            "CREATE",
            Counted::Denied(RuleId::BaselinePrivileged),
            0.5,
        );
        m.certificate_expiry(1_800_000_000);
        m.reload(ReloadWhat::Config, false);
        let text = m.encode().unwrap();
        for needle in [
            "wasm_admission_reviews_total{endpoint=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",outcome=\"mutated\"} 1",
            "wasm_admission_reviews_total{endpoint=\"validate\",kind=\"other\",operation=\"CREATE\",outcome=\"error\"} 1",
            "wasm_admission_reviews_total{endpoint=\"mutate\",kind=\"Pod\",operation=\"CREATE\",outcome=\"denied\",rule=\"baseline.privileged\"} 1",
            "wasm_admission_review_duration_seconds_bucket{le=\"0.00005\",endpoint=\"mutate\"} 0",
            "wasm_admission_review_duration_seconds_bucket{le=\"0.00025\",endpoint=\"mutate\"} 1",
            "wasm_admission_certificate_expiry_timestamp_seconds 1800000000",
            "wasm_admission_reloads_total{what=\"config\",result=\"failure\"} 1",
            "wasm_admission_reloads_total{what=\"certificate\",result=\"success\"} 0",
            "wasm_admission_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
