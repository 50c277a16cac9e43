//! A real OCI registry for the tests: Debian's `docker-registry` (CNCF distribution), started on
//! 127.0.0.1 with its storage in a temp folder, and images pushed to it with oci-client, the
//! client the webhook itself uses.
//!
//! Without the binary the tests are skipped with a printed message, except under CI (`CI` set),
//! where a missing binary fails them: `scripts/test.sh` installs it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex,
    OciImageManifest, OciManifest, Platform,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

pub const BINARY: &str = "docker-registry";

pub const WASM_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// Where the binary is, or `None` (with a message) when the tests may be skipped.
pub fn binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(BINARY))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{BINARY} is not installed, and CI is set: scripts/test.sh installs it (apt-get install docker-registry)"
            );
        }
        eprintln!(
            "SKIPPED: {BINARY} is not installed (apt-get install docker-registry); registry tests not run"
        );
    }
    found
}

/// A running registry; stopped when dropped.
pub struct LocalRegistry {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    config: PathBuf,
    binary: PathBuf,
}

/// `user:password` for a registry that requires basic authentication.
pub struct Htpasswd {
    pub user: String,
    pub password: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl LocalRegistry {
    /// Starts an open registry, or returns `None` when the binary is missing outside CI.
    pub async fn start() -> Option<Self> {
        Self::start_with(None).await
    }

    pub async fn start_with(htpasswd: Option<&Htpasswd>) -> Option<Self> {
        let binary = binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let auth = match htpasswd {
            Some(h) => {
                let hash = bcrypt::hash(&h.password, 4).expect("bcrypt");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{}:{hash}\n", h.user)).expect("htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: wasm-admission-tests\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let mut registry = Self {
            addr,
            dir,
            child: None,
            config,
            binary,
        };
        registry.spawn().await;
        Some(registry)
    }

    async fn spawn(&mut self) {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .expect("log file")
        };
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log("access.log"))
            .stderr(log("registry.log"))
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "docker-registry did not listen on {} within 15s: {}",
                self.addr,
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `127.0.0.1:PORT`, as images and `detection.registry.insecure` name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn image(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.host())
    }

    /// Pushes a one-module Wasm image (an `application/wasm` layer, `wasm` architecture) and
    /// returns its reference.
    pub async fn push_wasm(&self, repository_and_tag: &str) -> String {
        self.pusher()
            .push_image(
                repository_and_tag,
                &[layer("application/wasm", WASM_MODULE)],
                wasm_arch_config(),
                None,
            )
            .await;
        self.image(repository_and_tag)
    }

    /// Stops the registry process (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Switches the registry to token authentication (distribution's `auth.token`): every
    /// request without a valid token is answered 401 with `WWW-Authenticate: Bearer
    /// realm="<realm>",service="test-registry",...`. Takes effect at the next [`Self::restart`].
    pub fn use_token_auth(&self, realm: &str) {
        let cert = rcgen::generate_simple_self_signed(vec!["token-issuer".to_string()])
            .expect("token signing certificate");
        let bundle = self.dir.path().join("token-ca.pem");
        std::fs::write(&bundle, cert.cert.pem()).expect("root cert bundle");
        let mut config = std::fs::read_to_string(&self.config).expect("config");
        config.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
            bundle.display()
        ));
        std::fs::write(&self.config, config).expect("config");
    }

    /// Starts the registry process again, with the same storage and port.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// How many GET requests for `path_part` (e.g. `/v2/wasm/cncf/manifests/`) the registry's
    /// access log shows.
    pub fn gets(&self, path_part: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&format!("\"GET {path_part}")))
            .count()
    }

    pub fn pusher(&self) -> Pusher {
        Pusher::new(&self.host(), RegistryAuth::Anonymous)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pushes test images with oci-client.
pub struct Pusher {
    pub client: Client,
    pub host: String,
    pub auth: RegistryAuth,
}

/// `application/vnd.oci.image.config.v1+json` of a Linux/amd64 image.
pub fn linux_config() -> Config {
    Config {
        data: serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/docker-entrypoint.sh"]},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .expect("json")
        .into(),
        media_type: oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.into(),
        annotations: None,
    }
}

/// A standard image config saying `architecture: wasm` (Spin, `docker buildx --platform wasi/wasm`).
pub fn wasm_arch_config() -> Config {
    Config {
        data: serde_json::to_vec(&serde_json::json!({
            "architecture": "wasm", "os": "wasip1",
            "config": {"Entrypoint": ["/app.wasm"]},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .expect("json")
        .into(),
        media_type: oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.into(),
        annotations: None,
    }
}

/// A gzip tar layer's media type with some bytes (its content does not matter to the registry).
pub fn tar_layer(seed: &str) -> ImageLayer {
    ImageLayer {
        data: format!("not really a tarball: {seed}").into_bytes().into(),
        media_type: oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE.into(),
        annotations: None,
    }
}

pub fn layer(media_type: &str, data: &[u8]) -> ImageLayer {
    ImageLayer {
        data: data.to_vec().into(),
        media_type: media_type.into(),
        annotations: None,
    }
}

impl Pusher {
    pub fn new(host: &str, auth: RegistryAuth) -> Self {
        wasm_admission::adapters::tls::install_crypto_provider();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![host.to_string()]),
            ..ClientConfig::default()
        });
        Self {
            client,
            host: host.to_string(),
            auth,
        }
    }

    fn reference(&self, repository_and_tag: &str) -> Reference {
        format!("{}/{repository_and_tag}", self.host)
            .parse()
            .expect("reference")
    }

    /// Pushes an image manifest with its blobs; returns the manifest's digest.
    pub async fn push_image(
        &self,
        repository_and_tag: &str,
        layers: &[ImageLayer],
        config: Config,
        annotations: Option<BTreeMap<String, String>>,
    ) -> String {
        let reference = self.reference(repository_and_tag);
        let manifest = OciImageManifest::build(layers, &config, annotations);
        self.client
            .push(&reference, layers, config, &self.auth, Some(manifest))
            .await
            .unwrap_or_else(|e| panic!("push {reference}: {e}"));
        self.client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
            .expect("digest of the pushed manifest")
    }

    /// Pushes an index over manifests already pushed to the same repository.
    pub async fn push_index(
        &self,
        repository_and_tag: &str,
        entries: &[(&str, &str, String)],
        annotations: Option<BTreeMap<String, String>>,
    ) -> String {
        let reference = self.reference(repository_and_tag);
        let mut manifests = Vec::new();
        for (os, arch, digest) in entries {
            let child = reference.clone_with_digest(digest.clone());
            let (bytes, _) = self
                .client
                .pull_manifest_raw(&child, &self.auth, &[OCI_IMAGE_MEDIA_TYPE])
                .await
                .expect("pull the child manifest");
            let size = bytes.len() as i64;
            manifests.push(ImageIndexEntry {
                media_type: OCI_IMAGE_MEDIA_TYPE.into(),
                digest: digest.clone(),
                size,
                platform: Some(Platform {
                    architecture: (*arch).into(),
                    os: (*os).into(),
                    os_version: None,
                    os_features: None,
                    variant: None,
                    features: None,
                }),
                annotations: None,
                artifact_type: None,
            });
        }
        let index = OciImageIndex {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.into()),
            manifests,
            artifact_type: None,
            annotations,
        };
        self.client
            .push_manifest(&reference, &OciManifest::ImageIndex(index))
            .await
            .unwrap_or_else(|e| panic!("push index {reference}: {e}"));
        self.client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
            .expect("digest of the pushed index")
    }
}

/// The images of behaviour.md §3 rule 6, one per signal, and ordinary ones. Returns (image, is_wasm).
pub async fn push_signal_images(registry: &LocalRegistry) -> Vec<(String, bool)> {
    let p = registry.pusher();
    // A CNCF Wasm OCI artifact: Wasm config media type, `application/wasm` layer.
    let cncf_config = Config {
        data: serde_json::to_vec(&serde_json::json!({
            "created": "2026-11-25T10:00:00Z", "architecture": "wasm", "os": "wasip1",
            "layerDigests": [], "component": {"exports": [], "imports": [], "target": null}
        }))
        .expect("json")
        .into(),
        media_type: "application/vnd.wasm.config.v0+json".into(),
        annotations: None,
    };
    p.push_image(
        "wasm/cncf:v1",
        &[layer("application/wasm", WASM_MODULE)],
        cncf_config,
        None,
    )
    .await;
    // Spin style: standard config media type, `architecture: wasm`, Wasm content layers.
    p.push_image(
        "wasm/spin:v1",
        &[
            layer("application/vnd.wasm.content.layer.v1+wasm", WASM_MODULE),
            layer(
                "application/vnd.wasm.content.layer.v1+wasm",
                b"\0asm\x01\0\0\0second",
            ),
        ],
        wasm_arch_config(),
        None,
    )
    .await;
    // A WebAssembly component layer.
    p.push_image(
        "wasm/component:v1",
        &[layer(
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            b"\0asm\x0d\0\x01\0",
        )],
        linux_config(),
        None,
    )
    .await;
    // `docker buildx --platform wasi/wasm`: ordinary layers, only the config says wasm.
    p.push_image(
        "wasm/buildx:v1",
        &[tar_layer("buildx")],
        wasm_arch_config(),
        None,
    )
    .await;
    // An ordinary image whose manifest carries the crun/WasmEdge annotation.
    p.push_image(
        "wasm/annotated:v1",
        &[tar_layer("annotated")],
        linux_config(),
        Some(BTreeMap::from([(
            "module.wasm.image/variant".to_string(),
            "compat-smart".to_string(),
        )])),
    )
    .await;
    // An index with a linux/amd64 image and a wasip1/wasm one.
    let amd64 = p
        .push_image(
            "wasm/index:amd64",
            &[tar_layer("index-amd64")],
            linux_config(),
            None,
        )
        .await;
    let wasm = p
        .push_image(
            "wasm/index:wasip1",
            &[layer("application/wasm", b"\0asm\x01\0\0\0index")],
            wasm_arch_config(),
            None,
        )
        .await;
    p.push_index(
        "wasm/index:v1",
        &[("linux", "amd64", amd64), ("wasip1", "wasm", wasm)],
        None,
    )
    .await;
    // Ordinary images: one manifest, and an index of two Linux platforms (followed to amd64).
    p.push_image(
        "plain/nginx:v1",
        &[tar_layer("nginx")],
        linux_config(),
        None,
    )
    .await;
    let arm = p
        .push_image(
            "plain/multi:arm64",
            &[tar_layer("arm64")],
            linux_config(),
            None,
        )
        .await;
    let x86 = p
        .push_image(
            "plain/multi:amd64",
            &[tar_layer("amd64")],
            linux_config(),
            None,
        )
        .await;
    p.push_index(
        "plain/multi:v1",
        &[("linux", "arm64", arm), ("linux", "amd64", x86)],
        None,
    )
    .await;
    [
        ("wasm/cncf:v1", true),
        ("wasm/spin:v1", true),
        ("wasm/component:v1", true),
        ("wasm/buildx:v1", true),
        ("wasm/annotated:v1", true),
        ("wasm/index:v1", true),
        ("plain/nginx:v1", false),
        ("plain/multi:v1", false),
    ]
    .into_iter()
    .map(|(image, wasm)| (registry.image(image), wasm))
    .collect()
}

/// A TCP listener that accepts connections and never answers (a hung registry).
pub struct BlackHole {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { addr, task }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A configuration file that turns registry inspection on for `insecure` hosts.
pub fn registry_config_yaml(insecure: &[&str], extra: &str) -> String {
    let list: Vec<String> = insecure.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "detection:\n  registry:\n    enabled: true\n    insecure: [{}]\n{extra}",
        list.join(", ")
    )
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}
