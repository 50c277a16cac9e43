//! The pure part of behaviour.md §3 rule 6: what a manifest, an index or an image config says about
//! whether an image is Wasm. No I/O here, so every image fact is unit-tested without a registry.

use std::collections::BTreeMap;

use oci_client::manifest::{ImageIndexEntry, OciImageIndex, OciImageManifest};
use serde::Deserialize;

/// The annotation of WasmEdge and crun, on a manifest or an index (any value counts).
pub const VARIANT_ANNOTATION: &str = crate::core::detection::ANN_WASM_VARIANT;

/// The config media type of a CNCF Wasm OCI artifact (TAG Runtime's Wasm OCI Artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The config media type that `wasm-to-oci` and oci-client's Wasm helpers write. Not in behaviour.md's
/// list; accepted because it names nothing but Wasm.
pub const WASM_CONFIG_MEDIA_TYPE_V1: &str = "application/vnd.wasm.config.v1+json";

/// Layer media types that only Wasm content has.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// Image config media types whose `architecture` is worth reading (Docker and OCI images).
pub const IMAGE_CONFIG_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Operating systems that go with `architecture: wasm` in an index entry.
pub const WASM_OSES: [&str; 3] = ["wasip1", "wasip2", "wasi"];

/// Which image fact made an image Wasm (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFact {
    /// `module.wasm.image/variant` on the manifest or the index.
    VariantAnnotation,
    /// The config media type is a Wasm config.
    WasmConfigMediaType,
    /// A layer has a Wasm media type.
    WasmLayerMediaType,
    /// The image config says `architecture: wasm` (Spin, `docker buildx --platform wasi/wasm`).
    WasmArchitecture,
    /// An index entry's platform is `wasm` with a WASI `os`.
    WasmIndexPlatform,
}

impl ImageFact {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VariantAnnotation => "variant-annotation",
            Self::WasmConfigMediaType => "wasm-config-media-type",
            Self::WasmLayerMediaType => "wasm-layer-media-type",
            Self::WasmArchitecture => "config-architecture-wasm",
            Self::WasmIndexPlatform => "index-platform-wasm",
        }
    }
}

/// What inspection concluded about one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Wasm(ImageFact),
    NotWasm,
}

/// What to do with an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStep {
    /// The index itself says Wasm.
    Wasm(ImageFact),
    /// Read this entry's manifest (by digest) and decide on it.
    Follow { digest: String },
    /// No entry to follow: not Wasm.
    NotWasm,
}

/// What to do with an image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestStep {
    Wasm(ImageFact),
    /// Nothing in the manifest says Wasm; the config (this blob) may still say
    /// `architecture: wasm`.
    ReadConfig {
        digest: String,
        size: i64,
    },
    NotWasm,
}

fn has_variant(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations.is_some_and(|a| a.contains_key(VARIANT_ANNOTATION))
}

fn is_wasm_platform(entry: &ImageIndexEntry) -> bool {
    entry.platform.as_ref().is_some_and(|p| {
        p.architecture.to_string() == "wasm" && WASM_OSES.contains(&p.os.to_string().as_str())
    })
}

fn platform_is(entry: &ImageIndexEntry, os: &str, arch: &str) -> bool {
    entry
        .platform
        .as_ref()
        .is_some_and(|p| p.os.to_string() == os && p.architecture.to_string() == arch)
}

/// Decides on an index: its annotation or a Wasm platform entry say Wasm; otherwise the entry
/// a node would most likely pull is followed: `linux/amd64`, else `linux/arm64`, else the first
/// `linux` entry, else the first entry with no platform at all (an artifact index).
pub fn decide_index(index: &OciImageIndex) -> IndexStep {
    if has_variant(index.annotations.as_ref()) {
        return IndexStep::Wasm(ImageFact::VariantAnnotation);
    }
    if index.manifests.iter().any(is_wasm_platform) {
        return IndexStep::Wasm(ImageFact::WasmIndexPlatform);
    }
    let entries = &index.manifests;
    let chosen = entries
        .iter()
        .find(|e| platform_is(e, "linux", "amd64"))
        .or_else(|| entries.iter().find(|e| platform_is(e, "linux", "arm64")))
        .or_else(|| {
            entries.iter().find(|e| {
                e.platform
                    .as_ref()
                    .is_some_and(|p| p.os.to_string() == "linux")
            })
        })
        .or_else(|| entries.iter().find(|e| e.platform.is_none()));
    match chosen {
        Some(entry) => IndexStep::Follow {
            digest: entry.digest.clone(),
        },
        None => IndexStep::NotWasm,
    }
}

/// Decides on an image manifest from what it carries itself; asks for the config only when that
/// is an image config and nothing else said Wasm.
pub fn decide_manifest(manifest: &OciImageManifest) -> ManifestStep {
    if has_variant(manifest.annotations.as_ref()) {
        return ManifestStep::Wasm(ImageFact::VariantAnnotation);
    }
    let config_type = manifest.config.media_type.as_str();
    if config_type == WASM_CONFIG_MEDIA_TYPE || config_type == WASM_CONFIG_MEDIA_TYPE_V1 {
        return ManifestStep::Wasm(ImageFact::WasmConfigMediaType);
    }
    if manifest
        .layers
        .iter()
        .any(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
    {
        return ManifestStep::Wasm(ImageFact::WasmLayerMediaType);
    }
    if IMAGE_CONFIG_MEDIA_TYPES.contains(&config_type) {
        return ManifestStep::ReadConfig {
            digest: manifest.config.digest.clone(),
            size: manifest.config.size,
        };
    }
    ManifestStep::NotWasm
}

/// The two fields of an image config that matter here; everything else is ignored, so a
/// minimal config (as Wasm tools write) parses too.
#[derive(Debug, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// Decides on an image config.
pub fn decide_config(config: &ImageConfig) -> Verdict {
    if config.architecture == "wasm" {
        Verdict::Wasm(ImageFact::WasmArchitecture)
    } else {
        Verdict::NotWasm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(v: serde_json::Value) -> OciImageManifest {
        serde_json::from_value(v).expect("manifest")
    }

    fn index(v: serde_json::Value) -> OciImageIndex {
        serde_json::from_value(v).expect("index")
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn image_manifest(config_type: &str, layer_type: &str) -> serde_json::Value {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "digest": D1, "size": 100},
            "layers": [{"mediaType": layer_type, "digest": D2, "size": 2000}]
        })
    }

    fn entry(os: &str, arch: &str, digest: &str) -> serde_json::Value {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": 500,
            "platform": {"os": os, "architecture": arch}
        })
    }

    #[test]
    fn cncf_wasm_artifact_is_wasm_by_its_config_media_type() {
        let m = manifest(image_manifest(WASM_CONFIG_MEDIA_TYPE, "application/wasm"));
        assert_eq!(
            decide_manifest(&m),
            ManifestStep::Wasm(ImageFact::WasmConfigMediaType)
        );
    }

    #[test]
    fn each_wasm_layer_media_type_is_enough() {
        for layer in WASM_LAYER_MEDIA_TYPES {
            let m = manifest(image_manifest(IMAGE_CONFIG_MEDIA_TYPES[0], layer));
            assert_eq!(
                decide_manifest(&m),
                ManifestStep::Wasm(ImageFact::WasmLayerMediaType),
                "{layer}"
            );
        }
    }

    #[test]
    fn variant_annotation_on_the_manifest_is_enough_whatever_its_value() {
        for value in ["compat", "compat-smart", "anything"] {
            let mut v = image_manifest(
                IMAGE_CONFIG_MEDIA_TYPES[0],
                "application/vnd.oci.image.layer.v1.tar+gzip",
            );
            v["annotations"] = json!({VARIANT_ANNOTATION: value});
            assert_eq!(
                decide_manifest(&manifest(v)),
                ManifestStep::Wasm(ImageFact::VariantAnnotation)
            );
        }
    }

    #[test]
    fn ordinary_image_asks_for_its_config_and_a_linux_config_is_not_wasm() {
        for config_type in IMAGE_CONFIG_MEDIA_TYPES {
            let m = manifest(image_manifest(
                config_type,
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ));
            assert_eq!(
                decide_manifest(&m),
                ManifestStep::ReadConfig {
                    digest: D1.into(),
                    size: 100
                }
            );
        }
        let config: ImageConfig =
            serde_json::from_value(json!({"architecture": "amd64", "os": "linux", "rootfs": {}}))
                .expect("config");
        assert_eq!(decide_config(&config), Verdict::NotWasm);
    }

    #[test]
    fn spin_style_config_architecture_wasm_is_wasm() {
        let config: ImageConfig =
            serde_json::from_value(json!({"architecture": "wasm", "os": "wasip1"})).expect("cfg");
        assert_eq!(
            decide_config(&config),
            Verdict::Wasm(ImageFact::WasmArchitecture)
        );
        let empty: ImageConfig = serde_json::from_value(json!({})).expect("cfg");
        assert_eq!(decide_config(&empty), Verdict::NotWasm);
    }

    #[test]
    fn other_artifacts_are_not_wasm_and_their_config_is_not_read() {
        let m = manifest(image_manifest(
            "application/vnd.cncf.helm.config.v1+json",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        ));
        assert_eq!(decide_manifest(&m), ManifestStep::NotWasm);
    }

    #[test]
    fn index_with_a_wasi_wasm_entry_is_wasm() {
        for os in WASM_OSES {
            let i = index(json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [entry("linux", "amd64", D1), entry(os, "wasm", D2)]
            }));
            assert_eq!(
                decide_index(&i),
                IndexStep::Wasm(ImageFact::WasmIndexPlatform),
                "{os}"
            );
        }
        // `wasm` with another os (e.g. the browser's `js`) is not a WASI runtime's.
        let i = index(json!({
            "schemaVersion": 2,
            "manifests": [entry("js", "wasm", D2)]
        }));
        assert_eq!(decide_index(&i), IndexStep::NotWasm);
    }

    #[test]
    fn index_annotation_is_enough() {
        let i = index(json!({
            "schemaVersion": 2,
            "annotations": {VARIANT_ANNOTATION: "compat-smart"},
            "manifests": [entry("linux", "amd64", D1)]
        }));
        assert_eq!(
            decide_index(&i),
            IndexStep::Wasm(ImageFact::VariantAnnotation)
        );
    }

    #[test]
    fn index_follows_linux_amd64_then_arm64_then_any_linux() {
        let i = index(json!({
            "schemaVersion": 2,
            "manifests": [entry("linux", "arm64", D1), entry("linux", "amd64", D2), entry("linux", "s390x", D3)]
        }));
        assert_eq!(decide_index(&i), IndexStep::Follow { digest: D2.into() });
        let i = index(json!({
            "schemaVersion": 2,
            "manifests": [entry("linux", "s390x", D3), entry("linux", "arm64", D1)]
        }));
        assert_eq!(decide_index(&i), IndexStep::Follow { digest: D1.into() });
        let i = index(json!({
            "schemaVersion": 2,
            "manifests": [entry("windows", "amd64", D1), entry("linux", "s390x", D3)]
        }));
        assert_eq!(decide_index(&i), IndexStep::Follow { digest: D3.into() });
        let i = index(json!({"schemaVersion": 2, "manifests": [entry("windows", "amd64", D1)]}));
        assert_eq!(decide_index(&i), IndexStep::NotWasm);
        let i = index(json!({"schemaVersion": 2, "manifests": []}));
        assert_eq!(decide_index(&i), IndexStep::NotWasm);
    }
}
