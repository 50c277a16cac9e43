//! The native admission policies (behaviour.md §10) against the webhook, on the real apiserver:
//! the chart in mode `policies` (only the generated MutatingAdmissionPolicy and
//! ValidatingAdmissionPolicy, no webhook configurations) stores and denies exactly what mode
//! `webhook` does, for every example and fixture and for generated pods.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Cluster, Run, World, eventually, generated_policies, root};

const NS: &str = "parity";

/// Every manifest of examples/ and tests/fixtures/ and the golden inputs, moved into `NS`.
fn manifests() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        "examples/wasm",
        "examples/denied",
        "examples/opt-out",
        "examples/containers",
        "tests/fixtures",
        "tests/golden/input",
    ] {
        for entry in std::fs::read_dir(root().join(dir)).expect("folder") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("manifest");
            let text = text
                .replace("namespace: shop", &format!("namespace: {NS}"))
                .replace(
                    "\"namespace\": \"shop\"",
                    &format!("\"namespace\": \"{NS}\""),
                );
            (path.display().to_string(), text)
        })
        .collect()
}

/// What the apiserver answers to a server-side dry run of a manifest: the objects it would
/// store (without the fields that differ on every request) or the denial, and the warnings.
#[derive(Debug, PartialEq)]
struct Answer {
    objects: Vec<Value>,
    error: Option<String>,
    warnings: Vec<String>,
}

/// A refusal without the words that name the enforcer (webhook or policy): the message from
/// `wasm-admission: ` on in kubectl's error line, else kubectl's error lines; kubectl's
/// `Warning:` lines are not part of it.
fn denial(run: &Run) -> Option<String> {
    if run.ok {
        return None;
    }
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("Warning:"))
        .collect();
    let denied = errors
        .iter()
        .find_map(|l| l.split_once("wasm-admission: ").map(|(_, m)| m));
    Some(match denied {
        Some(message) => format!("wasm-admission: {}", message.trim()),
        None => errors.join("\n").trim().to_string(),
    })
}

fn dry_run(cluster: &Cluster, manifest: &str) -> Answer {
    dry_run_in(cluster, NS, manifest)
}

fn dry_run_in(cluster: &Cluster, ns: &str, manifest: &str) -> Answer {
    let run = cluster.kubectl_in(
        &[
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-n",
            ns,
            "-f",
            "-",
        ],
        manifest,
    );
    let mut objects = Vec::new();
    let stream = serde_json::Deserializer::from_str(&run.stdout).into_iter::<Value>();
    for value in stream {
        let value = value.expect("kubectl -o json");
        let items = match value["kind"].as_str() {
            Some("List") => value["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![value],
        };
        for mut item in items {
            if let Some(meta) = item["metadata"].as_object_mut() {
                for key in [
                    "uid",
                    "creationTimestamp",
                    "managedFields",
                    "resourceVersion",
                ] {
                    meta.remove(key);
                }
                if let Some(prefix) = meta.get("generateName").cloned() {
                    meta.insert("name".into(), prefix);
                }
            }
            objects.push(without_random_names(item));
        }
    }
    Answer {
        objects,
        error: denial(&run),
        warnings: run.warnings(),
    }
}

/// The object with the names the apiserver makes up on each request (a Job's controller uid,
/// the service account token volume's suffix) replaced by placeholders.
fn without_random_names(object: Value) -> Value {
    let text = object.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // UUIDs: 8-4-4-4-12 hexadecimal digits.
    while let Some(c) = rest.chars().next() {
        let candidate = rest.get(..36).unwrap_or("");
        let is_uuid = candidate.len() == 36
            && candidate.char_indices().all(|(i, ch)| {
                if [8, 13, 18, 23].contains(&i) {
                    ch == '-'
                } else {
                    ch.is_ascii_hexdigit()
                }
            });
        if is_uuid {
            out.push_str("<uid>");
            rest = &rest[36..];
        } else if let Some(after) = rest.strip_prefix("kube-api-access-") {
            out.push_str("kube-api-access-<id>");
            rest = after.get(5..).unwrap_or("");
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    serde_json::from_str(&out).expect("JSON")
}

/// Switches the chart to `mode` (with `extra` settings) and waits until a Wasm pod is mutated again (a new policy or
/// webhook configuration takes a moment to reach the apiserver's admission chain).
fn switch_mode(world: &World, mode: &str) {
    switch_mode_with(world, mode, &[]);
}

fn switch_mode_with(world: &World, mode: &str, extra: &[&str]) {
    let mut args = vec!["--set".to_string(), format!("mode={mode}")];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    world.helm_install(&args);
    if mode != "policies" {
        // Mode policies removed the chart's certificate; `serve` gets the new one.
        world.fetch_release_files();
    }
    let probe = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"probe-{mode}","namespace":"{NS}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"a:1"}}]}}}}"#
    );
    let policies_installed = |c: &Cluster| {
        c.kubectl(&["get", "mutatingadmissionpolicy", "wasm-admission-mutate"])
            .ok
    };
    let privileged = probe.replace(
        r#""image":"a:1""#,
        r#""image":"a:1","securityContext":{"privileged":true}"#,
    );
    // The mutating webhook denies before the validating policy runs.
    let enforcer = if mode == "policies" {
        "ValidatingAdmissionPolicy"
    } else {
        "admission webhook"
    };
    eventually(
        Duration::from_secs(30),
        &format!("mode {mode} in force"),
        || {
            let answer = dry_run(&world.cluster, &probe);
            let mutated = answer
                .objects
                .first()
                .is_some_and(|o| o["spec"]["runtimeClassName"] == "wasm");
            let denied = world
                .cluster
                .kubectl_in(&["create", "--dry-run=server", "-f", "-"], &privileged)
                .stderr
                .contains(enforcer);
            mutated && denied && (policies_installed(&world.cluster) == (mode != "webhook"))
        },
    );
}

/// Puts `serve` and the chart back in mode webhook however the case ends.
struct BackToWebhook<'w>(&'w World);

impl Drop for BackToWebhook<'_> {
    fn drop(&mut self) {
        {
            let mut webhook = self.0.webhook();
            if !webhook.running() {
                webhook.start(&self.0.cluster.kubeconfig);
            }
        }
        switch_mode(self.0, "webhook");
    }
}

pub fn mode_both_keeps_enforcing_with_the_webhook_down_and_warns_with_it_up(world: &World) {
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    cluster.namespace(NS, true);
    let pod = |name: &str, extra: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{NS}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"runtimeClassName":"runc-kept","containers":[{{"name":"app","image":"a:1"{extra}}}]}}}}"#
        )
    };
    cluster
        .kubectl_in(
            &["apply", "-f", "-"],
            r#"{"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{"name":"runc-kept"},"handler":"runc"}"#,
        )
        .expect_ok("RuntimeClass runc-kept");
    let by_webhook = dry_run(cluster, &pod("both", ""));
    let guard = BackToWebhook(world);
    switch_mode_with(world, "both", &["--set", "webhook.failurePolicy=Ignore"]);
    // Up: the policies mutated, the webhook found nothing to change and still warned.
    let up = dry_run(cluster, &pod("both", ""));
    assert_eq!(
        up.objects, by_webhook.objects,
        "mode both stores what mode webhook stores"
    );
    assert!(
        up.warnings
            .iter()
            .any(|w| w.contains("runtimeClassName \"runc-kept\" kept")),
        "the webhook's warning in mode both: {:?}",
        up.warnings
    );
    // Down (failurePolicy Ignore): the policies alone still mutate and deny (waiting until both
    // policies are in force: with `serve` up, the webhook answered first).
    world.webhook().stop();
    let privileged = pod(
        "both-privileged",
        r#","securityContext":{"privileged":true}"#,
    );
    eventually(
        Duration::from_secs(30),
        "the policies alone in force",
        || {
            let down = dry_run(cluster, &pod("both", ""));
            let denied =
                cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &privileged);
            down.objects == by_webhook.objects
                && down.warnings.is_empty()
                && denied
                    .stderr
                    .contains("ValidatingAdmissionPolicy 'wasm-admission-validate'")
                && denied.stderr.contains("securityContext.privileged=true")
        },
    );
    drop(guard);
}

pub fn native_policies_store_and_deny_what_the_webhook_does(world: &World) {
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    cluster.namespace(NS, true);
    let manifests = manifests();
    let by_webhook: Vec<Answer> = manifests.iter().map(|(_, m)| dry_run(cluster, m)).collect();
    let guard = BackToWebhook(world);
    switch_mode(world, "policies");
    let mut objects = 0;
    let mut denials = 0;
    let mut warnings_only_from_webhook = 0;
    let mut differences = Vec::new();
    for ((file, manifest), webhook) in manifests.iter().zip(&by_webhook) {
        let policies = dry_run(cluster, manifest);
        if policies.objects != webhook.objects {
            differences.push(format!(
                "{file}: stored objects differ:\n webhook:  {}\n policies: {}",
                serde_json::to_string(&webhook.objects).unwrap_or_default(),
                serde_json::to_string(&policies.objects).unwrap_or_default()
            ));
        }
        if policies.error != webhook.error {
            differences.push(format!(
                "{file}: denial differs:\n webhook:  {:?}\n policies: {:?}",
                webhook.error, policies.error
            ));
        }
        objects += webhook.objects.len();
        denials += usize::from(webhook.error.is_some());
        warnings_only_from_webhook +=
            webhook.warnings.len() - policies.warnings.len().min(webhook.warnings.len());
    }
    println!(
        "    {} manifests: {objects} stored objects and {denials} denials compared; \
         {warnings_only_from_webhook} warnings given by the webhook only",
        manifests.len()
    );
    drop(guard);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(objects >= 30 && denials >= 2, "too few compared");
}

/// A small deterministic generator (the same pods on every run).
struct Rng(u64);

impl Rng {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        &items[((self.0 >> 33) as usize) % items.len()]
    }
}

/// A pod from the fragments the rules read: detection annotations, a class, resources,
/// environment, privileges.
fn generated_pod(rng: &mut Rng, index: usize) -> Value {
    let annotations: &[&[(&str, &str)]] = &[
        &[("wasm-admission.io/wasm", "true")],
        &[("wasm-admission.io/wasm", "false")],
        &[],
        &[("wasm-admission.io/runtime-class", "spin")],
        &[
            ("wasm-admission.io/wasm", "true"),
            ("wasm-admission.io/resource-profile", "edge"),
        ],
        &[
            ("wasm-admission.io/wasm", "true"),
            ("wasm-admission.io/resource-profile", "tiny"),
        ],
        &[
            ("wasm-admission.io/wasm", "true"),
            ("wasm-admission.io/otel", "false"),
        ],
        &[
            ("module.wasm.image/variant", "compat-smart"),
            ("wasm-admission.io/otel-endpoint", "http://c:4317"),
        ],
        &[
            ("wasm-admission.io/wasm", "true"),
            ("wasm-admission.io/injected", "otel"),
        ],
    ];
    let classes: &[Option<&str>] = &[None, None, Some("wasmtime-spin-v2"), Some("wasm")];
    let resources = [
        "null",
        r#"{}"#,
        r#"{"limits":{"cpu":"100m"}}"#,
        r#"{"requests":{"cpu":"1"}}"#,
        r#"{"limits":{"memory":"32Mi"},"requests":{"memory":"16Mi"}}"#,
    ];
    let env = [
        "null",
        r#"[{"name":"OTEL_SERVICE_NAME","value":"mine"}]"#,
        r#"[{"name":"A","value":"b"}]"#,
    ];
    let security = [
        "null",
        "null",
        r#"{"privileged":true}"#,
        r#"{"capabilities":{"add":["NET_BIND_SERVICE","SYS_ADMIN"]}}"#,
        r#"{"seccompProfile":{"type":"Unconfined"}}"#,
        r#"{"allowPrivilegeEscalation":true}"#,
    ];
    let mut containers = Vec::new();
    for c in 0..*rng.pick(&[1, 1, 2, 3]) {
        let mut container =
            serde_json::json!({"name": format!("c{c}"), "image": "ghcr.io/acme/app:1"});
        for (key, choices) in [
            ("resources", &resources[..]),
            ("env", &env[..]),
            ("securityContext", &security[..]),
        ] {
            let value: Value = serde_json::from_str(rng.pick::<&str>(choices)).expect("fragment");
            if !value.is_null() {
                container[key] = value;
            }
        }
        if *rng.pick(&[false, false, false, true]) {
            container["ports"] =
                serde_json::json!([{"containerPort": 8080 + c, "hostPort": 8080 + c}]);
        }
        containers.push(container);
    }
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("gen-{index}"), "namespace": NS, "annotations": {}},
        "spec": {"containers": containers},
    });
    for (k, v) in *rng.pick(annotations) {
        pod["metadata"]["annotations"][*k] = Value::from(*v);
    }
    if *rng.pick(&[false, true]) {
        pod["metadata"]["labels"] = serde_json::json!({"app.kubernetes.io/name": "shop-api"});
    }
    if let Some(class) = rng.pick(classes) {
        pod["spec"]["runtimeClassName"] = Value::from(*class);
    }
    if *rng.pick(&[false, false, false, true]) {
        pod["spec"]["hostNetwork"] = Value::from(true);
    }
    if *rng.pick(&[false, false, true]) {
        pod["spec"]["initContainers"] = serde_json::json!([{"name": "init", "image": "busybox", "resources": {"limits": {"memory": "1Gi"}}}]);
    }
    pod
}

pub fn generated_pods_get_the_same_outcome_from_check_and_the_native_policies(world: &World) {
    const PODS: usize = 300;
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    cluster
        .kubectl_in(
            &["apply", "-f", "-"],
            r#"{"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{"name":"wasmtime-spin-v2"},"handler":"spin"}"#,
        )
        .expect_ok("RuntimeClass wasmtime-spin-v2");
    cluster.namespace(NS, true);
    let mut rng = Rng(0x5eed);
    let pods: Vec<Value> = (0..PODS).map(|i| generated_pod(&mut rng, i)).collect();
    let file = tempfile::NamedTempFile::new().expect("file");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": pods});
    std::fs::write(file.path(), list.to_string()).expect("write");
    let predicted = world.check_json(file.path());
    let by_webhook: Vec<Answer> = pods
        .iter()
        .map(|p| dry_run(cluster, &p.to_string()))
        .collect();
    let guard = BackToWebhook(world);
    switch_mode(world, "policies");
    let mut differences = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for ((pod, doc), webhook) in pods.iter().zip(&predicted).zip(&by_webhook) {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let policies = dry_run(cluster, &pod.to_string());
        // The stored objects and denials equal the webhook's through the same apiserver (which
        // defaults fields before admission, as check cannot).
        if policies.objects != webhook.objects || policies.error != webhook.error {
            differences.push(format!(
                "{name}: webhook {:?} {}; policies {:?} {}",
                webhook.error,
                serde_json::to_string(&webhook.objects).unwrap_or_default(),
                policies.error,
                serde_json::to_string(&policies.objects).unwrap_or_default()
            ));
        }
        // The outcome equals check's: allowed, or denied with the same message.
        let message = doc["message"].as_str();
        if doc["allowed"] == false {
            denied += 1;
            if policies.error.as_deref() != message {
                differences.push(format!(
                    "{name}: check denies {message:?}; policies: {:?}",
                    policies.error
                ));
            }
        } else {
            allowed += 1;
            if policies.error.is_some() {
                differences.push(format!(
                    "{name}: check allows; policies: {:?}",
                    policies.error
                ));
            }
        }
    }
    drop(guard);
    println!(
        "    {PODS} generated pods: {allowed} allowed and {denied} denied alike by check and the native policies, stored as the webhook stores them"
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(
        allowed > 50 && denied > 50,
        "the generator should give both outcomes"
    );
}

/// Deletes the policies [`apply_bound_policies`] applied, however the case ends.
pub(crate) struct DeleteVersioned<'w>(pub(crate) &'w Cluster, pub(crate) Vec<String>);

impl Drop for DeleteVersioned<'_> {
    fn drop(&mut self) {
        for name in &self.1 {
            let kinds = if name.starts_with("wasm-admission-mutate") {
                "mutatingadmissionpolicybinding,mutatingadmissionpolicy"
            } else {
                "validatingadmissionpolicybinding,validatingadmissionpolicy"
            };
            self.0
                .kubectl(&["delete", kinds, name, "--ignore-not-found"]);
        }
    }
}

/// The policies generated for `config` (only the validating ones unless `mutating`), each
/// renamed with `suffix` and bound to the namespaces labelled `label=suffix` only, so that
/// several configurations' policies can be in force at once beside the chart's. Returns the
/// names given.
pub(crate) fn apply_bound_policies(
    cluster: &Cluster,
    config: &std::path::Path,
    suffix: &str,
    label: &str,
    mutating: bool,
) -> Vec<String> {
    let mut names = Vec::new();
    for mut value in generated_policies(Some(config)) {
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        if !mutating && kind.starts_with("Mutating") {
            continue;
        }
        let name = format!(
            "{}-{suffix}",
            value["metadata"]["name"].as_str().unwrap_or_default()
        );
        if kind.ends_with("Binding") {
            value["spec"]["policyName"] = Value::from(name.clone());
        } else {
            value["spec"]["matchConstraints"]["namespaceSelector"] =
                serde_json::json!({"matchLabels": {label: suffix}});
        }
        value["metadata"]["name"] = Value::from(name.clone());
        cluster
            .kubectl_in(&["apply", "-f", "-"], &value.to_string())
            .expect_ok("apply the bound policy");
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

pub fn generated_baseline_denies_as_the_webhook_at_every_version(world: &World) {
    use crate::pod_security::{PODS, pod};

    let cluster = &world.cluster;
    let dir = tempfile::tempdir().expect("dir");
    let mut guard = DeleteVersioned(cluster, Vec::new());
    let mut namespaces = Vec::new();
    for minor in 30..=wasm_admission::core::baseline::LATEST_MINOR {
        let config = dir.path().join(format!("v1.{minor}.yaml"));
        std::fs::write(
            &config,
            format!("security:\n  baselineVersion: v1.{minor}\n"),
        )
        .expect("config");
        let suffix = format!("v1-{minor}");
        let names = apply_bound_policies(
            cluster,
            &config,
            &suffix,
            "wasm-admission.io/baseline-test",
            false,
        );
        let name = names[0].clone();
        guard.1.extend(names);
        // Not opted in: the webhook and the chart's policies stay out of it.
        let ns = cluster.namespace(&format!("vap-v1-{minor}"), false);
        cluster
            .kubectl(&[
                "label",
                "namespace",
                &ns,
                &format!("wasm-admission.io/baseline-test=v1-{minor}"),
            ])
            .expect_ok("label namespace");
        namespaces.push((minor, ns, config, name));
    }
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (minor, ns, config, name) in &namespaces {
        let privileged = pod("probe", ns, PODS[1].1);
        eventually(Duration::from_secs(30), &format!("{name} in force"), || {
            cluster
                .kubectl_in(&["create", "--dry-run=server", "-f", "-"], &privileged)
                .stderr
                .contains(name.as_str())
        });
        let manifests = dir.path().join(format!("v1.{minor}-pods.json"));
        let docs = crate::pod_security::write_pods(&manifests, ns);
        let checked = world.check_json_with(config, &manifests);
        for ((pod_name, _), doc) in PODS.iter().zip(&docs) {
            let run = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], doc);
            let ours = checked
                .iter()
                .find(|d| d["name"] == *pod_name)
                .expect("check reported the pod");
            compared += 1;
            let expected = ours["message"].as_str();
            let policy = denial(&run);
            if policy.as_deref() != expected {
                mismatches.push(format!(
                    "v1.{minor} {pod_name}: check {expected:?}, policy {policy:?}"
                ));
            }
        }
    }
    drop(guard);
    println!(
        "    {compared} verdicts and messages of the generated baseline compared with check (v1.30 to v1.{})",
        wasm_admission::core::baseline::LATEST_MINOR
    );
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// `kubectl debug` with the given profile and container name on `pod` in `NS`.
fn debug(cluster: &Cluster, pod: &str, profile: &str, container: &str) -> Run {
    cluster.kubectl(&[
        "-n",
        NS,
        "debug",
        pod,
        "--image=busybox",
        &format!("--profile={profile}"),
        "-c",
        container,
    ])
}

pub fn kubectl_debug_is_judged_alike_by_the_webhook_and_the_native_policies(world: &World) {
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    cluster.namespace(NS, true);
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"debug-target","namespace":"{NS}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"a:1"}}]}}}}"#
            ),
        )
        .expect_ok("create the Wasm pod");
    // The webhook: a privileged debugger is refused, a plain one is added.
    let by_webhook = debug(cluster, "debug-target", "sysadmin", "root");
    assert!(
        by_webhook.stderr.contains("admission webhook"),
        "{}",
        by_webhook.stderr
    );
    debug(cluster, "debug-target", "baseline", "plain-1").expect_ok("a plain debugger");
    let guard = BackToWebhook(world);
    switch_mode(world, "policies");
    let by_policies = debug(cluster, "debug-target", "sysadmin", "root");
    assert!(
        by_policies.stderr.contains("ValidatingAdmissionPolicy"),
        "{}",
        by_policies.stderr
    );
    assert_eq!(denial(&by_policies), denial(&by_webhook));
    assert!(
        denial(&by_webhook).is_some_and(|m| m.contains(
            "ephemeral containers of Wasm pod \"parity/debug-target\" are not allowed: ephemeralContainer \"root\": securityContext.privileged=true"
        )),
        "{:?}",
        denial(&by_webhook)
    );
    // The debugger added earlier is not judged again.
    debug(cluster, "debug-target", "baseline", "plain-2").expect_ok("a second plain debugger");
    drop(guard);
}

pub fn image_patterns_make_pods_wasm_in_the_policies_as_in_check(world: &World) {
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "detection:\n  imagePatterns:\n    - registry.example.com/wasm/*\n    - docker.io/library/hello-wasm:*\n    - \"**/*-wasm:*\"\n",
    )
    .expect("config");
    let mut guard = DeleteVersioned(cluster, Vec::new());
    guard.1 = apply_bound_policies(
        cluster,
        &config,
        "images",
        "wasm-admission.io/images-test",
        true,
    );
    // Not opted in: only these policies act here.
    let ns = cluster.namespace("images", false);
    cluster
        .kubectl(&[
            "label",
            "namespace",
            &ns,
            "wasm-admission.io/images-test=images",
        ])
        .expect_ok("label namespace");
    let images: &[&[&str]] = &[
        &["hello-wasm"],
        &["hello-wasm:2"],
        &["docker.io/library/hello-wasm:1"],
        &["registry.example.com/wasm/app:v1"],
        &[
            "registry.example.com/wasm/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
        &["registry.example.com/wasm/team/app:v1"],
        &["nginx"],
        &["team/cart-wasm:2"],
        &["localhost:5000/cart-wasm:1"],
        &["registry.example.com/wasm/app:v1", "nginx:1.27"],
        &["registry.example.com/wasm/app:v1", "x/cart-wasm:3"],
    ];
    let pod = |i: usize, images: &[&str], privileged: bool| {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(c, image)| {
                let mut container = serde_json::json!({"name": format!("c{c}"), "image": image});
                if privileged {
                    container["securityContext"] = serde_json::json!({"privileged": true});
                }
                container
            })
            .collect();
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("img-{i}{}", if privileged { "-p" } else { "" }), "namespace": ns},
            "spec": {"containers": containers},
        })
    };
    let mut pods: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, im)| pod(i, im, false))
        .collect();
    pods.extend(images.iter().enumerate().map(|(i, im)| pod(i, im, true)));
    let list = dir.path().join("pods.json");
    std::fs::write(
        &list,
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": pods}).to_string(),
    )
    .expect("pods");
    let checked = world.check_json_with(&config, &list);
    let probe = pods[3].to_string();
    eventually(
        Duration::from_secs(30),
        "the image policies in force",
        || {
            dry_run_in(cluster, &ns, &probe)
                .objects
                .first()
                .is_some_and(|o| o["spec"]["runtimeClassName"] == "wasm")
        },
    );
    let mut differences = Vec::new();
    let (mut wasm, mut denied) = (0, 0);
    for (pod, doc) in pods.iter().zip(&checked) {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let answer = dry_run_in(cluster, &ns, &pod.to_string());
        let expected = doc["message"].as_str();
        if answer.error.as_deref() != expected {
            differences.push(format!(
                "{name}: check {expected:?}, policies {:?}",
                answer.error
            ));
            continue;
        }
        if expected.is_some() {
            denied += 1;
            continue;
        }
        let stored = answer.objects.first().cloned().unwrap_or_default();
        let class = &doc["object"]["spec"]["runtimeClassName"];
        wasm += usize::from(!class.is_null());
        if stored["spec"]["runtimeClassName"] != *class
            || stored["metadata"]["annotations"]["wasm-admission.io/injected"]
                != doc["object"]["metadata"]["annotations"]["wasm-admission.io/injected"]
        {
            differences.push(format!(
                "{name}: check {} {}; policies {} {}",
                class,
                doc["object"]["metadata"]["annotations"],
                stored["spec"]["runtimeClassName"],
                stored["metadata"]["annotations"]
            ));
        }
    }
    drop(guard);
    println!(
        "    {} pods with image patterns: {wasm} made Wasm and {denied} denied alike by check and the policies",
        pods.len()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(wasm >= 5 && denied >= 5, "both outcomes");
}
