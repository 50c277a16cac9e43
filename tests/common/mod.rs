//! Shared helpers for the engine tests: fixtures as kube-apiserver sends them, reviews built
//! the way the apiserver builds them, and patches applied the way it applies them.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Value, json};
use wasm_admission::core::config::Config;
use wasm_admission::core::detection::{ClusterRuntimeClasses, RuntimeClassInfo};
use wasm_admission::core::engine::{Decision, Endpoint, Engine, Facts};
use wasm_admission::core::kinds::split_api_version;
use wasm_admission::core::review;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"))
}

/// A fixture object (`tests/fixtures/<name>.json`).
pub fn fixture(name: &str) -> Value {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The plain Deployment fixture with one container per image (named `app`, `sidecar`, `third`).
pub fn deployment_with_images(images: &[&str]) -> Value {
    let mut object = fixture("deployment-plain");
    let template = object["spec"]["template"]["spec"]["containers"][0].clone();
    object["spec"]["template"]["spec"]["containers"] = Value::Array(
        images
            .iter()
            .zip(["app", "sidecar", "third"])
            .map(|(image, name)| {
                let mut c = template.clone();
                c["name"] = json!(name);
                c["image"] = json!(image);
                c
            })
            .collect(),
    );
    object
}

/// Every fixture's name.
pub fn all_fixtures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

pub fn engine() -> Engine {
    Engine::new(Config::default()).expect("default configuration is valid")
}

pub fn engine_with(yaml: &str) -> Engine {
    Engine::new(Config::from_yaml(yaml).expect("test configuration is valid")).expect("engine")
}

/// Sets `value` at a JSON pointer, creating missing objects on the way.
pub fn set(object: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut at = object;
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        at = match at {
            Value::Array(a) => {
                let idx: usize = token.parse().expect("array index");
                if last {
                    a[idx] = value;
                    return;
                }
                &mut a[idx]
            }
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                let map = other.as_object_mut().expect("object");
                if last {
                    map.insert(token.clone(), value);
                    return;
                }
                map.entry(token.clone()).or_insert_with(|| json!({}))
            }
        };
    }
}

/// Removes the value at a JSON pointer, if present.
pub fn remove(object: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("pointer");
    let last = last.replace("~1", "/").replace("~0", "~");
    match object.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            a.remove(last.parse::<usize>().expect("index"));
        }
        _ => {}
    }
}

pub fn namespace_of(object: &Value) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("shop")
        .to_string()
}

/// An `admission.k8s.io/v1` AdmissionReview as kube-apiserver sends it.
pub fn review_for(
    object: &Value,
    operation: &str,
    old: Option<&Value>,
    sub_resource: Option<&str>,
) -> Value {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = split_api_version(api_version);
    let kind = object["kind"].as_str().expect("kind");
    let resource = format!("{}s", kind.to_lowercase());
    let mut request = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": object["metadata"]["name"].as_str().unwrap_or(""),
        "namespace": namespace_of(object),
        "operation": operation,
        "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
        "object": object,
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": false,
        "options": {"kind": format!("{}Options", capitalized(operation)), "apiVersion": "meta.k8s.io/v1"}
    });
    if let Some(sub) = sub_resource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn capitalized(op: &str) -> String {
    let lower = op.to_lowercase();
    let mut c = lower.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// What the webhook answered, and the object after the apiserver applied the patch.
pub struct Admitted {
    pub decision: Decision,
    pub response: Value,
    pub object: Value,
}

impl Admitted {
    pub fn allowed(&self) -> bool {
        self.decision.allowed
    }
    pub fn message(&self) -> &str {
        self.decision.message.as_deref().unwrap_or("")
    }
    pub fn patched(&self) -> bool {
        !self.decision.patch.is_empty()
    }
    pub fn injected(&self, meta_pointer: &str) -> Option<String> {
        self.object
            .pointer(&format!(
                "{meta_pointer}/annotations/wasm-admission.io~1injected"
            ))
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// Sends a review through the same door `serve` uses and applies the patch it returns.
pub fn admit_review(engine: &Engine, review_json: &Value, endpoint: Endpoint) -> Admitted {
    admit_review_with(engine, review_json, endpoint, &Facts::default())
}

/// [`admit_review`], with what a door found out beforehand.
pub fn admit_review_with(
    engine: &Engine,
    review_json: &Value,
    endpoint: Endpoint,
    facts: &Facts<'_>,
) -> Admitted {
    let body = serde_json::to_vec(review_json).expect("serialize");
    let reply = review::handle(engine, &body, endpoint, facts).expect("review is answered");
    let response: Value = serde_json::from_slice(&reply.body).expect("response is JSON");
    // Apply the patch as the apiserver does: decoded from the base64 `patch` of the response.
    let mut object = review_json["request"]["object"].clone();
    if let Some(encoded) = response["response"]["patch"].as_str() {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64 patch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("RFC 6902 patch");
        assert_eq!(bytes, reply.decision.patch.as_json().as_bytes());
        assert_eq!(
            patch,
            reply.decision.patch.operations().expect("JSON Patch")
        );
        json_patch::patch(&mut object, &patch).expect("patch applies");
    } else {
        assert!(
            reply.decision.patch.is_empty(),
            "a patch must be sent when there is one"
        );
    }
    Admitted {
        decision: reply.decision,
        response,
        object,
    }
}

pub fn admit(engine: &Engine, object: &Value) -> Admitted {
    admit_review(
        engine,
        &review_for(object, "CREATE", None, None),
        Endpoint::Mutate,
    )
}

/// A CREATE as `serve` answers it when its RuntimeClass watch knows `classes`.
pub fn admit_in_cluster(
    engine: &Engine,
    object: &Value,
    classes: &ClusterRuntimeClasses,
) -> Admitted {
    let facts = Facts {
        registry: None,
        runtime_classes: Some(classes),
        nodes: None,
        runtime_classes_pending: false,
    };
    admit_review_with(
        engine,
        &review_for(object, "CREATE", None, None),
        Endpoint::Mutate,
        &facts,
    )
}

/// The cluster's RuntimeClasses as the watch keeps them: `(name, handler)` pairs.
pub fn cluster_classes(pairs: &[(&str, &str)]) -> ClusterRuntimeClasses {
    pairs
        .iter()
        .map(|(name, handler)| {
            (
                name.to_string(),
                RuntimeClassInfo {
                    handler: handler.to_string(),
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// The documents of a manifest file under `examples/`, read as `check` reads them.
pub fn example(path: &str) -> Vec<Value> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    let mut docs = Vec::new();
    wasm_admission::commands::check::parse_source(path, &text, &mut docs);
    docs.into_iter()
        .map(|d| d.content.unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// The one pod workload (any of the seven kinds) of an example file.
pub fn example_workload(path: &str) -> Value {
    let pod_kinds = [
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    ];
    let mut workloads: Vec<Value> = example(path)
        .into_iter()
        .filter(|d| d["kind"].as_str().is_some_and(|k| pod_kinds.contains(&k)))
        .collect();
    assert_eq!(workloads.len(), 1, "{path}: one workload");
    workloads.remove(0)
}

/// The same object with `securityContext.privileged: true` on container `container`.
pub fn privileged_twin(object: &Value, container: usize) -> Value {
    let mut twin = object.clone();
    let ptr = format!(
        "{}/containers/{container}/securityContext/privileged",
        spec_ptr(object)
    );
    set(&mut twin, &ptr, json!(true));
    twin
}

/// Whether the answer is a denial as behaviour.md §5 words it: 403 Forbidden.
pub fn is_forbidden(out: &Admitted) -> bool {
    let status = &out.response["response"]["status"];
    !out.allowed() && status["code"] == 403 && status["reason"] == "Forbidden"
}

pub fn admit_op(engine: &Engine, object: &Value, operation: &str, old: Option<&Value>) -> Admitted {
    admit_review(
        engine,
        &review_for(object, operation, old, None),
        Endpoint::Mutate,
    )
}

pub fn validate(engine: &Engine, object: &Value) -> Admitted {
    admit_review(
        engine,
        &review_for(object, "CREATE", None, None),
        Endpoint::Validate,
    )
}

/// The pod spec pointer of a fixture's kind.
pub fn spec_ptr(object: &Value) -> &'static str {
    match object["kind"].as_str() {
        Some("Pod") => "/spec",
        Some("CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => "/spec/template/spec",
    }
}

/// The pod metadata pointer of a fixture's kind.
pub fn meta_ptr(object: &Value) -> &'static str {
    match object["kind"].as_str() {
        Some("Pod") => "/metadata",
        Some("CronJob") => "/spec/jobTemplate/spec/template/metadata",
        _ => "/spec/template/metadata",
    }
}

/// The env entry named `name` of container `index`.
pub fn env_of<'v>(object: &'v Value, container: usize, name: &str) -> Option<&'v Value> {
    object
        .pointer(&format!("{}/containers/{container}/env", spec_ptr(object)))?
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// What kube-apiserver's defaulting does to a pod spec that comes back from a webhook:
/// `fieldRef.apiVersion: v1` added, and for Pods requests copied from limits where absent.
pub fn apiserver_defaults(object: &mut Value) {
    let is_pod = object["kind"] == "Pod";
    let ptr = spec_ptr(object);
    let Some(spec) = object.pointer_mut(ptr) else {
        return;
    };
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for e in c
                .get_mut("env")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(f) = e
                    .pointer_mut("/valueFrom/fieldRef")
                    .and_then(Value::as_object_mut)
                {
                    f.entry("apiVersion").or_insert(json!("v1"));
                }
            }
            if is_pod && let Some(r) = c.get_mut("resources").and_then(Value::as_object_mut) {
                let limits = r.get("limits").cloned().unwrap_or(json!({}));
                let requests = r.entry("requests").or_insert(json!({}));
                for (k, v) in limits.as_object().into_iter().flatten() {
                    requests
                        .as_object_mut()
                        .expect("map")
                        .entry(k.clone())
                        .or_insert(v.clone());
                }
                if requests.as_object().is_some_and(|m| m.is_empty()) {
                    r.remove("requests");
                }
            }
        }
    }
}
