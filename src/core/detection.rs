//! When a pod spec counts as Wasm (behaviour.md §3).

use std::collections::{HashMap, HashSet};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::core::model::view::PodView;

pub const ANN_WASM: &str = "wasm-admission.io/wasm";
pub const ANN_RUNTIME_CLASS: &str = "wasm-admission.io/runtime-class";
pub const ANN_WASM_VARIANT: &str = "module.wasm.image/variant";

/// What an image inspection says of one image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageClass {
    Wasm,
    NotWasm,
    /// The lookup failed or ran out of time: counts as not Wasm, and the reason becomes a warning.
    Unknown {
        reason: String,
    },
}

/// The seam for image-based detection beyond the configured patterns (behaviour.md §3 rule 6): the
/// `serve` and `check` doors look images up beforehand, with their own I/O and time budget, and
/// hand the engine this read-only view of the results.
pub trait ImageClassifier: Send + Sync {
    fn classify(&self, image: &str) -> ImageClass;
}

/// What the cluster says of one RuntimeClass, as `serve`'s watch keeps it: plain data, so the
/// engine stays free of Kubernetes client types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeClassInfo {
    /// The CRI handler the class runs (`spin`, `wasmedge`, `runc`, ...).
    pub handler: String,
    /// Its `scheduling.nodeSelector` (empty when it has none): the labels a node needs to run
    /// the class's pods (behaviour.md §11).
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Its `scheduling.tolerations`, as JSON objects.
    pub tolerations: Vec<serde_json::Value>,
    /// Its `overhead.podFixed` (empty when it has none).
    pub overhead: std::collections::BTreeMap<String, String>,
}

/// The cluster's RuntimeClasses by name, when `serve` watches them (behaviour.md §7, §3 rule 3b).
pub type ClusterRuntimeClasses = HashMap<String, RuntimeClassInfo>;

/// Which RuntimeClasses run Wasm (behaviour.md §3 rule 3b): the configured names (with the configured
/// `runtimeClassName`), and, where the cluster's classes are known, every class whose handler is
/// one of the configured Wasm handlers.
#[derive(Debug, Clone, Default)]
pub struct WasmRuntimeClasses {
    names: HashSet<String>,
    handlers: HashSet<String>,
}

impl WasmRuntimeClasses {
    /// From `detection.runtimeClasses`, `runtimeClassName` and `detection.runtimeHandlers`.
    pub fn new(names: &[String], default_class: &str, handlers: &[String]) -> Self {
        let mut names: HashSet<String> = names.iter().cloned().collect();
        names.insert(default_class.to_string());
        Self {
            names,
            handlers: handlers.iter().cloned().collect(),
        }
    }

    /// Whether the class `name` runs Wasm: configured by name, or known from `cluster` to run a
    /// Wasm handler.
    pub fn runs_wasm(&self, name: &str, cluster: Option<&ClusterRuntimeClasses>) -> bool {
        self.names.contains(name)
            || cluster
                .and_then(|c| c.get(name))
                .is_some_and(|rc| self.handlers.contains(&rc.handler))
    }
}

/// What detection reads besides the pod: the configured rules and the facts the door found out.
#[derive(Clone, Copy)]
pub struct DetectionInputs<'a> {
    pub patterns: &'a ImagePatterns,
    pub wasm_classes: &'a WasmRuntimeClasses,
    /// The cluster's RuntimeClasses, when `serve` watches them.
    pub cluster_classes: Option<&'a ClusterRuntimeClasses>,
    /// Registry inspection results (rule 6), when enabled.
    pub registry: Option<&'a dyn ImageClassifier>,
}

/// Which rule decided that a pod spec is Wasm, for audit annotations and `check`'s report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    WasmAnnotation,
    RuntimeClassAnnotation,
    /// The pod spec's own `runtimeClassName` names a class that runs Wasm (rule 3b).
    RuntimeClassName,
    VariantAnnotation,
    ImagePattern,
    Registry,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WasmAnnotation => "annotation",
            Self::RuntimeClassAnnotation => "runtime-class-annotation",
            Self::RuntimeClassName => "runtime-class-name",
            Self::VariantAnnotation => "variant-annotation",
            Self::ImagePattern => "image-pattern",
            Self::Registry => "registry",
        }
    }
}

/// The result of detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    NotWasm,
    Wasm {
        rule: Rule,
        /// The RuntimeClass named by `wasm-admission.io/runtime-class` (rule 3), or the pod
        /// spec's own Wasm class (rule 3b).
        runtime_class: Option<String>,
    },
    /// Image rules found some containers Wasm and some not: left unchanged (behaviour.md §3).
    Mixed {
        wasm: Vec<String>,
        other: Vec<String>,
    },
}

/// Image globs from `detection.imagePatterns` (rule 5). `*` stays within one path segment of
/// the reference and `**` spans segments, so `registry.example.com/wasm/*` matches
/// `registry.example.com/wasm/app:v1` but not `registry.example.com/wasm/team/app:v1`.
pub struct ImagePatterns {
    set: GlobSet,
    empty: bool,
}

pub fn compile_pattern(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("pattern {pattern:?}: {e}"))
}

impl ImagePatterns {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(compile_pattern(p)?);
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(Self {
            set,
            empty: patterns.is_empty(),
        })
    }

    /// Whether the image matches, as written or in its normalized form
    /// (`nginx` → `docker.io/library/nginx:latest`).
    pub fn matches(&self, image: &str) -> bool {
        !self.empty && (self.set.is_match(image) || self.set.is_match(normalize_image(image)))
    }
}

/// The fully qualified form of an image reference, as container runtimes resolve it: a missing
/// registry is `docker.io`, a one-segment Docker Hub path is under `library/`, a missing tag is
/// `latest` (unless a digest pins it).
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let has_registry =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut out = if has_registry {
        name.to_string()
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{name}")
    };
    let last_segment = out.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last_segment.contains(':') {
        out.push_str(":latest");
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    out
}

/// Whether rules 1–4 decide, from annotations and the pod spec's own `runtimeClassName`.
fn by_pod(view: &PodView<'_, '_>, inputs: &DetectionInputs<'_>) -> Option<Detection> {
    // Rule 1: "false" on either place wins over everything.
    if view.annotation_anywhere(ANN_WASM, "false") {
        return Some(Detection::NotWasm);
    }
    // Rule 2.
    if view.annotation(ANN_WASM) == Some("true") {
        return Some(Detection::Wasm {
            rule: Rule::WasmAnnotation,
            runtime_class: view
                .annotation(ANN_RUNTIME_CLASS)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        });
    }
    // Rule 3.
    if let Some(name) = view.annotation(ANN_RUNTIME_CLASS).filter(|s| !s.is_empty()) {
        return Some(Detection::Wasm {
            rule: Rule::RuntimeClassAnnotation,
            runtime_class: Some(name.to_string()),
        });
    }
    // Rule 3b: the class the pod names runs Wasm; the whole pod is Wasm, sidecars included.
    if let Some(name) = view
        .spec
        .runtime_class_name
        .as_deref()
        .filter(|s| !s.is_empty())
        && inputs.wasm_classes.runs_wasm(name, inputs.cluster_classes)
    {
        return Some(Detection::Wasm {
            rule: Rule::RuntimeClassName,
            runtime_class: Some(name.to_string()),
        });
    }
    // Rule 4: the WasmEdge / crun convention, read from the pod's annotations.
    if matches!(
        view.annotation(ANN_WASM_VARIANT),
        Some("compat") | Some("compat-smart")
    ) {
        return Some(Detection::Wasm {
            rule: Rule::VariantAnnotation,
            runtime_class: None,
        });
    }
    None
}

/// Whether rule 1 opts the pod spec out: `wasm-admission.io/wasm: "false"` on either place.
pub fn opted_out(view: &PodView<'_, '_>) -> bool {
    view.annotation_anywhere(ANN_WASM, "false")
}

/// Whether the pod spec's own `runtimeClassName` names a class that runs Wasm (rule 3b), whatever
/// the pod's annotations say: behaviour.md §5's boundary.
pub fn names_wasm_class(view: &PodView<'_, '_>, inputs: &DetectionInputs<'_>) -> bool {
    view.spec
        .runtime_class_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .is_some_and(|name| inputs.wasm_classes.runs_wasm(name, inputs.cluster_classes))
}

/// The images rule 6 would classify: none when the pod is Wasm without them (rules 2–4, unless
/// `skipped`, or a Wasm class of its own), else each `containers` image that no pattern matches,
/// once, in order. Rule 1 and the skip label do not spare the lookup: behaviour.md §5's boundary
/// reads the images whatever the pod says. (`inputs.registry` is not read.)
pub fn registry_images(
    view: &PodView<'_, '_>,
    inputs: &DetectionInputs<'_>,
    skipped: bool,
) -> Vec<String> {
    let wasm_by_pod = !skipped && matches!(by_pod(view, inputs), Some(Detection::Wasm { .. }));
    if wasm_by_pod || names_wasm_class(view, inputs) {
        return Vec::new();
    }
    // In first-seen order, de-duplicated through a set: linear in the number of containers (a
    // scan of the list so far was quadratic: 40,000 containers took 4 s of CPU).
    let mut images: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for c in view.spec.containers() {
        let image = c.image.as_deref().unwrap_or("");
        if !image.is_empty() && !seen.contains(image) && !inputs.patterns.matches(image) {
            seen.insert(image);
            images.push(image.to_string());
        }
    }
    images
}

/// Applies rules 1–6 in order.
pub fn detect(
    view: &PodView<'_, '_>,
    inputs: &DetectionInputs<'_>,
    warnings: &mut Vec<String>,
) -> Detection {
    // Rules 1–4.
    if let Some(detection) = by_pod(view, inputs) {
        return detection;
    }
    by_images(view, inputs, warnings)
}

/// Rules 5 and 6 alone: what the images say, whatever the annotations say (behaviour.md §5's
/// boundary reads this for a pod that opted out).
pub fn by_images(
    view: &PodView<'_, '_>,
    inputs: &DetectionInputs<'_>,
    warnings: &mut Vec<String>,
) -> Detection {
    let (patterns, registry) = (inputs.patterns, inputs.registry);
    // Rules 5 and 6, container by container.
    let containers = view.spec.containers();
    if containers.is_empty() {
        return Detection::NotWasm;
    }
    let mut wasm = Vec::new();
    let mut other = Vec::new();
    let mut by_registry = false;
    for c in containers {
        let image = c.image.as_deref().unwrap_or("");
        let is_wasm = if patterns.matches(image) {
            true
        } else if let Some(registry) = registry.filter(|_| !image.is_empty()) {
            match registry.classify(image) {
                ImageClass::Wasm => {
                    by_registry = true;
                    true
                }
                ImageClass::NotWasm => false,
                ImageClass::Unknown { reason } => {
                    warnings.push(crate::core::warning::warning(&format!(
                        "image {image} not inspected ({reason}); treated as not Wasm"
                    )));
                    false
                }
            }
        } else {
            false
        };
        if is_wasm {
            wasm.push(c.name.to_string());
        } else {
            other.push(c.name.to_string());
        }
    }
    match (wasm.is_empty(), other.is_empty()) {
        (true, _) => Detection::NotWasm,
        (false, true) => Detection::Wasm {
            rule: if by_registry {
                Rule::Registry
            } else {
                Rule::ImagePattern
            },
            runtime_class: None,
        },
        (false, false) => Detection::Mixed { wasm, other },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_normalize_like_container_runtimes() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("team/app:v1"), "docker.io/team/app:v1");
        assert_eq!(normalize_image("ghcr.io/a/b"), "ghcr.io/a/b:latest");
        assert_eq!(
            normalize_image("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize_image("ghcr.io/a/b@sha256:abc"),
            "ghcr.io/a/b@sha256:abc"
        );
    }

    #[test]
    fn image_pattern_star_stays_within_a_segment() {
        let p = ImagePatterns::new(&["registry.example.com/wasm/*".to_string()]).unwrap();
        assert!(p.matches("registry.example.com/wasm/app:v1"));
        assert!(!p.matches("registry.example.com/wasm/team/app:v1"));
        assert!(!p.matches("registry.example.com/other/app:v1"));
        let p = ImagePatterns::new(&["registry.example.com/wasm/**".to_string()]).unwrap();
        assert!(p.matches("registry.example.com/wasm/team/app:v1"));
    }

    #[test]
    fn image_pattern_matches_the_normalized_reference_too() {
        let p = ImagePatterns::new(&["docker.io/library/hello-wasm:*".to_string()]).unwrap();
        assert!(p.matches("hello-wasm"));
        assert!(p.matches("hello-wasm:1.0"));
        assert!(!ImagePatterns::new(&[]).unwrap().matches("anything"));
    }

    #[test]
    fn wasm_runtime_classes_by_name_default_class_or_cluster_handler() {
        let names = ["wasmtime-spin-v2".to_string()];
        let handlers = ["spin".to_string()];
        let classes = WasmRuntimeClasses::new(&names, "my-wasm", &handlers);
        assert!(classes.runs_wasm("wasmtime-spin-v2", None));
        assert!(
            classes.runs_wasm("my-wasm", None),
            "runtimeClassName always counts"
        );
        assert!(
            !classes.runs_wasm("my-spin", None),
            "no cluster facts: names only"
        );
        let cluster = ClusterRuntimeClasses::from([
            (
                "my-spin".to_string(),
                RuntimeClassInfo {
                    handler: "spin".into(),
                    ..Default::default()
                },
            ),
            (
                "gvisor".to_string(),
                RuntimeClassInfo {
                    handler: "runsc".into(),
                    ..Default::default()
                },
            ),
        ]);
        assert!(classes.runs_wasm("my-spin", Some(&cluster)));
        assert!(!classes.runs_wasm("gvisor", Some(&cluster)));
        assert!(
            !classes.runs_wasm("spin", Some(&cluster)),
            "not in the cluster"
        );
        let off = WasmRuntimeClasses::new(&[], "wasm", &[]);
        assert!(!off.runs_wasm("my-spin", Some(&cluster)));
        assert!(off.runs_wasm("wasm", Some(&cluster)));
    }

    #[test]
    fn invalid_pattern_is_an_error() {
        assert!(compile_pattern("ghcr.io/[wasm").is_err());
    }
}
