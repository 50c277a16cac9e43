//! On a real node (`scripts/cluster.sh up --node`: kube-scheduler, kubelet, containerd 2 with runc
//! and the project's Wasm shim under the handler `wasm`): what the webhook admits is scheduled
//! through its RuntimeClass and runs, Wasm pods under the shim and ordinary pods under runc, each
//! case asserting what a user sees with kubectl and the runtime containerd's CRI gives the
//! container.
//!
//! The images are built by `up --node` and pulled by the node's containerd from the local registry
//! over plain HTTP: `env-service` (a WASI service that prints its environment and keeps running)
//! and `job` (prints one line and exits 0), each in the `compat` layout (FROM scratch, the `.wasm`
//! file as entrypoint) and as an OCI Wasm artifact (layer media type `application/wasm`), `hello`
//! (a static binary for runc) and the pause image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Cluster, Node, World, eventually, within};

const WASM_RUNTIME: &str = "io.containerd.wasm.v1";
const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// How long a pod may take from creation to Ready on this 2-core machine (pull, sandbox, start).
const READY: Duration = Duration::from_secs(120);

/// The world of the node cases.
pub struct NodeWorld {
    pub world: World,
    pub node: Node,
}

impl NodeWorld {
    fn cluster(&self) -> &Cluster {
        &self.world.cluster
    }

    fn image(&self, name: &str) -> String {
        format!("{}/wasm-admission/{name}", self.node.registry)
    }
}

/// The guide's class: `wasm` runs on the handler `wasm` (containerd's runtime of the shim). The
/// shipped `deploy/runtimeclasses/wasm.yaml` points the class at `wasmedge`; here it is recreated
/// with the handler this node has, keeping its scheduling and overhead.
pub fn prepare(world: &World) {
    let mut class = world.cluster.json(&["get", "runtimeclass", "wasm"]);
    class["handler"] = Value::from("wasm");
    if let Some(meta) = class["metadata"].as_object_mut() {
        for key in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(key);
        }
    }
    world
        .cluster
        .kubectl_in(&["replace", "--force", "-f", "-"], &class.to_string())
        .expect_ok("recreate the class wasm with the handler wasm");
}

fn deployment(name: &str, ns: &str, image: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": image}]
                }
            }
        }
    })
    .to_string()
}

fn create(cluster: &Cluster, manifest: &str) -> crate::support::Run {
    let out = cluster.kubectl_in(&["create", "-f", "-"], manifest);
    assert!(out.ok, "kubectl create failed: {}", out.stderr);
    out
}

fn rollout(cluster: &Cluster, ns: &str, name: &str) {
    let timeout = format!("--timeout={}s", READY.as_secs());
    let out = cluster.kubectl(&[
        "-n",
        ns,
        "rollout",
        "status",
        &format!("deployment/{name}"),
        &timeout,
    ]);
    if !out.ok {
        let describe =
            cluster.kubectl(&["-n", ns, "describe", "pods", "-l", &format!("app={name}")]);
        panic!(
            "deployment {ns}/{name} did not become Ready: {}{}\n{}",
            out.stdout, out.stderr, describe.stdout
        );
    }
}

/// The one pod of the Deployment `name`.
fn pod_of(cluster: &Cluster, ns: &str, name: &str) -> Value {
    let list = cluster.json(&["-n", ns, "get", "pods", "-l", &format!("app={name}")]);
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "pods of {name}: {list:#}");
    items[0].clone()
}

fn container_id(pod: &Value) -> String {
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap_or_else(|| panic!("no container ID in {:#}", pod["status"]));
    id.strip_prefix("containerd://").unwrap_or(id).to_string()
}

/// The runtime containerd's CRI created the container with (`ctr containers info`).
fn runtime_of(node: &Node, pod: &Value) -> String {
    let id = container_id(pod);
    let out = Command::new(&node.ctr)
        .arg("--address")
        .arg(&node.socket)
        .args(["-n", "k8s.io", "containers", "info", &id])
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr containers info {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).expect("ctr JSON");
    info["Runtime"]["Name"]
        .as_str()
        .unwrap_or_else(|| panic!("no runtime in {info:#}"))
        .to_string()
}

fn logs(cluster: &Cluster, ns: &str, pod: &Value) -> String {
    let name = pod["metadata"]["name"].as_str().expect("pod name");
    cluster
        .kubectl(&["-n", ns, "logs", name])
        .expect_ok("kubectl logs")
}

/// Waits until the pod's log contains `text`, and returns the log.
fn log_with(cluster: &Cluster, ns: &str, pod: &Value, text: &str) -> String {
    let mut last = String::new();
    let found = within(Duration::from_secs(30), || {
        let name = pod["metadata"]["name"].as_str().expect("pod name");
        last = cluster.kubectl(&["-n", ns, "logs", name]).stdout;
        last.contains(text)
    });
    assert!(found, "the log never showed {text:?}: {last}");
    last
}

/// The container's memory cgroup (cgroup v1, kubelet's cgroupfs driver under the node's root).
fn memory_cgroup(pod: &Value) -> PathBuf {
    let id = container_id(pod);
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    let root = Path::new("/sys/fs/cgroup/memory/wasm-admission-node/kubepods");
    for qos in ["", "burstable", "besteffort"] {
        let dir = root.join(qos).join(format!("pod{uid}")).join(&id);
        if dir.is_dir() {
            return dir;
        }
    }
    panic!(
        "no memory cgroup for container {id} of pod {uid} under {}",
        root.display()
    );
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn env_line<'a>(log: &'a str, name: &str) -> Option<&'a str> {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
}

pub fn a_wasm_deployment_is_scheduled_through_its_class_and_runs_under_the_shim(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-wasm", true);
    let image = w.image("env-service:compat");
    create(
        cluster,
        &deployment(
            "hello-wasm",
            &ns,
            &image,
            &[("wasm-admission.io/wasm", "true")],
        ),
    );
    rollout(cluster, &ns, "hello-wasm");
    let pod = pod_of(cluster, &ns, "hello-wasm");
    assert_eq!(
        pod["spec"]["runtimeClassName"], "wasm",
        "the webhook's class"
    );
    assert_eq!(pod["spec"]["nodeName"], w.node.name.as_str(), "scheduled");
    // The class's nodeSelector was merged into the pod by the RuntimeClass admission plugin and
    // satisfied by the scheduler; its overhead is on the pod and counted on the node.
    let class = cluster.json(&["get", "runtimeclass", "wasm"]);
    for (key, value) in class["scheduling"]["nodeSelector"]
        .as_object()
        .expect("the class wasm has a nodeSelector")
    {
        assert_eq!(
            &pod["spec"]["nodeSelector"][key], value,
            "nodeSelector {key}"
        );
    }
    assert_eq!(
        pod["spec"]["overhead"], class["overhead"]["podFixed"],
        "overhead"
    );
    let container_cpu = pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]
        .as_str()
        .expect("the webhook's cpu request");
    let millis = |q: &str| -> u64 {
        q.strip_suffix('m')
            .map(|m| m.parse().expect("millicores"))
            .unwrap_or_else(|| q.parse::<u64>().expect("cores") * 1000)
    };
    let overhead_cpu = class["overhead"]["podFixed"]["cpu"].as_str().expect("cpu");
    let expected = format!("{}m", millis(container_cpu) + millis(overhead_cpu));
    let describe = cluster
        .kubectl(&["describe", "node", &w.node.name])
        .expect_ok("describe node");
    let pod_name = pod["metadata"]["name"].as_str().expect("name");
    let row = describe
        .lines()
        .find(|l| l.contains(pod_name))
        .unwrap_or_else(|| panic!("{pod_name} not among the node's pods:\n{describe}"));
    assert!(
        row.split_whitespace().any(|cell| cell == expected),
        "the node counts {expected} (request {container_cpu} + overhead {overhead_cpu}) for the pod: {row}"
    );
    assert_eq!(runtime_of(&w.node, &pod), WASM_RUNTIME);
    let log = logs(cluster, &ns, &pod);
    assert!(
        log.contains("wasm-admission env-service: started under WASI"),
        "{log}"
    );
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

pub fn the_telemetry_environment_and_the_downward_api_reach_the_module(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-otel", true);
    create(
        cluster,
        &deployment(
            "otel-wasm",
            &ns,
            &w.image("env-service:compat"),
            &[("wasm-admission.io/wasm", "true")],
        ),
    );
    rollout(cluster, &ns, "otel-wasm");
    let pod = pod_of(cluster, &ns, "otel-wasm");
    let pod_name = pod["metadata"]["name"].as_str().expect("name");
    let log = log_with(cluster, &ns, &pod, "OTEL_RESOURCE_ATTRIBUTES=");
    assert_eq!(
        env_line(&log, "OTEL_SERVICE_NAME"),
        Some("otel-wasm"),
        "{log}"
    );
    assert_eq!(
        env_line(&log, "OTEL_RESOURCE_ATTRIBUTES_POD_NAME"),
        Some(pod_name),
        "{log}"
    );
    assert_eq!(
        env_line(&log, "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME"),
        Some(w.node.name.as_str()),
        "{log}"
    );
    let attributes = env_line(&log, "OTEL_RESOURCE_ATTRIBUTES").expect("attributes");
    assert!(
        attributes.contains(&format!("k8s.node.name={}", w.node.name))
            && attributes.contains(&format!("k8s.pod.name={pod_name}"))
            && attributes.contains("k8s.deployment.name=otel-wasm"),
        "the kubelet expands the references: {attributes}"
    );
    assert!(
        env_line(&log, "OTEL_EXPORTER_OTLP_ENDPOINT").is_some(),
        "{log}"
    );
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

pub fn an_ordinary_runc_pod_runs_beside_a_wasm_pod_on_the_same_node(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-dual", true);
    create(
        cluster,
        &deployment(
            "side-wasm",
            &ns,
            &w.image("env-service:compat"),
            &[("wasm-admission.io/wasm", "true")],
        ),
    );
    create(
        cluster,
        &deployment("side-runc", &ns, &w.image("hello:e2e"), &[]),
    );
    rollout(cluster, &ns, "side-wasm");
    rollout(cluster, &ns, "side-runc");
    let wasm = pod_of(cluster, &ns, "side-wasm");
    let runc = pod_of(cluster, &ns, "side-runc");
    assert_eq!(wasm["spec"]["nodeName"], runc["spec"]["nodeName"]);
    assert_eq!(runc["spec"]["runtimeClassName"], Value::Null, "untouched");
    assert_eq!(runtime_of(&w.node, &wasm), WASM_RUNTIME);
    assert_eq!(runtime_of(&w.node, &runc), RUNC_RUNTIME);
    assert!(
        logs(cluster, &ns, &runc).contains("hello from an ordinary container"),
        "runc's log"
    );
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

pub fn every_resource_profile_starts_a_module_and_keeps_it_running(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-profiles", true);
    let profiles = ["default", "edge", "serverless"];
    for profile in profiles {
        let mut annotations = vec![("wasm-admission.io/wasm", "true")];
        if profile != "default" {
            annotations.push(("wasm-admission.io/resource-profile", profile));
        }
        create(
            cluster,
            &deployment(
                &format!("profile-{profile}"),
                &ns,
                &w.image("env-service:compat"),
                &annotations,
            ),
        );
    }
    for profile in profiles {
        rollout(cluster, &ns, &format!("profile-{profile}"));
    }
    // Running for a while: no restart, no OOM kill.
    std::thread::sleep(Duration::from_secs(15));
    for profile in profiles {
        let pod = pod_of(cluster, &ns, &format!("profile-{profile}"));
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["restartCount"], 0, "{profile}: {status:#}");
        assert!(
            status["state"]["running"].is_object(),
            "{profile}: {status:#}"
        );
        assert_eq!(runtime_of(&w.node, &pod), WASM_RUNTIME);
        let cgroup = memory_cgroup(&pod);
        let peak = read_u64(&cgroup.join("memory.max_usage_in_bytes"));
        let limit = read_u64(&cgroup.join("memory.limit_in_bytes"));
        let declared = pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
            .as_str()
            .unwrap_or("none");
        println!(
            "    profile {profile}: peak memory {:.1} MiB of the limit {declared} ({:.0} MiB), {:.0}%",
            mib(peak),
            mib(limit),
            100.0 * peak as f64 / limit as f64
        );
        assert!(
            peak < limit,
            "{profile}: peak {peak} reached the limit {limit}"
        );
        let failcnt = read_u64(&cgroup.join("memory.failcnt"));
        assert_eq!(failcnt, 0, "{profile}: the limit was hit {failcnt} times");
    }
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

fn job(name: &str, ns: &str, image: &str) -> Value {
    serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"wasm-admission.io/wasm": "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "app", "image": image}]
                }
            }
        }
    })
}

fn wait_complete(cluster: &Cluster, ns: &str, job: &str) {
    let out = cluster.kubectl(&[
        "-n",
        ns,
        "wait",
        "--for=condition=Complete",
        &format!("job/{job}"),
        &format!("--timeout={}s", READY.as_secs()),
    ]);
    if !out.ok {
        let describe = cluster.kubectl(&[
            "-n",
            ns,
            "describe",
            "pods",
            "-l",
            &format!("job-name={job}"),
        ]);
        panic!(
            "job {job} did not complete: {}\n{}",
            out.stderr, describe.stdout
        );
    }
}

pub fn a_wasm_job_and_a_job_of_a_wasm_cronjob_complete(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-jobs", true);
    create(
        cluster,
        &job("once", &ns, &w.image("job:compat")).to_string(),
    );
    let template = job("unused", &ns, &w.image("job:artifact"));
    let cronjob = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": template["spec"]}}
    });
    create(cluster, &cronjob.to_string());
    // The Job the CronJob makes (as its controller does at the scheduled time).
    cluster
        .kubectl(&[
            "-n",
            &ns,
            "create",
            "job",
            "nightly-now",
            "--from=cronjob/nightly",
        ])
        .expect_ok("create job --from=cronjob");
    for name in ["once", "nightly-now"] {
        wait_complete(cluster, &ns, name);
        let pods = cluster.json(&["-n", &ns, "get", "pods", "-l", &format!("job-name={name}")]);
        let pod = &pods["items"][0];
        assert_eq!(pod["status"]["phase"], "Succeeded", "{name}");
        assert_eq!(pod["spec"]["runtimeClassName"], "wasm", "{name}");
        assert_eq!(runtime_of(&w.node, pod), WASM_RUNTIME, "{name}");
        assert!(
            logs(cluster, &ns, pod).contains("wasm-admission job: done"),
            "{name}"
        );
    }
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `serve`'s configuration with registry detection on and the local registry reached over HTTP.
fn with_registry_detection(current: &str, registry: &str) -> String {
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(current).expect("serve's configuration");
    let detection = config
        .as_mapping_mut()
        .expect("a mapping")
        .entry("detection".into())
        .or_insert_with(|| serde_yaml_ng::Value::Mapping(Default::default()));
    let registry_config = detection
        .as_mapping_mut()
        .expect("detection is a mapping")
        .entry("registry".into())
        .or_insert_with(|| serde_yaml_ng::Value::Mapping(Default::default()));
    let map = registry_config
        .as_mapping_mut()
        .expect("registry is a mapping");
    map.insert("enabled".into(), true.into());
    map.insert(
        "insecure".into(),
        serde_yaml_ng::Value::Sequence(vec![registry.into()]),
    );
    serde_yaml_ng::to_string(&config).expect("YAML")
}

struct RestoreConfig<'w>(&'w World, String);

impl Drop for RestoreConfig<'_> {
    fn drop(&mut self) {
        self.0.reconfigure(&self.1);
    }
}

pub fn registry_detection_runs_an_unannotated_wasm_image_under_the_shim(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-registry", true);
    let path = w.world.webhook().config_path();
    let before = std::fs::read_to_string(path).expect("config");
    let config = with_registry_detection(&before, &w.node.registry);
    w.world.reconfigure(&config);
    let _restore = RestoreConfig(&w.world, before);
    // Registry inspection makes every image possibly Wasm: the webhooks get the conditions
    // generated for that configuration (no skipping one), as the chart renders them.
    let _conditions = crate::match_conditions::ConditionsFor::apply(&w.world, &config);
    let image = w.image("env-service:artifact");
    create(cluster, &deployment("found-wasm", &ns, &image, &[]));
    rollout(cluster, &ns, "found-wasm");
    let pod = pod_of(cluster, &ns, "found-wasm");
    assert_eq!(
        pod["spec"]["runtimeClassName"], "wasm",
        "detected from the registry"
    );
    assert_eq!(runtime_of(&w.node, &pod), WASM_RUNTIME);
    log_with(cluster, &ns, &pod, "started under WASI");
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Puts the node's label back however the case ends.
struct Relabel<'w>(&'w NodeWorld, String);

impl Drop for Relabel<'_> {
    fn drop(&mut self) {
        self.0
            .cluster()
            .kubectl(&["label", "node", &self.0.node.name, &self.1, "--overwrite"]);
    }
}

pub fn the_no_node_warning_appears_exactly_while_the_scheduler_leaves_the_pod_pending(
    w: &NodeWorld,
) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-pending", true);
    let class = cluster.json(&["get", "runtimeclass", "wasm"]);
    let (key, value) = class["scheduling"]["nodeSelector"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .expect("the class wasm has a nodeSelector");
    let expected = format!(
        "wasm-admission: no node matches RuntimeClass \"wasm\" ({key}={value}); the pod will stay Pending"
    );
    let image = w.image("env-service:compat");
    let annotations = [("wasm-admission.io/wasm", "true")];

    cluster
        .kubectl(&["label", "node", &w.node.name, &format!("{key}-")])
        .expect_ok("remove the node's label");
    let _relabel = Relabel(w, format!("{key}={value}"));
    let probe = deployment("probe", &ns, &image, &annotations);
    eventually(Duration::from_secs(20), "the no-node warning", || {
        let out = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &probe);
        out.warnings().contains(&expected)
    });
    let out = create(cluster, &deployment("waits", &ns, &image, &annotations));
    assert!(out.warnings().contains(&expected), "{:?}", out.warnings());
    let pending = || {
        let list = cluster.json(&["-n", &ns, "get", "pods", "-l", "app=waits"]);
        list["items"][0]["status"]["phase"] == "Pending"
            && list["items"][0]["spec"]["nodeName"].is_null()
    };
    eventually(Duration::from_secs(30), "a pod of waits", pending);
    eventually(
        Duration::from_secs(30),
        "the scheduler's FailedScheduling event",
        || {
            let events = cluster
                .kubectl(&[
                    "-n",
                    &ns,
                    "get",
                    "events",
                    "--field-selector",
                    "reason=FailedScheduling",
                ])
                .stdout;
            events.contains("node(s) didn't match Pod's node affinity/selector")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(pending(), "still Pending while no node matches");

    cluster
        .kubectl(&["label", "node", &w.node.name, &format!("{key}={value}")])
        .expect_ok("label the node again");
    eventually(Duration::from_secs(20), "the warning to go", || {
        let out = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &probe);
        out.ok && out.warnings().is_empty()
    });
    let out = create(cluster, &deployment("runs", &ns, &image, &annotations));
    assert!(out.warnings().is_empty(), "{:?}", out.warnings());
    rollout(cluster, &ns, "runs");
    // The pod that waited is scheduled too, now that the node matches.
    rollout(cluster, &ns, "waits");
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

fn privileged_pod(name: &str, ns: &str, image: &str, wasm: bool) -> String {
    let annotations = if wasm {
        serde_json::json!({"wasm-admission.io/wasm": "true"})
    } else {
        serde_json::json!({})
    };
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": image, "securityContext": {"privileged": true}}]
        }
    })
    .to_string()
}

pub fn a_privileged_wasm_pod_is_denied_and_a_privileged_runc_pod_runs(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-privileged", true);
    let denied = cluster.kubectl_in(
        &["create", "-f", "-"],
        &privileged_pod("wasm-root", &ns, &w.image("env-service:compat"), true),
    );
    assert!(!denied.ok, "a privileged Wasm pod was admitted");
    assert!(
        denied.stderr.contains("denied the request") && denied.stderr.contains("privileged"),
        "{}",
        denied.stderr
    );
    create(
        cluster,
        &privileged_pod("runc-root", &ns, &w.image("hello:e2e"), false),
    );
    let out = cluster.kubectl(&[
        "-n",
        &ns,
        "wait",
        "--for=condition=Ready",
        "pod/runc-root",
        &format!("--timeout={}s", READY.as_secs()),
    ]);
    assert!(out.ok, "the privileged runc pod: {}", out.stderr);
    let pod = cluster.json(&["-n", &ns, "get", "pod", "runc-root"]);
    assert_eq!(runtime_of(&w.node, &pod), RUNC_RUNTIME);
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The chart back in mode webhook however the case ends.
struct BackToWebhook<'w>(&'w World);

impl Drop for BackToWebhook<'_> {
    fn drop(&mut self) {
        self.0.helm_install(&["--set", "mode=webhook"]);
        self.0.fetch_release_files();
    }
}

/// What the admission chain decided for a pod, without the names the apiserver makes up.
fn admitted_spec(pod: &Value) -> Value {
    let c = &pod["spec"]["containers"][0];
    serde_json::json!({
        "runtimeClassName": pod["spec"]["runtimeClassName"],
        "overhead": pod["spec"]["overhead"],
        "nodeSelector": pod["spec"]["nodeSelector"],
        "resources": c["resources"],
        "env": c["env"],
    })
}

pub fn chart_mode_policies_runs_the_same_pod_as_mode_webhook(w: &NodeWorld) {
    let cluster = w.cluster();
    let ns = cluster.namespace("node-modes", true);
    let image = w.image("env-service:compat");
    let annotations = [("wasm-admission.io/wasm", "true")];
    create(
        cluster,
        &deployment("by-webhook", &ns, &image, &annotations),
    );
    rollout(cluster, &ns, "by-webhook");
    let by_webhook = pod_of(cluster, &ns, "by-webhook");

    let _back = BackToWebhook(&w.world);
    w.world.helm_install(&["--set", "mode=policies"]);
    eventually(Duration::from_secs(30), "mode policies in force", || {
        let policies = cluster
            .kubectl(&["get", "mutatingadmissionpolicy", "wasm-admission-mutate"])
            .ok;
        let webhooks = cluster.kubectl(&["get", "mutatingwebhookconfigurations", "-o", "name"]);
        let dry = cluster.kubectl_in(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            &deployment("probe", &ns, &image, &annotations),
        );
        policies
            && !webhooks.stdout.contains("wasm-admission")
            && serde_json::from_str::<Value>(&dry.stdout)
                .is_ok_and(|d| d["spec"]["template"]["spec"]["runtimeClassName"] == "wasm")
    });
    create(
        cluster,
        &deployment("by-policies", &ns, &image, &annotations),
    );
    rollout(cluster, &ns, "by-policies");
    let by_policies = pod_of(cluster, &ns, "by-policies");
    // The names the apiserver and the controllers make up differ; what admission decided does not.
    let normalise = |pod: &Value, deployment: &str| {
        let replica_set = pod["metadata"]["ownerReferences"][0]["name"]
            .as_str()
            .unwrap_or("-");
        admitted_spec(pod)
            .to_string()
            .replace(replica_set, "REPLICASET")
            .replace(deployment, "DEPLOYMENT")
    };
    assert_eq!(
        normalise(&by_webhook, "by-webhook"),
        normalise(&by_policies, "by-policies"),
        "mode policies admits the pod as mode webhook does"
    );
    assert_eq!(runtime_of(&w.node, &by_policies), WASM_RUNTIME);
    log_with(cluster, &ns, &by_policies, "started under WASI");
    cluster.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
