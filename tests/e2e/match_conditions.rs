//! The webhooks' generated `matchConditions` on the real apiserver (README, "Which objects reach
//! the webhook"): what cannot be Wasm, and UPDATEs that change nothing the rules read, cost no
//! webhook call, read from the apiserver's own metrics; with `serve` down, only new Wasm pods
//! wait for it; the largest conditions stay inside the apiserver's CEL cost budget.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use wasm_admission::core::policies::match_conditions::MAX_IMAGE_LEN;

use crate::support::{World, eventually, metric_sum};

const CALLS: &str = "apiserver_admission_webhook_admission_duration_seconds_count";
const MUTATE: &str = "mutate.wasm-admission.io";
const VALIDATE: &str = "validate.wasm-admission.io";

/// Calls to both webhooks between two metric texts, for one operation or all (`""`).
fn calls(before: &str, after: &str, operation: &str) -> f64 {
    [MUTATE, VALIDATE]
        .iter()
        .map(|name| {
            let mut labels = vec![("name", *name)];
            if !operation.is_empty() {
                labels.push(("operation", operation));
            }
            metric_sum(after, CALLS, &labels) - metric_sum(before, CALLS, &labels)
        })
        .sum()
}

fn pod(name: &str, ns: &str, annotations: Value, spec: Value) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": spec,
    })
    .to_string()
}

fn deployment(name: &str, ns: &str, replicas: u32, annotations: Value, image: &str) -> String {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
    .to_string()
}

fn count_pods(world: &World, ns: &str, selector: &str) -> usize {
    world
        .cluster
        .json(&["-n", ns, "get", "pods", "-l", selector])["items"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Waits until the namespace's ReplicaSets say they have `replicas` pods in all.
fn wait_pods(world: &World, ns: &str, selector: &str, count: usize) {
    eventually(
        Duration::from_secs(90),
        &format!("{count} pods for {selector}"),
        || count_pods(world, ns, selector) >= count,
    );
}

pub fn objects_that_cannot_be_wasm_cost_no_webhook_call(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("mc-ordinary", true);
    let before = cluster.apiserver_metrics();
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &pod(
                "plain",
                &ns,
                json!({}),
                json!({"containers": [{"name": "app", "image": "nginx:1.27"}]}),
            ),
        )
        .expect_ok("ordinary Pod");
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &deployment("shop", &ns, 2, json!({}), "nginx:1.27"),
        )
        .expect_ok("ordinary Deployment");
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "once", "namespace": ns},
        "spec": {"template": {"metadata": {"labels": {"app": "once"}}, "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "app", "image": "busybox:1.36"}],
        }}},
    });
    cluster
        .kubectl_in(&["create", "-f", "-"], &job.to_string())
        .expect_ok("ordinary Job");
    wait_pods(world, &ns, "app=shop", 2);
    wait_pods(world, &ns, "app=once", 1);
    // A label edit, as people and controllers make them.
    cluster
        .kubectl(&["-n", &ns, "label", "pod", "plain", "team=a"])
        .expect_ok("label the Pod");
    let after = cluster.apiserver_metrics();
    assert_eq!(
        calls(&before, &after, ""),
        0.0,
        "ordinary Pod, Deployment (2 pods), Job and a label edit"
    );

    // What may be Wasm still reaches both webhooks, as before.
    let before = cluster.apiserver_metrics();
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &pod(
                "wasm",
                &ns,
                json!({"wasm-admission.io/wasm": "true"}),
                json!({"containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]}),
            ),
        )
        .expect_ok("Wasm Pod");
    // An opt-out on a Pod that names a class is the webhook's to judge: it is sent.
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &pod(
                "opted-out",
                &ns,
                json!({"wasm-admission.io/wasm": "false"}),
                json!({"runtimeClassName": "wasmedge", "containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]}),
            ),
        )
        .expect_ok("opted-out Pod on a Wasm class");
    let after = cluster.apiserver_metrics();
    let validated = metric_sum(&after, CALLS, &[("name", VALIDATE)])
        - metric_sum(&before, CALLS, &[("name", VALIDATE)]);
    assert_eq!(validated, 2.0, "both Pods reach /validate");
    let stored = cluster.json(&["-n", &ns, "get", "pod", "wasm"]);
    assert_eq!(stored["spec"]["runtimeClassName"], "wasm", "{stored}");
    println!(
        "    0 webhook calls for an ordinary Pod, Deployment and Job; {} for a Wasm Pod and an opted-out one",
        calls(&before, &after, "")
    );
}

pub fn a_scale_and_a_rollout_make_no_workload_update_call(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("mc-scale", true);
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &deployment(
                "cart",
                &ns,
                1,
                json!({"wasm-admission.io/wasm": "true"}),
                "ghcr.io/acme/cart:1",
            ),
        )
        .expect_ok("Wasm Deployment");
    wait_pods(world, &ns, "app=cart", 1);

    // Scale 1 → 10, through the Deployment itself (a main-resource UPDATE, as `kubectl apply`
    // of a new replica count makes it) and the controllers' ReplicaSet updates.
    let before = cluster.apiserver_metrics();
    cluster
        .kubectl(&[
            "-n",
            &ns,
            "patch",
            "deployment",
            "cart",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":10}}"#,
        ])
        .expect_ok("scale to 10");
    wait_pods(world, &ns, "app=cart", 10);
    let after = cluster.apiserver_metrics();
    assert_eq!(
        calls(&before, &after, "UPDATE"),
        0.0,
        "scale 1 -> 10: Deployment and ReplicaSet UPDATEs"
    );
    let created = calls(&before, &after, "CREATE");
    // Nine new Pods of a template the webhook mutated already: one call to /mutate (nothing
    // left to change, so no reinvocation) and one to /validate each.
    assert_eq!(created, 18.0, "nine new Wasm Pods, two calls each");

    // A rollout: the template change is judged, once by each webhook; the ReplicaSets'
    // scaling up and down and the controllers' annotations are not.
    let before = cluster.apiserver_metrics();
    cluster
        .kubectl(&["-n", &ns, "rollout", "restart", "deployment/cart"])
        .expect_ok("rollout restart");
    // No node runs the pods, so none becomes available: the controller surges the new
    // ReplicaSet to its most (25% of 10, rounded up) and keeps the old one at 10.
    eventually(
        Duration::from_secs(90),
        "a new ReplicaSet with its pods created",
        || {
            let sets = cluster.json(&["-n", &ns, "get", "replicasets", "-l", "app=cart"]);
            sets["items"].as_array().is_some_and(|items| {
                items.len() == 2
                    && items.iter().any(|rs| {
                        let restarted = rs["spec"]["template"]["metadata"]["annotations"]
                            ["kubectl.kubernetes.io/restartedAt"]
                            .is_string();
                        let wanted = rs["spec"]["replicas"].as_u64().unwrap_or(0);
                        restarted
                            && wanted >= 1
                            && rs["status"]["replicas"].as_u64() == Some(wanted)
                    })
            })
        },
    );
    let after = cluster.apiserver_metrics();
    let updates = |name: &str| {
        metric_sum(&after, CALLS, &[("name", name), ("operation", "UPDATE")])
            - metric_sum(&before, CALLS, &[("name", name), ("operation", "UPDATE")])
    };
    assert_eq!(
        updates(VALIDATE),
        1.0,
        "the Deployment's template change only"
    );
    assert!(updates(MUTATE) <= 2.0, "{}", updates(MUTATE));
    println!(
        "    scale 1 -> 10: 0 UPDATE calls, {created} CREATE calls (9 pods); rollout: {} UPDATE calls to /mutate, {} to /validate",
        updates(MUTATE),
        updates(VALIDATE)
    );
}

/// Starts `serve` again when the case ends, also when it fails.
struct Restart<'w>(&'w World);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        let mut webhook = self.0.webhook();
        if !webhook.running() {
            webhook.start(&self.0.cluster.kubeconfig);
        }
    }
}

pub fn with_serve_down_only_new_wasm_pods_wait_for_the_webhook(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("mc-down", true);
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &deployment(
                "cart",
                &ns,
                1,
                json!({"wasm-admission.io/wasm": "true"}),
                "ghcr.io/acme/cart:1",
            ),
        )
        .expect_ok("Wasm Deployment");
    wait_pods(world, &ns, "app=cart", 1);
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &deployment("web", &ns, 1, json!({}), "nginx:1.27"),
        )
        .expect_ok("ordinary Deployment");
    wait_pods(world, &ns, "app=web", 1);
    cluster
        .kubectl(&[
            "-n",
            &ns,
            "set",
            "image",
            "deployment/web",
            "app=nginx:1.28",
        ])
        .expect_ok("a second revision of the ordinary Deployment");

    let _restart = Restart(world);
    world.webhook().stop();

    // failurePolicy Fail (the chart's default): ordinary objects do not need the webhook.
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &pod(
                "plain",
                &ns,
                json!({}),
                json!({"containers": [{"name": "app", "image": "nginx:1.27"}]}),
            ),
        )
        .expect_ok("an ordinary Pod with the webhook down");
    cluster
        .kubectl(&["-n", &ns, "rollout", "undo", "deployment/web"])
        .expect_ok("an ordinary Deployment rolls back with the webhook down");
    // The Wasm Deployment scales: the Deployment and its ReplicaSet are updated...
    cluster
        .kubectl(&["-n", &ns, "scale", "deployment/cart", "--replicas=3"])
        .expect_ok("scale with the webhook down");
    cluster
        .kubectl(&[
            "-n",
            &ns,
            "patch",
            "deployment",
            "cart",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ])
        .expect_ok("a replica count written to the Deployment with the webhook down");
    eventually(
        Duration::from_secs(60),
        "the ReplicaSet scaled to 4",
        || {
            let sets = cluster.json(&["-n", &ns, "get", "replicasets", "-l", "app=cart"]);
            sets["items"][0]["spec"]["replicas"].as_u64() == Some(4)
        },
    );
    // ... and only its new Pods wait: the ReplicaSet reports the apiserver's refusal, which
    // names the webhook.
    eventually(
        Duration::from_secs(60),
        "the ReplicaSet reports the refused Pods",
        || {
            let sets = cluster.json(&["-n", &ns, "get", "replicasets", "-l", "app=cart"]);
            sets["items"][0]["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c["type"] == "ReplicaFailure"
                            && c["message"].as_str().is_some_and(|m| {
                                m.contains(&format!("failed calling webhook \"{MUTATE}\""))
                            })
                    })
                })
        },
    );
    assert_eq!(count_pods(world, &ns, "app=cart"), 1, "no new Wasm Pod");
    let out = cluster.kubectl_in(
        &["create", "-f", "-"],
        &pod(
            "wasm",
            &ns,
            json!({"wasm-admission.io/wasm": "true"}),
            json!({"containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]}),
        ),
    );
    assert_eq!(
        out.code,
        Some(1),
        "a Wasm Pod created with the webhook down"
    );
    assert!(
        out.stderr
            .contains(&format!("failed calling webhook \"{MUTATE}\"")),
        "{}",
        out.stderr
    );
    // Rolling the Wasm Deployment back changes its pod template, which the webhook must judge:
    // that waits for it, with the same message.
    let out = cluster.kubectl(&["-n", &ns, "rollout", "restart", "deployment/cart"]);
    assert!(!out.ok, "a Wasm template changed with the webhook down");
    assert!(
        out.stderr.contains("failed calling webhook"),
        "{}",
        out.stderr
    );

    world.webhook().start(&cluster.kubeconfig);
    wait_pods(world, &ns, "app=cart", 4);
}

/// The conditions generated for a configuration, as `policies --match-conditions` prints them.
fn generated_conditions(config: &std::path::Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .args(["policies", "--match-conditions", "--config"])
        .arg(config)
        .output()
        .expect("wasm-admission policies --match-conditions");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::from_slice(&out.stdout).expect("conditions YAML")
}

/// Many image patterns on the real apiserver: a webhook that nothing answers (so a call is a
/// refusal naming it) with the generated conditions, against the costliest pods they allow.
pub fn the_largest_image_conditions_stay_inside_the_cel_cost_budget(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("mc-cost", false);
    cluster
        .kubectl(&["label", "namespace", &ns, "wasm-admission.io/cost-test=yes"])
        .expect_ok("label namespace");
    // From one pattern (the most containers) to the most the container bound allows (the fewest).
    for count in [1usize, 60, 120] {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("config.yaml");
        let mut patterns: Vec<String> = (0..count)
            .map(|i| format!("registry{i}.example.com/team-{i}/**/*-wasm:*"))
            .collect();
        patterns.push("docker.io/library/hello-wasm:*".to_string());
        let classes: Vec<String> = (0..200).map(|i| format!("class-{i}")).collect();
        std::fs::write(
            &config,
            serde_yaml_ng::to_string(&json!({
                "detection": {"imagePatterns": patterns, "runtimeClasses": classes},
            }))
            .expect("yaml"),
        )
        .expect("config");
        let conditions = generated_conditions(&config);
        let wasm = conditions[0]["expression"].as_str().expect("expression");
        let bound: usize = wasm
            .split("orValue([])) > ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a container bound");
        let name = "cost.wasm-admission.io";
        let webhook = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "wasm-admission-cost-test"},
            "webhooks": [{
                "name": name,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 2,
                "clientConfig": {"url": "https://127.0.0.1:9/validate"},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"wasm-admission.io/cost-test": "yes"}},
                "matchConditions": conditions,
            }],
        });
        cluster
            .kubectl_in(&["apply", "-f", "-"], &webhook.to_string())
            .expect_ok("webhook configuration with the generated conditions");
        struct Delete<'c>(&'c crate::support::Cluster);
        impl Drop for Delete<'_> {
            fn drop(&mut self) {
                self.0.kubectl(&[
                    "delete",
                    "validatingwebhookconfiguration",
                    "wasm-admission-cost-test",
                    "--ignore-not-found",
                ]);
            }
        }
        let _delete = Delete(cluster);
        let long_image = |i: usize| {
            let name = format!("registry{i}.example.com/team-{i}/");
            format!("{name}{}:1", "a".repeat(MAX_IMAGE_LEN - name.len() - 2))
        };
        let many = |n: usize, prefix: &str| {
            let containers: Vec<Value> = (0..n)
                .map(|i| json!({"name": format!("c{i}"), "image": long_image(i % count.max(1))}))
                .collect();
            pod(
                &format!("{prefix}-{count}-{n}"),
                &ns,
                json!({}),
                json!({"containers": containers}),
            )
        };
        // The costliest pod the image rule matches: every container at the bound, every image at
        // the longest length, none matching. Skipped: no error, so no cost overrun.
        let create = |manifest: &str| cluster.kubectl_in(&["create", "-f", "-"], manifest);
        eventually(Duration::from_secs(20), "the conditions in force", || {
            let out = create(&pod(
                &format!("probe-{count}"),
                &ns,
                json!({}),
                json!({"containers": [{"name": "app", "image": "hello-wasm:1"}]}),
            ));
            !out.ok
                && out
                    .stderr
                    .contains(&format!("failed calling webhook \"{name}\""))
        });
        let out = create(&many(bound, "costly"));
        assert!(
            out.ok,
            "{bound} containers of {}-character images: {}",
            MAX_IMAGE_LEN, out.stderr
        );
        // One container more: sent without matching.
        let out = create(&many(bound + 1, "over"));
        assert!(
            out.stderr
                .contains(&format!("failed calling webhook \"{name}\"")),
            "{}",
            out.stderr
        );
        // A normalized match (hello-wasm:2 is docker.io/library/hello-wasm:2) and a class are sent.
        for (i, spec) in [
            json!({"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "hello-wasm:2"}]}),
            json!({"runtimeClassName": "wasmedge", "containers": [{"name": "a", "image": "nginx"}]}),
        ]
        .into_iter()
        .enumerate()
        {
            let out = create(&pod(&format!("sent-{count}-{i}"), &ns, json!({}), spec));
            assert!(
                out.stderr.contains(&format!("failed calling webhook \"{name}\"")),
                "{}",
                out.stderr
            );
        }
        create(&pod(
            &format!("skipped-{count}"),
            &ns,
            json!({}),
            json!({"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "registry1.example.com/team-1/x:1"}]}),
        ))
        .expect_ok("a pod no pattern matches");
        println!(
            "    {} patterns, {} classes: {bound} containers of {}-character images evaluated within the budget",
            patterns.len(),
            classes.len(),
            MAX_IMAGE_LEN
        );
    }
}

/// Both webhook configurations with the conditions generated for `config` (a case that gives
/// `serve` image patterns must give the apiserver their conditions too, as the chart's
/// `webhook.matchConditions.manifest` does); the chart's own are put back on drop.
pub struct ConditionsFor<'w> {
    world: &'w World,
    saved: Vec<(&'static str, Value)>,
}

impl<'w> ConditionsFor<'w> {
    pub fn apply(world: &'w World, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).expect("config");
        let conditions = generated_conditions(&path);
        let mut saved = Vec::new();
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ] {
            let current = world.cluster.json(&["get", kind, crate::support::RELEASE])["webhooks"]
                [0]["matchConditions"]
                .clone();
            saved.push((kind, current));
            patch(world, kind, &conditions);
        }
        Self { world, saved }
    }
}

fn patch(world: &World, kind: &str, conditions: &Value) {
    let op = json!([{"op": "replace", "path": "/webhooks/0/matchConditions", "value": conditions}]);
    world
        .cluster
        .kubectl(&[
            "patch",
            kind,
            crate::support::RELEASE,
            "--type=json",
            "-p",
            &op.to_string(),
        ])
        .expect_ok("patch matchConditions");
}

impl Drop for ConditionsFor<'_> {
    fn drop(&mut self) {
        for (kind, conditions) in &self.saved {
            patch(self.world, kind, conditions);
        }
    }
}
