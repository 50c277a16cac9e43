//! The webhook down, and the chart upgraded: what `failurePolicy` promises (chart values,
//! README "Failure policy") and what helm's `lookup` of the generated certificate keeps.

use crate::admission::injected;
use crate::support::{RELEASE, RELEASE_NS, World, root};

fn wasm_pod(name: &str, ns: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/app:1"}}]}}}}"#
    )
}

/// The emergency command of docs/operations.md, as a user types it.
fn set_failure_policy(world: &World, policy: &str) {
    let chart = root().join("deploy/helm/wasm-admission");
    world
        .helm(&[
            "upgrade",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "-n",
            RELEASE_NS,
            "--reset-then-reuse-values",
            "--set",
            &format!("webhook.failurePolicy={policy}"),
        ])
        .expect_ok("helm upgrade --set webhook.failurePolicy");
}

/// Starts `serve` again and puts `Fail` back, also when the case fails.
struct Recover<'w> {
    world: &'w World,
}

impl Drop for Recover<'_> {
    fn drop(&mut self) {
        set_failure_policy(self.world, "Fail");
        let mut webhook = self.world.webhook();
        if !webhook.running() {
            webhook.start(&self.world.cluster.kubeconfig);
        }
    }
}

pub fn with_serve_down_fail_blocks_opted_in_creates_and_ignore_lets_them_pass(world: &World) {
    let cluster = &world.cluster;
    let opted = cluster.namespace("down-opted-in", true);
    let plain = cluster.namespace("down-not-opted-in", false);
    let recover = Recover { world };
    world.webhook().stop();

    let out = cluster.kubectl_in(&["create", "-f", "-"], &wasm_pod("blocked", &opted));
    assert_eq!(
        out.code,
        Some(1),
        "created with the webhook down: {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("failed calling webhook \"mutate.wasm-admission.io\""),
        "{}",
        out.stderr
    );
    cluster
        .kubectl_in(&["create", "-f", "-"], &wasm_pod("free", &plain))
        .expect_ok("create in an unlabelled namespace with the webhook down");
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &wasm_pod("e2e-down-fail", "kube-system"),
        )
        .expect_ok("create in kube-system with the webhook down");

    set_failure_policy(world, "Ignore");
    for name in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let config = cluster.json(&["get", name, RELEASE]);
        assert_eq!(config["webhooks"][0]["failurePolicy"], "Ignore", "{name}");
    }
    cluster
        .kubectl_in(&["create", "-f", "-"], &wasm_pod("let-through", &opted))
        .expect_ok("create under Ignore with the webhook down");
    let stored = cluster.json(&["-n", &opted, "get", "pod", "let-through"]);
    assert_eq!(injected(&stored), None, "mutated with the webhook down?");
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &wasm_pod("e2e-down-ignore", "kube-system"),
        )
        .expect_ok("create in kube-system under Ignore");
    for pod in ["e2e-down-fail", "e2e-down-ignore"] {
        cluster.kubectl(&["-n", "kube-system", "delete", "pod", pod, "--wait=false"]);
    }
    drop(recover);

    // Back to Fail with serve up: the webhook answers again.
    cluster
        .kubectl_in(&["create", "-f", "-"], &wasm_pod("answered", &opted))
        .expect_ok("create after recovery");
    let stored = cluster.json(&["-n", &opted, "get", "pod", "answered"]);
    assert_eq!(
        injected(&stored).as_deref(),
        Some("runtime-class,resources,otel")
    );
}

pub fn helm_upgrade_keeps_the_generated_certificate(world: &World) {
    let cluster = &world.cluster;
    let secret = || cluster.json(&["-n", RELEASE_NS, "get", "secret", &format!("{RELEASE}-tls")]);
    let before = secret();
    world.helm_install(&["--set", "webhook.timeoutSeconds=6"]);
    let after = secret();
    assert_eq!(
        before["data"], after["data"],
        "helm upgrade replaced the certificate"
    );
    for name in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let config = cluster.json(&["get", name, RELEASE]);
        let webhook = &config["webhooks"][0];
        assert_eq!(
            webhook["clientConfig"]["caBundle"], after["data"]["ca.crt"],
            "{name}"
        );
        assert_eq!(webhook["timeoutSeconds"], 6, "{name}");
        let url = webhook["clientConfig"]["url"].as_str().expect("url");
        assert_eq!(
            url,
            format!(
                "{}{}",
                world.webhook().url(),
                if name.starts_with("mutating") {
                    "/mutate"
                } else {
                    "/validate"
                }
            )
        );
    }
    world.helm_install(&[]);
}

/// Issue 28, item 1, the repro: under `failurePolicy: Ignore` (the emergency switch of docs/operations.md) a
/// privileged, hostPID pod on a Wasm class, padded with 1.45 million `<` in its args, makes an
/// AdmissionReview of about 8.7 MB (the apiserver writes each `<` as the six bytes `\u003c`), past
/// the old 8 MiB limit: it was answered 413, the failure ignored, and the pod stored. The webhook
/// now decides a review of that size, and the pod is denied for what it asks.
pub fn an_oversized_review_under_ignore_is_denied_not_admitted(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("oversized-review", true);
    world.apply_runtime_classes();
    let recover = Recover { world };
    set_failure_policy(world, "Ignore");
    let padding = "<".repeat(1_450_000);
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "padded", "namespace": ns},
        "spec": {
            "runtimeClassName": "wasmtime",
            "hostPID": true,
            "containers": [{
                "name": "app",
                "image": "ghcr.io/acme/app:1",
                "args": [padding],
                "securityContext": {"privileged": true}
            }]
        }
    })
    .to_string();
    // Sent as written (1.45 MB, under the apiserver's 3 MiB request limit): kubectl's own JSON
    // encoder would escape each `<` too and be refused before admission.
    let path = format!("/api/v1/namespaces/{ns}/pods");
    let out = cluster.kubectl_in(&["create", "--raw", &path, "-f", "-"], &pod);
    let stored = cluster.kubectl(&["-n", &ns, "get", "pod", "padded"]).ok;
    drop(recover);
    assert!(
        !stored,
        "the padded privileged pod was stored: {}",
        out.stderr
    );
    assert!(!out.ok, "created: {}", out.stdout);
    assert!(
        out.stderr.contains("denied the request") && out.stderr.contains("privileged"),
        "{}",
        out.stderr
    );
}
