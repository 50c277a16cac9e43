//! Day one and day two, with the commands the README's quick start and docs/operations.md give: the
//! checks that it works, a renewal and a CA rollover driven by `wasm-admission certs` while
//! creates keep running, an uninstall with the webhook down, the recovery when the release's
//! record is lost, and a re-install.
//!
//! The cluster has no kubelet, so the chart's Deployment cannot run: as in the rest of the suite,
//! `serve` runs locally behind `webhook.url`, and "the kubelet updates the mounted Secret" is done
//! here by reading the Secret back from the API and swapping `serve`'s files.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;

use crate::admission::injected;
use crate::support::{RELEASE, RELEASE_NS, World, eventually, metric_sum, root, within};

const LABEL: &str = "app.kubernetes.io/name=wasm-admission";
const CONFIGS: &str = "mutatingwebhookconfiguration,validatingwebhookconfiguration";
/// The Secret of the `certs` flow (chart mode "existing Secret").
const CERTS_SECRET: &str = "wasm-admission-certs";

fn wasm_pod(name: &str, ns: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/app:1"}}]}}}}"#
    )
}

fn chart() -> String {
    root()
        .join("deploy/helm/wasm-admission")
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// `wasm-admission ARGS`: standard output, or a panic with what it printed.
fn wasm_admission(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .args(args)
        .output()
        .expect("run wasm-admission");
    assert!(
        out.status.success(),
        "wasm-admission {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The webhook configurations the recovery command (docs/operations.md) selects, by name.
fn labelled_configs(world: &World) -> String {
    world
        .cluster
        .kubectl(&["get", CONFIGS, "-l", LABEL, "-o", "name"])
        .expect_ok("kubectl get webhook configurations")
        .trim()
        .to_string()
}

/// Creates Pods under fresh names until one is admitted (the apiserver reads webhook
/// configurations through an informer, so a change takes a moment); the stored Pod.
fn create_until_admitted(world: &World, ns: &str, prefix: &str) -> serde_json::Value {
    let mut n = 0;
    let mut last = String::new();
    let ok = within(Duration::from_secs(30), || {
        n += 1;
        let out = world.cluster.kubectl_in(
            &["create", "-f", "-"],
            &wasm_pod(&format!("{prefix}-{n}"), ns),
        );
        last = out.stderr;
        out.ok
    });
    assert!(ok, "no create of {prefix}-* admitted in 30 s: {last}");
    world
        .cluster
        .json(&["-n", ns, "get", "pod", &format!("{prefix}-{n}")])
}

/// Puts the release back as the suite installs it (generated certificate, `webhook.url`) and
/// `serve` running with its files, also when the case fails.
struct Reinstall<'w> {
    world: &'w World,
    ns: String,
}

impl Drop for Reinstall<'_> {
    fn drop(&mut self) {
        let world = self.world;
        world.cluster.kubectl(&[
            "-n",
            RELEASE_NS,
            "delete",
            "secret",
            CERTS_SECRET,
            "--ignore-not-found",
        ]);
        world.helm_install(&[]);
        world.fetch_release_files();
        {
            let mut webhook = world.webhook();
            if !webhook.running() {
                webhook.start(&world.cluster.kubeconfig);
            }
        }
        // The next case starts only once the apiserver trusts the certificate serve has.
        let pod = create_until_admitted(world, &self.ns, "restored");
        assert_eq!(
            injected(&pod).as_deref(),
            Some("runtime-class,resources,otel")
        );
    }
}

pub fn quick_start_verification_commands_show_the_webhook_working(world: &World) {
    let cluster = &world.cluster;
    // `shop` (the namespace the example names) may be left Terminating by an earlier case: the
    // StatefulSet example's PVC keeps its kubernetes.io/pvc-protection finalizer, and this
    // control plane runs no controller that removes it. Do that controller's part first.
    let pvcs = cluster.kubectl(&["-n", "shop", "get", "pvc", "-o", "name"]);
    for pvc in pvcs.stdout.lines().filter(|l| !l.is_empty()) {
        cluster.kubectl(&[
            "-n",
            "shop",
            "patch",
            pvc,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
    // kubectl create namespace shop; kubectl label namespace shop wasm-admission.io/inject=enabled
    cluster.namespace("shop", true);
    let before = world.webhook().metrics();
    world.webhook().take_logs();

    let out = cluster
        .kubectl(&[
            "apply",
            "--dry-run=server",
            "-f",
            path(&root().join("examples/wasm/pod.yaml")),
        ])
        .expect_ok("apply --dry-run=server");
    assert_eq!(out, "pod/cart created (server dry run)\n");
    let out = cluster
        .kubectl(&[
            "apply",
            "--dry-run=server",
            "-f",
            path(&root().join("examples/wasm/pod.yaml")),
            "-o",
            r#"jsonpath={.spec.runtimeClassName} {.spec.containers[0].resources.limits.memory} {.metadata.annotations.wasm-admission\.io/injected}{"\n"}"#,
        ])
        .expect_ok("apply --dry-run=server -o jsonpath");
    assert_eq!(out, "wasm 128Mi runtime-class,resources,otel\n");
    assert!(
        cluster
            .kubectl(&["-n", "shop", "get", "pod", "cart"])
            .stderr
            .contains("NotFound"),
        "a dry run stores nothing"
    );

    // kubectl get mutatingwebhookconfiguration,validatingwebhookconfiguration -l app.kubernetes.io/name=wasm-admission
    let listed = cluster
        .kubectl(&["get", CONFIGS, "-l", LABEL])
        .expect_ok("get webhook configurations");
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{kind}.admissionregistration.k8s.io/{RELEASE} ")))
            .unwrap_or_else(|| panic!("{kind} not listed:\n{listed}"));
        assert_eq!(
            line.split_whitespace().nth(1),
            Some("1"),
            "WEBHOOKS column: {line}"
        );
    }

    // The metrics: two mutate reviews of the Pod (one per dry run) answered "mutated".
    let after = world.webhook().metrics();
    let labels = [
        ("endpoint", "mutate"),
        ("kind", "Pod"),
        ("outcome", "mutated"),
    ];
    let reviews = metric_sum(&after, "wasm_admission_reviews_total", &labels)
        - metric_sum(&before, "wasm_admission_reviews_total", &labels);
    assert!(reviews >= 2.0, "mutated Pod reviews counted: {reviews}");
    // The logs: one line per review, naming the object.
    let logs = world.webhook().take_logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("\"cart\"") && l.contains("\"shop\"") && l.contains("mutated")),
        "no log line for shop/cart: {logs:#?}"
    );
}

pub fn uninstall_with_the_webhook_down_leaves_no_configuration_and_a_reinstall_works(
    world: &World,
) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("day-two-uninstall", true);
    let reinstall = Reinstall {
        world,
        ns: ns.clone(),
    };
    world.webhook().stop();

    // 1. The release's record is lost (deleted helm Secrets, a failed migration) while the
    // webhook is down: helm cannot uninstall, the configurations stay and block the namespace.
    cluster
        .kubectl(&[
            "-n",
            RELEASE_NS,
            "delete",
            "secret",
            "-l",
            &format!("owner=helm,name={RELEASE}"),
        ])
        .expect_ok("delete the release record");
    let status = world.helm(&["status", RELEASE, "-n", RELEASE_NS]);
    assert!(!status.ok, "the release is still known: {}", status.stdout);
    let out = cluster.kubectl_in(&["create", "-f", "-"], &wasm_pod("blocked", &ns));
    assert!(
        !out.ok && out.stderr.contains("failed calling webhook"),
        "{}",
        out.stderr
    );
    // The recovery command of docs/operations.md.
    cluster
        .kubectl(&["delete", CONFIGS, "-l", LABEL])
        .expect_ok("kubectl delete webhook configurations");
    assert_eq!(labelled_configs(world), "");
    let pod = create_until_admitted(world, &ns, "recovered");
    assert_eq!(injected(&pod), None, "no webhook, no mutation");

    // 2. Re-install over what is left (Secret, ConfigMap, RBAC): helm adopts the objects that
    // carry its release annotations, and the kept Secret keeps the certificate.
    let secret_before =
        cluster.json(&["-n", RELEASE_NS, "get", "secret", &format!("{RELEASE}-tls")]);
    world.helm_install(&[]);
    let configs = labelled_configs(world);
    assert_eq!(configs.lines().count(), 2, "{configs}");
    let config = cluster.json(&["get", "mutatingwebhookconfiguration", RELEASE]);
    assert_eq!(
        config["webhooks"][0]["clientConfig"]["caBundle"],
        secret_before["data"]["ca.crt"]
    );

    // 3. helm uninstall with the webhook still down: nothing is left that calls it, and the
    // opted-in namespace creates again.
    world
        .helm(&["uninstall", RELEASE, "-n", RELEASE_NS])
        .expect_ok("helm uninstall");
    assert_eq!(
        labelled_configs(world),
        "",
        "helm uninstall left a configuration"
    );
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let out = cluster.kubectl(&["get", kind, RELEASE]);
        assert!(out.stderr.contains("NotFound"), "{kind}: {}", out.stdout);
    }
    let pod = create_until_admitted(world, &ns, "uninstalled");
    assert_eq!(injected(&pod), None);

    // 4. Re-install and start serve: Wasm pods are mutated again (the Reinstall guard's check).
    drop(reinstall);
    let secret_after =
        cluster.json(&["-n", RELEASE_NS, "get", "secret", &format!("{RELEASE}-tls")]);
    assert_ne!(
        secret_before["data"]["ca.crt"], secret_after["data"]["ca.crt"],
        "helm uninstall removed the generated certificate; the re-install made a new one"
    );
}

/// Sets the flag when dropped, also while unwinding.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Reads the Secret from the API and puts its pair where `serve` reads it, as the kubelet does
/// for a mounted Secret; waits until `serve` serves it.
fn kubelet_sync(world: &World, secret: &str) {
    let data = world
        .cluster
        .json(&["-n", RELEASE_NS, "get", "secret", secret])["data"]
        .clone();
    let decode = |key: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(data[key].as_str().expect("secret key"))
            .expect("base64")
    };
    let mut webhook = world.webhook();
    webhook.take_logs();
    webhook.install_pair(&decode("tls.crt"), &decode("tls.key"));
    eventually(
        Duration::from_secs(10),
        "serve to load the new pair",
        || {
            webhook
                .take_logs()
                .iter()
                .any(|l| l.contains("serving a new certificate"))
        },
    );
}

/// `kubectl create secret tls ... --dry-run=client -o yaml | kubectl apply -f -`.
fn apply_tls_secret(world: &World, dir: &Path) {
    let cert = format!("--cert={}", path(&dir.join("tls.crt")));
    let key = format!("--key={}", path(&dir.join("tls.key")));
    let yaml = world
        .cluster
        .kubectl(&[
            "-n",
            RELEASE_NS,
            "create",
            "secret",
            "tls",
            CERTS_SECRET,
            &cert,
            &key,
            "--dry-run=client",
            "-o",
            "yaml",
        ])
        .expect_ok("create secret --dry-run=client");
    world
        .cluster
        .kubectl_in(&["apply", "-f", "-"], &yaml)
        .expect_ok("apply the Secret");
}

/// `helm upgrade ... --reset-then-reuse-values --set certificates.caBundle=B64`, then the informer's delay.
fn set_ca_bundle(world: &World, b64: &str) {
    world
        .helm(&[
            "upgrade",
            RELEASE,
            &chart(),
            "-n",
            RELEASE_NS,
            "--reset-then-reuse-values",
            "--set",
            &format!("certificates.caBundle={b64}"),
        ])
        .expect_ok("helm upgrade --set certificates.caBundle");
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let config = world.cluster.json(&["get", kind, RELEASE]);
        assert_eq!(
            config["webhooks"][0]["clientConfig"]["caBundle"], b64,
            "{kind}"
        );
    }
    // The apiserver reads webhook configurations through an informer.
    std::thread::sleep(Duration::from_secs(3));
}

pub fn renewal_and_ca_rollover_with_the_certs_command_fail_no_create(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("day-two-renewal", true);
    let reinstall = Reinstall {
        world,
        ns: ns.clone(),
    };
    let tmp = tempfile::tempdir().expect("dir");
    let v1 = tmp.path().join("v1");
    let v2 = tmp.path().join("v2");
    // `--extra-name 127.0.0.1`: the host of webhook.url (in a cluster, the Service's names do).
    let certs = |extra: &[&str]| {
        let mut args = vec![
            "certs",
            "--service",
            RELEASE,
            "--namespace",
            RELEASE_NS,
            "--extra-name",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        wasm_admission(&args)
    };

    create_until_admitted(world, &ns, "before");

    let done = AtomicBool::new(false);
    let (created, failures) = std::thread::scope(|scope| {
        let creator = scope.spawn(|| {
            let (mut created, mut failures) = (0, Vec::new());
            while !done.load(Ordering::Relaxed) {
                let out = cluster.kubectl_in(
                    &["create", "-f", "-"],
                    &wasm_pod(&format!("r-{created}"), &ns),
                );
                if !out.ok {
                    failures.push(out.stderr);
                }
                created += 1;
            }
            (created, failures)
        });
        // A failed step below must stop the creator too, or the scope would wait for it for ever.
        let _stop = StopOnDrop(&done);
        std::thread::sleep(Duration::from_secs(2));

        // From the chart's generated certificate to `certs` (the "existing Secret" mode): a CA
        // whose key is kept, trusted beside the chart's CA while the pods move to the new Secret.
        let v1_bundle = certs(&["--out-dir", path(&v1)]);
        apply_tls_secret(world, &v1);
        let chart_ca = tmp.path().join("chart-ca.crt");
        let chart_ca_b64 = cluster
            .kubectl(&[
                "-n",
                RELEASE_NS,
                "get",
                "secret",
                &format!("{RELEASE}-tls"),
                "-o",
                r"jsonpath={.data.ca\.crt}",
            ])
            .expect_ok("the chart's CA");
        std::fs::write(
            &chart_ca,
            base64::engine::general_purpose::STANDARD
                .decode(chart_ca_b64.trim())
                .expect("base64"),
        )
        .expect("chart-ca.crt");
        let both = wasm_admission(&["certs", "bundle", path(&v1.join("ca.crt")), path(&chart_ca)]);
        world
            .helm(&[
                "upgrade",
                RELEASE,
                &chart(),
                "-n",
                RELEASE_NS,
                "--reset-then-reuse-values",
                "--set",
                &format!("certificates.existingSecret={CERTS_SECRET}"),
                "--set",
                &format!("certificates.caBundle={both}"),
            ])
            .expect_ok("helm upgrade to the existing Secret");
        std::thread::sleep(Duration::from_secs(3));
        kubelet_sync(world, CERTS_SECRET);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            wasm_admission(&["certs", "bundle", path(&v1.join("ca.crt"))]),
            v1_bundle,
            "certs bundle of one CA is what certs printed"
        );
        set_ca_bundle(world, &v1_bundle);

        // Renewal with the same CA: only the Secret changes.
        let renewed = certs(&[
            "--out-dir",
            path(&v1),
            "--force",
            "--ca-cert",
            path(&v1.join("ca.crt")),
            "--ca-key",
            path(&v1.join("ca.key")),
        ]);
        assert_eq!(renewed, v1_bundle, "a renewal keeps the caBundle");
        apply_tls_secret(world, &v1);
        kubelet_sync(world, CERTS_SECRET);
        std::thread::sleep(Duration::from_secs(2));

        // Rollover to a new CA: both CAs in the caBundle, then the Secret, then the new CA alone.
        certs(&["--out-dir", path(&v2)]);
        let both = wasm_admission(&[
            "certs",
            "bundle",
            path(&v2.join("ca.crt")),
            path(&v1.join("ca.crt")),
        ]);
        set_ca_bundle(world, &both);
        apply_tls_secret(world, &v2);
        kubelet_sync(world, CERTS_SECRET);
        std::thread::sleep(Duration::from_secs(2));
        let new_only = wasm_admission(&["certs", "bundle", path(&v2.join("ca.crt"))]);
        set_ca_bundle(world, &new_only);
        std::thread::sleep(Duration::from_secs(2));

        done.store(true, Ordering::Relaxed);
        creator.join().expect("creator thread")
    });
    println!(
        "    {created} creates during the move to certs, a renewal and a CA rollover, {} failed",
        failures.len()
    );
    assert!(created >= 10, "only {created} creates");
    assert!(failures.is_empty(), "failed creates: {failures:#?}");
    let stored = cluster.json(&["-n", &ns, "get", "pod", "r-0"]);
    assert_eq!(
        injected(&stored).as_deref(),
        Some("runtime-class,resources,otel")
    );
    drop(reinstall);
}
