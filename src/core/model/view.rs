//! The pod spec and metadata inside any of the seven kinds, located once.

use smallvec::SmallVec;

use super::{Map, Meta, Object, Spec};
use crate::core::kinds::WorkloadKind;

/// A JSON pointer's unescaped tokens, on the stack: the deepest path the rules write has ten
/// (a CronJob's pod spec is five deep).
pub type Tokens<'r> = SmallVec<[&'r str; 12]>;

static EMPTY_MAP: Map<'static> = Map::new();
static EMPTY_META: Meta<'static> = Meta {
    name: None,
    generate_name: None,
    labels: None,
    annotations: None,
    owner_references: None,
};
static EMPTY_SPEC: Spec<'static> = Spec {
    containers: None,
    init_containers: None,
    ephemeral_containers: None,
    runtime_class_name: None,
    node_selector: None,
    tolerations: None,
    overhead: None,
    host_network: None,
    host_pid: None,
    host_ipc: None,
    host_users: None,
    volumes: None,
    security_context: None,
    template: None,
    job_template: None,
};

/// Where the rules look: the object's own metadata, the pod metadata (the Pod's own, or the
/// pod template's) and the pod spec; absent parts read as empty.
pub struct PodView<'m, 'a> {
    pub kind: WorkloadKind,
    pub object: &'m Object<'a>,
    pub meta: &'m Meta<'a>,
    pub pod_meta: &'m Meta<'a>,
    pub spec: &'m Spec<'a>,
}

impl<'m, 'a> PodView<'m, 'a> {
    pub fn new(kind: WorkloadKind, object: &'m Object<'a>) -> Self {
        let meta = object.metadata.as_ref().unwrap_or(&EMPTY_META);
        let spec = object.spec.as_ref();
        let template = match kind {
            WorkloadKind::Pod => None,
            WorkloadKind::CronJob => spec
                .and_then(|s| s.job_template.as_deref())
                .and_then(|j| j.spec.as_ref())
                .and_then(|j| j.template.as_ref()),
            _ => spec.and_then(|s| s.template.as_deref()),
        };
        let (pod_meta, pod_spec) = match (kind, template) {
            (WorkloadKind::Pod, _) => (meta, spec),
            (_, Some(t)) => (t.metadata.as_ref().unwrap_or(&EMPTY_META), t.spec.as_ref()),
            (_, None) => (&EMPTY_META, None),
        };
        Self {
            kind,
            object,
            meta,
            pod_meta,
            spec: pod_spec.unwrap_or(&EMPTY_SPEC),
        }
    }

    pub fn pod_annotations(&self) -> &'m Map<'a> {
        self.pod_meta.annotations.as_ref().unwrap_or(&EMPTY_MAP)
    }

    pub fn pod_labels(&self) -> &'m Map<'a> {
        self.pod_meta.labels.as_ref().unwrap_or(&EMPTY_MAP)
    }

    fn own_annotations(&self) -> &'m Map<'a> {
        self.meta.annotations.as_ref().unwrap_or(&EMPTY_MAP)
    }

    /// A `wasm-admission.io/` annotation, read from the object and, for workloads, its pod
    /// template; the template's value wins (behaviour.md §3).
    pub fn annotation(&self, key: &str) -> Option<&'m str> {
        self.pod_annotations()
            .get(key)
            .or_else(|| self.own_annotations().get(key))
            .map(|v| &**v)
    }

    /// Whether either place carries `key: value` (for `wasm-admission.io/wasm: "false"`).
    pub fn annotation_anywhere(&self, key: &str, value: &str) -> bool {
        self.pod_annotations()
            .get(key)
            .is_some_and(|v| **v == *value)
            || self
                .own_annotations()
                .get(key)
                .is_some_and(|v| **v == *value)
    }

    /// Whether the object or its pod template carries `key: value` as a label.
    pub fn label_anywhere(&self, key: &str, value: &str) -> bool {
        let has = |m: &Meta<'_>| {
            m.labels
                .as_ref()
                .and_then(|l| l.get(key))
                .is_some_and(|v| **v == *value)
        };
        has(self.meta) || has(self.pod_meta)
    }

    /// The object's name, else its `generateName`.
    pub fn display_name(&self, request_name: &str) -> String {
        if !request_name.is_empty() {
            return request_name.to_string();
        }
        self.meta.name_or_generate_name().to_string()
    }

    /// JSON-pointer tokens under the pod spec.
    pub fn spec_path<'r>(&self, rest: &[&'r str]) -> Tokens<'r> {
        join(self.kind.pod_spec_path(), rest)
    }

    /// JSON-pointer tokens under the pod metadata.
    pub fn pod_meta_path<'r>(&self, rest: &[&'r str]) -> Tokens<'r> {
        join(self.kind.pod_metadata_path(), rest)
    }
}

fn join<'r>(base: &[&'static str], rest: &[&'r str]) -> Tokens<'r> {
    let mut out = Tokens::from_slice(base);
    out.extend_from_slice(rest);
    out
}
