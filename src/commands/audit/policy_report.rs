//! `audit -o policyreport` (behaviour.md §11): the `wgpolicyk8s.io/v1alpha2` PolicyReport of each
//! namespace and one ClusterPolicyReport, the format Kyverno and Kubewarden write and Policy
//! Reporter displays.
//!
//! One result per Wasm object (and per object the engine could not read), `source:
//! wasm-admission`, `policy: wasm-admission`:
//!
//! `rule` is a rule id of docs/behaviour.md ("Rule ids"), read from the decision's typed rules:
//!
//! | verdict | result | rule |
//! | --- | --- | --- |
//! | denied | `fail` | the first failing rule (`baseline.privileged`, `profile.unknown`, ...) |
//! | would be mutated | `warn` | the first mutation that acted (`mutate.runtime-class`, ...; the message lists what would be injected, then the warnings) |
//! | unchanged, with warnings | `warn` | the first rule that warned (`detect.mixed`, ...) |
//! | unchanged | `pass` | the detection rule that found it Wasm (`detect.annotation`, ...) |
//! | not readable | `error` | `engine` |
//!
//! Objects that are not Wasm (or out of scope: excluded namespaces, the skip label) are not
//! listed, only counted in `summary.skip`: a report with a line for every ordinary Pod would soon
//! pass etcd's object size limit and says nothing. A namespace with no Wasm object gets no
//! PolicyReport. The ClusterPolicyReport (only when every namespace is audited) holds the
//! cluster-wide summary and no results: the seven kinds are all namespaced.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::adapters::report::{Checked, Tally};
use crate::core::engine::{Decision, Outcome};
use crate::core::verdict::{RuleId, Status};

pub const NAME: &str = "wasm-admission";
const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";

/// What a result points at, taken from the object before it is decided.
#[derive(Debug, Clone, Default)]
pub struct ObjectRef {
    api_version: String,
    uid: String,
    owner: Option<String>,
}

impl ObjectRef {
    pub fn of(object: &Value) -> Self {
        let meta = &object["metadata"];
        let owner = meta["ownerReferences"]
            .as_array()
            .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
            .map(|r| {
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default()
                )
            });
        Self {
            api_version: object["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            uid: meta["uid"].as_str().unwrap_or_default().to_string(),
            owner,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    pass: u64,
    fail: u64,
    warn: u64,
    error: u64,
    skip: u64,
}

impl Summary {
    fn count(&mut self, result: &str) {
        match result {
            "pass" => self.pass += 1,
            "fail" => self.fail += 1,
            "warn" => self.warn += 1,
            "error" => self.error += 1,
            _ => self.skip += 1,
        }
    }

    fn json(&self) -> Value {
        json!({"pass": self.pass, "fail": self.fail, "warn": self.warn, "error": self.error, "skip": self.skip})
    }
}

#[derive(Default)]
struct NamespaceReport {
    results: Vec<Value>,
    summary: Summary,
}

/// The reports being built, one small result per Wasm object (the objects themselves are not
/// kept).
pub struct PolicyReports {
    namespaces: BTreeMap<String, NamespaceReport>,
    cluster: Summary,
    with_cluster_report: bool,
    tally: Tally,
    timestamp: Value,
}

impl PolicyReports {
    pub fn new(with_cluster_report: bool) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            namespaces: BTreeMap::new(),
            cluster: Summary::default(),
            with_cluster_report,
            tally: Tally::default(),
            timestamp: json!({"seconds": now.as_secs(), "nanos": 0}),
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }

    pub fn add(&mut self, r: &Checked, object: ObjectRef) {
        self.tally.count(r);
        let (result, rule, message) = verdict(r);
        self.cluster.count(result);
        let report = self.namespaces.entry(r.namespace.clone()).or_default();
        report.summary.count(result);
        if result == "skip" {
            // Counted, not listed.
            return;
        }
        let mut resource = json!({
            "apiVersion": object.api_version,
            "kind": r.kind,
            "namespace": r.namespace,
            "name": r.name,
        });
        if !object.uid.is_empty() {
            resource["uid"] = object.uid.into();
        }
        let mut entry = json!({
            "source": NAME,
            "policy": NAME,
            "rule": rule,
            "result": result,
            "message": message,
            "scored": true,
            "category": "WebAssembly",
            "timestamp": self.timestamp,
            "resources": [resource],
        });
        if let Some(owner) = object.owner {
            entry["properties"] = json!({ "owner": owner });
        }
        report.results.push(entry);
    }

    /// The PolicyReports, by namespace, then the ClusterPolicyReport.
    pub fn into_documents(self) -> Vec<Value> {
        let labels = json!({"app.kubernetes.io/managed-by": NAME});
        let mut out: Vec<Value> = self
            .namespaces
            .into_iter()
            .filter(|(_, report)| !report.results.is_empty())
            .map(|(namespace, report)| {
                json!({
                    "apiVersion": API_VERSION,
                    "kind": "PolicyReport",
                    "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
                    "summary": report.summary.json(),
                    "results": report.results,
                })
            })
            .collect();
        if self.with_cluster_report {
            out.push(json!({
                "apiVersion": API_VERSION,
                "kind": "ClusterPolicyReport",
                "metadata": {"name": NAME, "labels": labels},
                "summary": self.cluster.json(),
                "results": [],
            }));
        }
        out
    }
}

/// `PolicyReport shop/wasm-admission (3 results)`, for log lines.
pub fn describe(report: &Value) -> String {
    let kind = report["kind"].as_str().unwrap_or_default();
    let name = report["metadata"]["name"].as_str().unwrap_or_default();
    let results = report["results"].as_array().map_or(0, Vec::len);
    match report["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name} ({results} results)"),
        None => format!("{kind} {name}"),
    }
}

/// The result, the rule that decided, and the message of one object (see the module's table).
fn verdict(r: &Checked) -> (&'static str, &'static str, String) {
    let ev = match &r.result {
        Err(e) => return ("error", "engine", e.clone()),
        Ok(ev) => ev,
    };
    let d = &ev.decision;
    let wasm = d.audit_annotations.contains_key("wasm-detected-by");
    let warnings = d.warnings.join("; ");
    match d.outcome() {
        Outcome::Denied => {
            let message = d.message.clone().unwrap_or_default();
            let rule = d.failed_rule().map_or("engine", RuleId::as_str);
            ("fail", rule, message)
        }
        Outcome::Mutated => {
            let injected = d
                .audit_annotations
                .get("injected")
                .map(String::as_str)
                .unwrap_or("a patch");
            let mut message = format!("the webhook would inject {injected}");
            if !warnings.is_empty() {
                message.push_str("; ");
                message.push_str(&warnings);
            }
            let rule = first(d, |id, status| {
                status == Status::Pass && id.as_str().starts_with("mutate.")
            });
            ("warn", rule, message)
        }
        Outcome::Unchanged if !d.warnings.is_empty() => {
            let rule = first(d, |_, status| {
                matches!(status, Status::Warn | Status::Error)
            });
            ("warn", rule, warnings)
        }
        Outcome::Unchanged if wasm => (
            "pass",
            first(d, |id, status| {
                status == Status::Pass && id.as_str().starts_with("detect.")
            }),
            "Wasm workload; nothing to inject or deny".to_string(),
        ),
        Outcome::Unchanged => ("skip", "detection", "not a Wasm workload".to_string()),
    }
}

/// The id of the first rule of `d` that `wanted` picks (`engine` when none does: a decision the
/// engine reached without a rule, which its tests rule out).
fn first(d: &Decision, wanted: impl Fn(RuleId, Status) -> bool) -> &'static str {
    d.rules
        .iter()
        .find(|r| wanted(r.id, r.status))
        .map_or("engine", |r| r.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::report::{KeepObject, Source, check_document};
    use crate::core::config::Config;
    use crate::core::engine::{Engine, Facts};

    fn result_of(yaml: &str) -> (&'static str, &'static str, String) {
        let engine = Engine::new(Config::default()).expect("engine");
        let object: Value = serde_yaml_ng::from_str(yaml).expect("YAML");
        let doc = Source {
            source: "t".into(),
            index: 0,
            content: Ok(object),
        };
        let checked = check_document(&engine, &Facts::default(), doc, "default", KeepObject::No);
        verdict(&checked)
    }

    #[test]
    fn results_name_the_rule_id_that_decided() {
        let pod = |annotations: &str, spec: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop, annotations: {{{annotations}}}}}\nspec: {{{spec}containers: [{{name: app, image: ghcr.io/acme/app:1}}]}}\n"
            )
        };
        let wasm = "wasm-admission.io/wasm: \"true\"";
        let (result, rule, message) = result_of(&pod(
            &format!("{wasm}, wasm-admission.io/resource-profile: tiny"),
            "",
        ));
        assert_eq!((result, rule), ("fail", "profile.unknown"), "{message}");
        let (result, rule, _) = result_of(&pod(wasm, "hostPID: true, "));
        assert_eq!((result, rule), ("fail", "baseline.host-namespaces"));
        let (result, rule, _) = result_of(&pod(wasm, ""));
        assert_eq!((result, rule), ("warn", "mutate.runtime-class"));
        let (result, rule, _) = result_of(&pod(wasm, "runtimeClassName: wasm, "));
        assert_eq!((result, rule), ("warn", "mutate.resources"));
        let (result, _, _) = result_of(&pod("", ""));
        assert_eq!(result, "skip");
    }
}
