//! Reinvocation and the validating webhook: a MutatingAdmissionPolicy (admissionregistration
//! v1, GA in the pinned release) changes the Pod after the webhook did. With the chart's
//! `reinvocationPolicy: IfNeeded` the webhook looks again and completes the new container; a
//! change that makes the Pod privileged after the webhook's last look is refused by `/validate`,
//! which is why the ValidatingWebhookConfiguration exists (behaviour.md §7).

use std::time::Duration;

use serde_json::Value;

use crate::support::{RELEASE, World, eventually, metric_sum, within};

/// A MutatingAdmissionPolicy and its binding for one namespace, applying `patch` (a CEL
/// JSONPatch) to Pods the webhook has already mutated and for which `unless` is false.
///
/// kube-apiserver runs MutatingAdmissionPolicies before mutating webhooks, and reinvokes only
/// the policies that matched the first time; so the policy matches every Pod of the namespace
/// and does nothing until the webhook's `wasm-admission.io/injected` annotation is there, which
/// is on its reinvocation.
fn policy(name: &str, ns: &str, unless: &str, patch: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata:
  name: {name}
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["pods"]
  matchConditions:
    - name: not-yet
      expression: '!({unless})'
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  mutations:
    - patchType: JSONPatch
      jsonPatch:
        expression: >-
          has(object.metadata.annotations) &&
          'wasm-admission.io/injected' in object.metadata.annotations ? [{patch}] : []
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: {name}
spec:
  policyName: {name}
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {ns}
"#
    )
}

fn wasm_pod(name: &str, ns: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/app:1"}}]}}}}"#
    )
}

/// Deletes the policy and binding, also when the case fails.
struct Policy<'w> {
    world: &'w World,
    name: String,
}

impl Drop for Policy<'_> {
    fn drop(&mut self) {
        for kind in ["mutatingadmissionpolicybinding", "mutatingadmissionpolicy"] {
            self.world
                .cluster
                .kubectl(&["delete", kind, &self.name, "--ignore-not-found"]);
        }
    }
}

fn install_policy<'w>(world: &'w World, name: &str, yaml: &str) -> Policy<'w> {
    world
        .cluster
        .kubectl_in(&["apply", "-f", "-"], yaml)
        .expect_ok("apply MutatingAdmissionPolicy");
    Policy {
        world,
        name: name.to_string(),
    }
}

pub fn a_sidecar_added_after_the_webhook_gets_resources_on_reinvocation(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("reinvocation", true);
    let _policy = install_policy(
        world,
        "e2e-add-sidecar",
        &policy(
            "e2e-add-sidecar",
            &ns,
            "object.spec.containers.exists(c, c.name == \"log-shipper\")",
            "JSONPatch{op: \"add\", path: \"/spec/containers/-\", value: Object.spec.containers{name: \"log-shipper\", image: \"ghcr.io/acme/log-shipper:2\"}}",
        ),
    );
    // The policy takes effect once the apiserver's informer has it: dry runs until then.
    let mut pod = Value::Null;
    let mut last = String::new();
    let added = within(Duration::from_secs(30), || {
        let out = cluster.kubectl_in(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            &wasm_pod("probe", &ns),
        );
        last = format!("{}{}", out.stdout, out.stderr);
        out.ok && out.stdout.contains("log-shipper")
    });
    assert!(added, "the policy added no sidecar; last dry run: {last}");
    cluster
        .kubectl_in(&["create", "-f", "-"], &wasm_pod("shop", &ns))
        .expect_ok("create Pod");
    eventually(Duration::from_secs(5), "the Pod", || {
        pod = cluster.json(&["-n", &ns, "get", "pod", "shop"]);
        pod.is_object()
    });
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    let sidecar = containers
        .iter()
        .find(|c| c["name"] == "log-shipper")
        .expect("the policy's sidecar");
    assert_eq!(sidecar["resources"]["requests"]["cpu"], "250m", "{sidecar}");
    assert_eq!(
        sidecar["resources"]["limits"]["memory"], "128Mi",
        "{sidecar}"
    );
    // The OpenTelemetry variables are not added on the second look: the Pod already carries an
    // injection (the app container's, from the first look), and behaviour.md §4.3 then skips them.
    assert!(sidecar.get("env").is_none(), "{sidecar}");
}

pub fn a_later_mutation_that_sets_privileged_is_refused_by_validate(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("late-privileged", true);
    // The mutating webhook must not see the final object, so that only /validate can catch the
    // late change: its reinvocation is turned off for this case.
    let restore = ReinvocationOff::new(world);
    let _policy = install_policy(
        world,
        "e2e-make-privileged",
        &policy(
            "e2e-make-privileged",
            &ns,
            "has(object.spec.containers[0].securityContext)",
            "JSONPatch{op: \"add\", path: \"/spec/containers/0/securityContext\", value: Object.spec.containers.securityContext{privileged: true}}",
        ),
    );
    let denial = format!(
        "admission webhook \"validate.wasm-admission.io\" denied the request: wasm-admission: Wasm pod \"{ns}/late\" is not allowed: container \"app\": securityContext.privileged=true"
    );
    // Dry runs until the policy is in force (they store nothing), then the real create.
    let mut last = String::new();
    let refused = within(Duration::from_secs(30), || {
        let out = cluster.kubectl_in(
            &["create", "--dry-run=server", "-f", "-"],
            &wasm_pod("late", &ns),
        );
        last = out.stderr;
        !out.ok
    });
    assert!(refused, "the dry run was never refused: {last}");
    let out = cluster.kubectl_in(&["create", "-f", "-"], &wasm_pod("late", &ns));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&denial),
        "kubectl said {:?}",
        out.stderr
    );
    let get = cluster.kubectl(&["-n", &ns, "get", "pod", "late"]);
    assert!(!get.ok, "the privileged pod was stored");
    drop(restore);
}

/// Sets the mutating webhook's reinvocationPolicy to Never, and back to IfNeeded on drop.
struct ReinvocationOff<'w> {
    world: &'w World,
}

impl<'w> ReinvocationOff<'w> {
    fn new(world: &'w World) -> Self {
        Self::set(world, "Never");
        Self { world }
    }

    fn set(world: &World, policy: &str) {
        world
            .cluster
            .kubectl(&[
                "patch",
                "mutatingwebhookconfiguration",
                RELEASE,
                "--type=json",
                "-p",
                &format!(
                    r#"[{{"op":"replace","path":"/webhooks/0/reinvocationPolicy","value":"{policy}"}}]"#
                ),
            ])
            .expect_ok("patch reinvocationPolicy");
    }
}

impl Drop for ReinvocationOff<'_> {
    fn drop(&mut self) {
        Self::set(self.world, "IfNeeded");
    }
}

/// The apiserver's calls to one webhook so far.
fn webhook_calls(world: &World, name: &str) -> f64 {
    metric_sum(
        &world.cluster.apiserver_metrics(),
        "apiserver_admission_webhook_admission_duration_seconds_count",
        &[("name", name)],
    )
}

/// Waits until a Wasm Pod created in `ns` costs one `/mutate`: `serve` writes the class's
/// scheduling once its watch has seen the class (behaviour.md §4.1). Probes with dry runs, which
/// call the webhooks as a create does and store nothing.
pub fn wait_for_one_mutate_per_wasm_pod(world: &World, ns: &str) {
    const MUTATE: &str = "mutate.wasm-admission.io";
    let cluster = &world.cluster;
    let mut last = 0.0;
    let once = within(Duration::from_secs(30), || {
        let before = webhook_calls(world, MUTATE);
        cluster
            .kubectl_in(
                &["create", "--dry-run=server", "-f", "-"],
                &wasm_pod("probe", ns),
            )
            .expect_ok("dry-run create");
        last = webhook_calls(world, MUTATE) - before;
        last == 1.0
    });
    assert!(once, "a Wasm Pod still cost {last} /mutate calls");
}

/// behaviour.md §4.1 and §6: a Pod whose class the webhook injects gets the class's scheduling
/// and overhead in the webhook's own patch, so the RuntimeClass admission plugin's second pass
/// changes nothing and the apiserver calls `/mutate` once, not twice. The Pod stored is the one
/// the plugin would have made.
pub fn a_pod_whose_class_the_webhook_injects_is_mutated_once(world: &World) {
    const MUTATE: &str = "mutate.wasm-admission.io";
    let cluster = &world.cluster;
    world.apply_runtime_classes();
    let ns = cluster.namespace("mutated-once", true);
    wait_for_one_mutate_per_wasm_pod(world, &ns);
    let before = webhook_calls(world, MUTATE);
    cluster
        .kubectl_in(&["create", "-f", "-"], &wasm_pod("once", &ns))
        .expect_ok("create Pod");
    assert_eq!(webhook_calls(world, MUTATE) - before, 1.0);
    let pod = cluster.json(&["-n", &ns, "get", "pod", "once"]);
    let spec = &pod["spec"];
    assert_eq!(spec["runtimeClassName"], "wasm", "{spec}");
    assert_eq!(
        spec["nodeSelector"]["wasm-admission.io/runtime-wasmedge"], "true",
        "{spec}"
    );
    assert_eq!(spec["overhead"]["cpu"], "10m", "{spec}");
    assert!(
        spec["containers"][0]["resources"]["requests"]["cpu"].is_string(),
        "{spec}"
    );
}
