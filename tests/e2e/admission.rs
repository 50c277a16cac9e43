//! What a person applying objects sees: the three doors (serve through the apiserver, check, and
//! the server-side dry run) agree on every example, and warnings, denials and scope reach kubectl
//! as behaviour.md §5 and §6 describe them.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{World, contains, root};

/// Every manifest under examples/ (the AdmissionReview bodies of examples/review/ are not
/// manifests).
fn example_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("examples folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "examples found: {files:?}");
    files
}

/// An example's text moved into namespace `ns` (the examples all name `shop`).
pub fn example_in(path: &str, ns: &str) -> String {
    let text = std::fs::read_to_string(root().join(path)).expect("example");
    text.replace("namespace: shop", &format!("namespace: {ns}"))
}

/// The `wasm-admission.io/injected` annotation of a Pod or of a workload's pod template.
pub fn injected(object: &Value) -> Option<String> {
    let meta = match object["kind"].as_str() {
        Some("Pod") => &object["metadata"],
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
        _ => &object["spec"]["template"]["metadata"],
    };
    meta["annotations"]["wasm-admission.io/injected"]
        .as_str()
        .map(str::to_string)
}

fn kind_resource(kind: &str) -> String {
    kind.to_lowercase()
}

/// A Wasm Deployment whose pod template asks for RuntimeClass `class`.
pub fn deployment_naming_class(name: &str, ns: &str, class: &str) -> String {
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}","namespace":"{ns}"}},"spec":{{"replicas":0,"selector":{{"matchLabels":{{"app":"{name}"}}}},"template":{{"metadata":{{"labels":{{"app":"{name}"}},"annotations":{{"wasm-admission.io/runtime-class":"{class}"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/app:1"}}]}}}}}}}}"#
    )
}

pub fn every_example_is_stored_as_check_predicts(world: &World) {
    let cluster = &world.cluster;
    cluster.namespace("shop", true);
    let mut compared = 0;
    for file in example_files() {
        let predicted = world.check_json(&file);
        let created = cluster.kubectl(&["create", "-f", file.to_str().unwrap()]);
        let denied: Vec<&Value> = predicted.iter().filter(|d| d["allowed"] == false).collect();
        if let Some(denial) = denied.first() {
            let message = denial["message"].as_str().expect("message");
            assert_eq!(
                created.code,
                Some(1),
                "{}: {}",
                file.display(),
                created.stderr
            );
            assert!(
                created.stderr.contains(&format!(
                    "admission webhook \"mutate.wasm-admission.io\" denied the request: {message}"
                )),
                "{}: kubectl said {:?}, check said {message:?}",
                file.display(),
                created.stderr
            );
            compared += 1;
            continue;
        }
        assert!(created.ok, "{}: {}", file.display(), created.stderr);
        let warnings = created.warnings();
        for doc in &predicted {
            for warning in doc["warnings"].as_array().expect("warnings") {
                let w = warning.as_str().expect("warning");
                assert!(
                    warnings.iter().any(|k| k == w),
                    "{}: check warns {w:?}; kubectl printed {warnings:?}",
                    file.display()
                );
            }
            let (kind, name, ns) = (
                doc["kind"].as_str().expect("kind"),
                doc["name"].as_str().expect("name"),
                doc["namespace"].as_str().expect("namespace"),
            );
            let stored = if ns.is_empty() {
                cluster.json(&["get", &kind_resource(kind), name])
            } else {
                cluster.json(&["-n", ns, "get", &kind_resource(kind), name])
            };
            if let Err(diff) = contains(&stored, &doc["object"], "") {
                panic!(
                    "{}: {kind} {ns}/{name} stored differs from check: {diff}",
                    file.display()
                );
            }
            assert_eq!(
                injected(&stored),
                injected(&doc["object"]),
                "{}: {kind} {ns}/{name}: the injected annotation",
                file.display()
            );
            compared += 1;
        }
    }
    println!("    {compared} documents compared with check -o json");
    // The CronJob would go on creating Jobs (and calls to the webhook) for the rest of the run.
    cluster.kubectl(&["delete", "namespace", "shop", "--wait=false"]);
}

pub fn server_dry_run_returns_the_mutated_object_and_stores_nothing(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("dry-run", true);
    let manifest = example_in("examples/wasm/deployment-spin.yaml", &ns);
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), &manifest).expect("write");
    let predicted = world.check_json(file.path());
    let out = cluster
        .kubectl_in(
            &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
            &manifest,
        )
        .expect_ok("apply --dry-run=server");
    let returned: Value = serde_json::from_str(&out).expect("dry-run JSON");
    if let Err(diff) = contains(&returned, &predicted[0]["object"], "") {
        panic!("the dry run's object differs from check's: {diff}");
    }
    assert_eq!(
        injected(&returned).as_deref(),
        Some("runtime-class,resources,otel")
    );
    let get = cluster.kubectl(&["-n", &ns, "get", "deployment", "hello-spin"]);
    assert!(
        !get.ok && get.stderr.contains("NotFound"),
        "stored: {}",
        get.stdout
    );
}

pub fn warnings_and_denials_reach_kubectl_in_the_webhooks_words(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("words", true);
    // A class that exists nowhere: serve's RuntimeClass watch warns. (A bare Pod naming it would
    // be refused by kube-apiserver's own RuntimeClass admission; a Deployment is stored, and its
    // Pods would fail later, which is what the warning is for.)
    let deployment = deployment_naming_class("lost", &ns, "no-such-class");
    let out = cluster.kubectl_in(&["create", "-f", "-"], &deployment);
    assert!(out.ok, "{}", out.stderr);
    let warnings = out.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("wasm-admission: ") && w.contains("no-such-class")),
        "kubectl printed {warnings:?}"
    );
    assert!(warnings.iter().all(|w| w.len() <= 120), "{warnings:?}");

    let denied = example_in("examples/denied/privileged-wasm-pod.yaml", &ns);
    let out = cluster.kubectl_in(&["create", "-f", "-"], &denied);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let expected = format!(
        "admission webhook \"mutate.wasm-admission.io\" denied the request: wasm-admission: Wasm pod \"{ns}/debug-wasm\" is not allowed: container \"app\": securityContext.privileged=true; spec.hostNetwork=true"
    );
    assert!(
        out.stderr.contains(&expected),
        "kubectl said {:?}",
        out.stderr
    );
}

pub fn unlabelled_namespaces_the_skip_label_and_kube_system_are_untouched(world: &World) {
    let cluster = &world.cluster;
    let plain = cluster.namespace("not-opted-in", false);
    let opted = cluster.namespace("opted-in-skip", true);

    let pod = example_in("examples/wasm/pod.yaml", &plain);
    cluster
        .kubectl_in(&["create", "-f", "-"], &pod)
        .expect_ok("create in an unlabelled namespace");
    let stored = cluster.json(&["-n", &plain, "get", "pod", "cart"]);
    assert!(stored["spec"].get("runtimeClassName").is_none(), "{stored}");
    assert_eq!(injected(&stored), None);

    let skipped = example_in("examples/opt-out/skip-label.yaml", &opted);
    cluster
        .kubectl_in(&["create", "-f", "-"], &skipped)
        .expect_ok("create with the skip label");
    for item in cluster.json(&["-n", &opted, "get", "all"])["items"]
        .as_array()
        .expect("items")
    {
        assert_eq!(injected(item), None, "skip-labelled object mutated: {item}");
    }

    // kube-system opted in by its label is still excluded: a privileged Wasm pod is admitted
    // unchanged there.
    cluster
        .kubectl(&[
            "label",
            "namespace",
            "kube-system",
            super::support::OPT_IN,
            "--overwrite",
        ])
        .expect_ok("label kube-system");
    let privileged = example_in("examples/denied/privileged-wasm-pod.yaml", "kube-system");
    let out = cluster.kubectl_in(&["create", "-f", "-"], &privileged);
    cluster.kubectl(&[
        "label",
        "namespace",
        "kube-system",
        "wasm-admission.io/inject-",
    ]);
    assert!(out.ok, "kube-system: {}", out.stderr);
    let stored = cluster.json(&["-n", "kube-system", "get", "pod", "debug-wasm"]);
    cluster.kubectl(&[
        "-n",
        "kube-system",
        "delete",
        "pod",
        "debug-wasm",
        "--wait=false",
    ]);
    assert_eq!(injected(&stored), None);
    assert!(stored["spec"].get("runtimeClassName").is_none(), "{stored}");
}
