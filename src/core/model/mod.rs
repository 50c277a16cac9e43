//! The lean model of an object: only the fields the rules read, borrowed from the request body
//! where JSON allows (`Cow` falls back to an owned string for escaped text); everything else is
//! skipped without being built.
//!
//! This replaces k8s-openapi's `PodSpec` and a `serde_json::Value` DOM on the hot path: building
//! either costs several times a plain scan of the body (see `benches/engine.rs`), and the rules
//! read a few dozen fields of objects that carry hundreds (`managedFields` alone is often half of
//! a review). The patch still targets the object exactly as received: it is built from *which
//! parents exist* ([`Document`]), never by re-serializing the object.

pub mod view;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::core::patch::Document;

pub use view::PodView;

pub type Map<'a> = BTreeMap<Str<'a>, Str<'a>>;

/// A string borrowed from the body, or owned where JSON escapes forced a copy. (serde's own
/// `Cow<str>` borrows only as a direct field, never inside `Option`, `Vec` or map keys.)
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Str<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any of the seven kinds: the pod-spec fields and the template fields share one `spec` struct,
/// and the kind decides which are read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<'a> {
    #[serde(borrow, default)]
    pub api_version: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub metadata: Option<Meta<'a>>,
    #[serde(borrow, default)]
    pub spec: Option<Spec<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub generate_name: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub labels: Option<Map<'a>>,
    #[serde(borrow, default)]
    pub annotations: Option<Map<'a>>,
    #[serde(borrow, default)]
    pub owner_references: Option<Vec<OwnerReference<'a>>>,
}

impl Meta<'_> {
    /// The name, else the `generateName` (empty when neither is set).
    pub fn name_or_generate_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.generate_name.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference<'a> {
    #[serde(borrow, default)]
    pub kind: Str<'a>,
    #[serde(borrow, default)]
    pub name: Str<'a>,
    #[serde(default)]
    pub controller: Option<bool>,
}

/// A pod spec, a workload spec (`template`), or a CronJob spec (`jobTemplate`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    #[serde(borrow, default)]
    pub containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    pub init_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    pub ephemeral_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    pub runtime_class_name: Option<Str<'a>>,
    /// A Pod's `nodeSelector`, `tolerations` and `overhead`: what the RuntimeClass admission
    /// plugin merges the injected class's scheduling into (behaviour.md §4.1).
    #[serde(default)]
    pub node_selector: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub tolerations: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub overhead: Option<serde_json::Value>,
    #[serde(default)]
    pub host_network: Option<bool>,
    #[serde(default, rename = "hostPID")]
    pub host_pid: Option<bool>,
    #[serde(default, rename = "hostIPC")]
    pub host_ipc: Option<bool>,
    #[serde(default)]
    pub host_users: Option<bool>,
    #[serde(borrow, default)]
    pub volumes: Option<Vec<Volume<'a>>>,
    #[serde(borrow, default)]
    pub security_context: Option<SecurityContext<'a>>,
    #[serde(borrow, default)]
    pub template: Option<Box<Template<'a>>>,
    #[serde(borrow, default)]
    pub job_template: Option<Box<JobTemplate<'a>>>,
}

impl<'a> Spec<'a> {
    pub fn containers(&self) -> &[Container<'a>] {
        self.containers.as_deref().unwrap_or_default()
    }

    pub fn init_containers(&self) -> &[Container<'a>] {
        self.init_containers.as_deref().unwrap_or_default()
    }

    pub fn ephemeral_containers(&self) -> &[Container<'a>] {
        self.ephemeral_containers.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Template<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<Meta<'a>>,
    #[serde(borrow, default)]
    pub spec: Option<Spec<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobTemplate<'a> {
    #[serde(borrow, default)]
    pub spec: Option<JobSpec<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobSpec<'a> {
    #[serde(borrow, default)]
    pub template: Option<Template<'a>>,
}

/// A container of any of the three lists (ephemeral containers share these fields).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(borrow, default)]
    pub name: Str<'a>,
    #[serde(borrow, default)]
    pub image: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub resources: Option<Resources<'a>>,
    #[serde(borrow, default)]
    pub env: Option<Vec<EnvVar<'a>>>,
    #[serde(default)]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(borrow, default)]
    pub security_context: Option<SecurityContext<'a>>,
    #[serde(borrow, default)]
    pub liveness_probe: Option<Handler<'a>>,
    #[serde(borrow, default)]
    pub readiness_probe: Option<Handler<'a>>,
    #[serde(borrow, default)]
    pub startup_probe: Option<Handler<'a>>,
    #[serde(borrow, default)]
    pub lifecycle: Option<Lifecycle<'a>>,
}

impl<'a> Container<'a> {
    pub fn env(&self) -> &[EnvVar<'a>] {
        self.env.as_deref().unwrap_or_default()
    }
}

/// A probe or a lifecycle handler: only the actions that can name a `host`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handler<'a> {
    #[serde(borrow, default)]
    pub http_get: Option<HostAction<'a>>,
    #[serde(borrow, default)]
    pub tcp_socket: Option<HostAction<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostAction<'a> {
    #[serde(borrow, default)]
    pub host: Option<Str<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle<'a> {
    #[serde(borrow, default)]
    pub post_start: Option<Handler<'a>>,
    #[serde(borrow, default)]
    pub pre_stop: Option<Handler<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resources<'a> {
    #[serde(borrow, default)]
    pub requests: Option<BTreeMap<Str<'a>, QuantityText<'a>>>,
    #[serde(borrow, default)]
    pub limits: Option<BTreeMap<Str<'a>, QuantityText<'a>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EnvVar<'a> {
    #[serde(borrow, default)]
    pub name: Str<'a>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub host_port: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume<'a> {
    #[serde(borrow, default)]
    pub name: Str<'a>,
    #[serde(borrow, default)]
    pub host_path: Option<HostPath<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostPath<'a> {
    #[serde(borrow, default)]
    pub path: Str<'a>,
}

/// The fields of a pod's or a container's `securityContext` that the baseline checks read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext<'a> {
    #[serde(default)]
    pub privileged: Option<bool>,
    #[serde(borrow, default)]
    pub capabilities: Option<Capabilities<'a>>,
    #[serde(borrow, default)]
    pub proc_mount: Option<Str<'a>>,
    #[serde(default)]
    pub windows_options: Option<WindowsOptions>,
    #[serde(borrow, default)]
    pub seccomp_profile: Option<Profile<'a>>,
    #[serde(borrow, default)]
    pub app_armor_profile: Option<Profile<'a>>,
    #[serde(borrow, default, rename = "seLinuxOptions")]
    pub se_linux_options: Option<SeLinuxOptions<'a>>,
    #[serde(borrow, default)]
    pub sysctls: Option<Vec<Sysctl<'a>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Capabilities<'a> {
    #[serde(borrow, default)]
    pub add: Option<Vec<Str<'a>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsOptions {
    #[serde(default)]
    pub host_process: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile<'a> {
    #[serde(borrow, default, rename = "type")]
    pub type_: Str<'a>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SeLinuxOptions<'a> {
    #[serde(borrow, default, rename = "type")]
    pub type_: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub user: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub role: Option<Str<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sysctl<'a> {
    #[serde(borrow, default)]
    pub name: Str<'a>,
}

/// A quantity as written: Kubernetes sends strings, manifests may hold bare numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityText<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for QuantityText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QuantityText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity (string or number)")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(QuantityText(Cow::Owned(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses an object; on error, parses again with path tracking so the message names the field
/// (the slower pass runs only for objects that are already refused).
pub fn parse(json: &str) -> Result<Object<'_>, String> {
    match serde_json::from_str::<Object<'_>>(json) {
        Ok(object) => Ok(object),
        Err(first) => {
            let mut de = serde_json::Deserializer::from_str(json);
            match serde_path_to_error::deserialize::<_, Object<'_>>(&mut de) {
                Err(e) => {
                    let path = e.path().to_string();
                    Err(format!("{path}: {}", e.into_inner()))
                }
                Ok(_) => Err(first.to_string()),
            }
        }
    }
}

/// Which parents exist, for the patch builder: only the paths the mutations write under.
#[derive(Clone, Copy)]
enum Node<'m, 'a> {
    Object(&'m Object<'a>),
    Meta(&'m Meta<'a>),
    Spec(&'m Spec<'a>),
    Template(&'m Template<'a>),
    JobTemplate(&'m JobTemplate<'a>),
    JobSpec(&'m JobSpec<'a>),
    Containers(&'m [Container<'a>]),
    Container(&'m Container<'a>),
    Resources(&'m Resources<'a>),
    /// Present, and not walked into further.
    Leaf,
}

impl<'m, 'a> Node<'m, 'a> {
    fn child(self, token: &str) -> Option<Node<'m, 'a>> {
        use Node::*;
        let leaf = |present: bool| present.then_some(Leaf);
        match (self, token) {
            (Object(o), "metadata") => o.metadata.as_ref().map(Meta),
            (Object(o), "spec") => o.spec.as_ref().map(Spec),
            (Meta(m), "annotations") => leaf(m.annotations.is_some()),
            (Meta(m), "labels") => leaf(m.labels.is_some()),
            (Spec(s), "template") => s.template.as_deref().map(Template),
            (Spec(s), "jobTemplate") => s.job_template.as_deref().map(JobTemplate),
            (Spec(s), "containers") => s.containers.as_deref().map(Containers),
            (Spec(s), "initContainers") => s.init_containers.as_deref().map(Containers),
            (Spec(s), "runtimeClassName") => leaf(s.runtime_class_name.is_some()),
            (Template(t), "metadata") => t.metadata.as_ref().map(Meta),
            (Template(t), "spec") => t.spec.as_ref().map(Spec),
            (JobTemplate(j), "spec") => j.spec.as_ref().map(JobSpec),
            (JobSpec(j), "template") => j.template.as_ref().map(Template),
            (Containers(cs), index) => index
                .parse::<usize>()
                .ok()
                .and_then(|i| cs.get(i))
                .map(Container),
            (Container(c), "resources") => c.resources.as_ref().map(Resources),
            (Container(c), "env") => leaf(c.env.is_some()),
            (Resources(r), "requests") => leaf(r.requests.is_some()),
            (Resources(r), "limits") => leaf(r.limits.is_some()),
            _ => None,
        }
    }
}

impl Document for Object<'_> {
    fn existing_depth(&self, path: &[&str]) -> usize {
        let mut node = Node::Object(self);
        for (depth, token) in path.iter().enumerate() {
            match node.child(token) {
                Some(next) => node = next,
                None => return depth,
            }
        }
        path.len()
    }
}
