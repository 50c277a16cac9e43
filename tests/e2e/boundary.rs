//! behaviour.md §5, the boundary (issue 28, items 2 to 4), on the real apiserver: no opt-out on the
//! pod (the skip label, `wasm-admission.io/wasm: "false"`, a later annotation, a changed image)
//! gets a privileged pod on a Wasm class past the webhook or the generated policies, and the
//! generated validating policy never fails open on cost.

use std::time::Duration;

use serde_json::{Value, json};

use crate::native_policies::{DeleteVersioned, apply_bound_policies};
use crate::support::{Cluster, Run, World, eventually};

const PATTERN: &str = "ghcr.io/acme/*-wasm:*";

/// One door: the namespace it acts in.
struct Door<'a> {
    name: &'a str,
    ns: String,
}

fn create(cluster: &Cluster, object: &Value) -> Run {
    cluster.kubectl_in(&["create", "-f", "-"], &object.to_string())
}

fn pod(ns: &str, name: &str, labels: Value, annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": spec,
    })
}

fn privileged(image: &str) -> Value {
    json!({"name": "app", "image": image, "securityContext": {"privileged": true}})
}

/// Runs every attempt of issue 28's items 3 and 4 against one door; returns what got through.
fn attempts(cluster: &Cluster, door: &Door<'_>) -> Vec<String> {
    let ns = door.ns.as_str();
    let mut through = Vec::new();
    let mut expect_denied = |what: &str, run: Run, field: &str| {
        if run.ok || !run.stderr.contains(field) {
            through.push(format!(
                "{}: {what}: ok={} {}",
                door.name,
                run.ok,
                run.stderr.trim()
            ));
        }
    };
    // Item 3: the skip label on a pod that names a Wasm class.
    let skip = pod(
        ns,
        "skip",
        json!({"wasm-admission.io/skip": "true"}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": [privileged("ghcr.io/acme/app:1")]}),
    );
    expect_denied(
        "skip label",
        create(cluster, &skip),
        "securityContext.privileged=true",
    );
    // Item 3: wasm: "false" with hostPID, hostNetwork and a hostPath of /.
    let off = pod(
        ns,
        "off",
        json!({}),
        json!({"wasm-admission.io/wasm": "false"}),
        json!({
            "runtimeClassName": "wasmedge", "hostPID": true, "hostNetwork": true,
            "containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        }),
    );
    expect_denied(
        "wasm: \"false\"",
        create(cluster, &off),
        "spec.hostPID=true",
    );
    // Item 3: annotate a running Wasm pod with wasm: "false", then a privileged kubectl debug.
    let running = pod(
        ns,
        "running",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]}),
    );
    create(cluster, &running).expect_ok("the running Wasm pod");
    cluster
        .kubectl(&[
            "-n",
            ns,
            "annotate",
            "pod",
            "running",
            "wasm-admission.io/wasm=false",
        ])
        .expect_ok("a clean pod's annotation update is allowed");
    let debug = cluster.kubectl(&[
        "-n",
        ns,
        "debug",
        "running",
        "--image=busybox",
        "--profile=sysadmin",
        "-c",
        "root",
    ]);
    expect_denied(
        "annotate then kubectl debug",
        debug,
        "ephemeralContainer \"root\": securityContext.privileged=true",
    );
    // Item 4: a privileged pod with an ordinary image, then `kubectl set image` to a Wasm one.
    let swap = pod(
        ns,
        "swap",
        json!({}),
        json!({}),
        json!({"containers": [privileged("nginx:1")]}),
    );
    create(cluster, &swap).expect_ok("a privileged ordinary pod is not ours to deny");
    let set = cluster.kubectl(&[
        "-n",
        ns,
        "set",
        "image",
        "pod/swap",
        "app=ghcr.io/acme/cart-wasm:2",
    ]);
    expect_denied("set image", set, "securityContext.privileged=true");
    let stored = cluster.json(&["-n", ns, "get", "pod", "swap", "-o", "json"]);
    if stored["spec"]["containers"][0]["image"] != "nginx:1" {
        through.push(format!(
            "{}: set image: stored {}",
            door.name, stored["spec"]["containers"][0]["image"]
        ));
    }
    through
}

/// Puts `serve`'s configuration back, also when the case fails.
struct Restore<'w> {
    world: &'w World,
    config: String,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.world.reconfigure(&self.config);
    }
}

pub fn no_opt_out_on_the_pod_gets_a_privileged_wasm_pod_past_any_door(world: &World) {
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    // The webhook, with an image pattern.
    let config = std::fs::read_to_string(world.webhook().config_path()).expect("config");
    let restore = Restore {
        world,
        config: config.clone(),
    };
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).expect("config YAML");
    yaml["detection"]["imagePatterns"] =
        serde_yaml_ng::from_str(&format!("['{PATTERN}']")).expect("list");
    let text = serde_yaml_ng::to_string(&yaml).expect("YAML");
    world.reconfigure(&text);
    // The apiserver's matchConditions for the same patterns (README, "Which objects reach the
    // webhook").
    let conditions = crate::match_conditions::ConditionsFor::apply(world, &text);
    let webhook = Door {
        name: "webhook",
        ns: cluster.namespace("boundary-webhook", true),
    };
    let mut through = attempts(cluster, &webhook);
    drop(conditions);
    drop(restore);
    // The generated policies for the same configuration, bound to a namespace of their own (not
    // opted in: the webhook stays out of it).
    let dir = tempfile::tempdir().expect("dir");
    let policy_config = dir.path().join("config.yaml");
    std::fs::write(
        &policy_config,
        // Exemptions that match none of the attempts, so that their expressions are
        // type-checked by the apiserver too.
        format!(
            "detection:\n  imagePatterns: ['{PATTERN}']\nsecurity:\n  exemptions:\n    \
             usernames: [nobody]\n    namespaces: [elsewhere]\n    runtimeClasses: [gvisor]\n"
        ),
    )
    .expect("config");
    let mut guard = DeleteVersioned(cluster, Vec::new());
    guard.1 = apply_bound_policies(
        cluster,
        &policy_config,
        "boundary",
        "wasm-admission.io/boundary-test",
        true,
    );
    let ns = cluster.namespace("boundary-policies", false);
    cluster
        .kubectl(&[
            "label",
            "namespace",
            &ns,
            "wasm-admission.io/boundary-test=boundary",
        ])
        .expect_ok("label namespace");
    let probe = pod(
        &ns,
        "probe",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": [privileged("a:1")]}),
    );
    eventually(
        Duration::from_secs(30),
        "the boundary policies in force",
        || {
            cluster
                .kubectl_in(
                    &["create", "--dry-run=server", "-f", "-"],
                    &probe.to_string(),
                )
                .stderr
                .contains("wasm-admission-validate-boundary")
        },
    );
    through.extend(attempts(
        cluster,
        &Door {
            name: "policies",
            ns,
        },
    ));
    drop(guard);
    println!(
        "    4 opt-out attempts x 2 doors (webhook, generated policies): {} got through",
        through.len()
    );
    assert!(through.is_empty(), "{through:#?}");
}

/// Issue 28, item 2: the repros of the CEL cost limit, with the generated policies alone (the
/// mutating one at `--failure-policy ignore`, as the chart's mode both with Ignore renders it).
pub fn generated_policies_never_fail_open_on_cost(world: &World) {
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "# the defaults\n").expect("config");
    let mut guard = DeleteVersioned(cluster, Vec::new());
    // The validating policy alone: with the chart's mode both and Ignore, the mutating policy
    // may fail open on cost (a mutation skipped); the denial must not.
    guard.1 = apply_bound_policies(
        cluster,
        &config,
        "cost",
        "wasm-admission.io/cost-test",
        false,
    );
    let ns = cluster.namespace("cost", false);
    cluster
        .kubectl(&[
            "label",
            "namespace",
            &ns,
            "wasm-admission.io/cost-test=cost",
        ])
        .expect_ok("label namespace");
    let probe = pod(
        &ns,
        "probe",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": [privileged("a:1")]}),
    );
    eventually(
        Duration::from_secs(30),
        "the cost policies in force",
        || {
            cluster
                .kubectl_in(
                    &["create", "--dry-run=server", "-f", "-"],
                    &probe.to_string(),
                )
                .stderr
                .contains("wasm-admission-validate-cost")
        },
    );
    // A Wasm pod padded with 1,000 harmless ephemeral containers, then a privileged debugger.
    let target = pod(
        &ns,
        "padded",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": [{"name": "app", "image": "a:1"}]}),
    );
    create(cluster, &target).expect_ok("the Wasm pod");
    let mut stored = cluster.json(&["-n", &ns, "get", "pod", "padded", "-o", "json"]);
    let padding: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("pad-{i}"), "image": "busybox"}))
        .collect();
    stored["spec"]["ephemeralContainers"] = Value::Array(padding);
    let padded = cluster.kubectl_in(
        &["replace", "--subresource=ephemeralcontainers", "-f", "-"],
        &stored.to_string(),
    );
    println!(
        "    1,000 harmless ephemeral containers: {}",
        if padded.ok {
            "accepted".to_string()
        } else {
            format!("refused ({})", padded.stderr.trim())
        }
    );
    let debug = cluster.kubectl(&[
        "-n",
        &ns,
        "debug",
        "padded",
        "--image=busybox",
        "--profile=sysadmin",
        "-c",
        "root",
    ]);
    println!(
        "    then a privileged kubectl debug: ok={} {}",
        debug.ok,
        first_line(&debug.stderr)
    );
    assert!(!debug.ok, "the privileged debugger got past the padded pod");
    assert!(
        debug.stderr.contains("wasm-admission-validate-cost"),
        "denied by the validating policy: {}",
        debug.stderr
    );
    let after = cluster.json(&["-n", &ns, "get", "pod", "padded", "-o", "json"]);
    let names: Vec<&str> = after["spec"]["ephemeralContainers"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !names.contains(&"root"),
        "the privileged debugger was stored"
    );
    // A pod of about 929 KB with 3,000 privileged containers.
    let containers: Vec<Value> = (0..3000)
        .map(|i| {
            json!({"name": format!("c{i}"), "image": "a:1", "securityContext": {"privileged": true},
                   "args": ["x".repeat(250)]})
        })
        .collect();
    let big = pod(
        &ns,
        "big",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": containers}),
    );
    let size = big.to_string().len();
    let run = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &big.to_string());
    println!(
        "    a {size}-byte pod with 3,000 privileged containers: ok={} {}",
        run.ok,
        first_line(&run.stderr)
    );
    assert!(!run.ok, "the 3,000 privileged containers were admitted");
    assert!(
        run.stderr.contains("wasm-admission-validate-cost"),
        "{}",
        run.stderr
    );
    drop(guard);
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}
