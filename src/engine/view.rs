//! A typed, read-only view of the pod spec and metadata inside any of the seven kinds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use crate::kinds::WorkloadKind;

/// The object as received (for patches) plus typed copies of what the rules read.
pub struct PodView<'a> {
    pub kind: WorkloadKind,
    pub object: &'a Value,
    /// The object's own metadata.
    pub meta: ObjectMeta,
    /// The pod metadata: the Pod's own, or the pod template's (default when absent).
    pub pod_meta: ObjectMeta,
    pub spec: PodSpec,
}

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

impl<'a> PodView<'a> {
    pub fn parse(kind: WorkloadKind, object: &'a Value) -> Result<Self, String> {
        let meta = typed::<ObjectMeta>(object, &["metadata"])?;
        let pod_meta = if kind.is_template() {
            typed::<ObjectMeta>(object, kind.pod_metadata_path())?
        } else {
            meta.clone()
        };
        let spec = typed::<PodSpec>(object, kind.pod_spec_path())?;
        Ok(Self {
            kind,
            object,
            meta,
            pod_meta,
            spec,
        })
    }

    pub fn pod_annotations(&self) -> &BTreeMap<String, String> {
        self.pod_meta.annotations.as_ref().unwrap_or(&EMPTY)
    }

    pub fn pod_labels(&self) -> &BTreeMap<String, String> {
        self.pod_meta.labels.as_ref().unwrap_or(&EMPTY)
    }

    fn own_annotations(&self) -> &BTreeMap<String, String> {
        self.meta.annotations.as_ref().unwrap_or(&EMPTY)
    }

    /// A `wasm-admission.io/` annotation, read from the object and, for workloads, its pod
    /// template; the template's value wins (SPEC §3).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.pod_annotations()
            .get(key)
            .or_else(|| self.own_annotations().get(key))
            .map(String::as_str)
    }

    /// Whether either place carries `key: value` (for `wasm-admission.io/wasm: "false"`).
    pub fn annotation_anywhere(&self, key: &str, value: &str) -> bool {
        self.pod_annotations().get(key).is_some_and(|v| v == value)
            || self.own_annotations().get(key).is_some_and(|v| v == value)
    }

    /// Whether the object or its pod template carries `key: value` as a label.
    pub fn label_anywhere(&self, key: &str, value: &str) -> bool {
        let has = |m: &ObjectMeta| {
            m.labels
                .as_ref()
                .and_then(|l| l.get(key))
                .is_some_and(|v| v == value)
        };
        has(&self.meta) || has(&self.pod_meta)
    }

    /// The object's name, else its `generateName`.
    pub fn display_name(&self, request_name: &str) -> String {
        if !request_name.is_empty() {
            return request_name.to_string();
        }
        self.meta
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| self.meta.generate_name.clone())
            .unwrap_or_default()
    }

    /// JSON-pointer tokens under the pod spec.
    pub fn spec_path(&self, rest: &[&str]) -> Vec<String> {
        join(self.kind.pod_spec_path(), rest)
    }

    /// JSON-pointer tokens under the pod metadata.
    pub fn pod_meta_path(&self, rest: &[&str]) -> Vec<String> {
        join(self.kind.pod_metadata_path(), rest)
    }
}

fn join(base: &[&str], rest: &[&str]) -> Vec<String> {
    base.iter().chain(rest).map(|s| s.to_string()).collect()
}

/// Deserializes the value at `path`, or the type's default when it is absent or null.
fn typed<T: for<'de> Deserialize<'de> + Default>(
    object: &Value,
    path: &[&str],
) -> Result<T, String> {
    let mut at = object;
    for token in path {
        match at.get(token) {
            Some(v) if !v.is_null() => at = v,
            _ => return Ok(T::default()),
        }
    }
    serde_path_to_error::deserialize(at).map_err(|e| {
        let inner = e.path().to_string();
        let mut field = path.join(".");
        if inner != "." {
            field.push('.');
            field.push_str(&inner);
        }
        format!("{field}: {}", e.into_inner())
    })
}
