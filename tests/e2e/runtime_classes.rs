//! RuntimeClass awareness against the real API (behaviour.md §7): `serve` watches RuntimeClasses and
//! warns when the class it injects does not exist, and learns of a new class without a restart.

use std::time::Duration;

use crate::admission::deployment_naming_class;
use crate::support::{World, eventually, root};

/// Puts the RuntimeClasses back, also when the case fails.
struct Restore<'w>(&'w World);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.0.apply_runtime_classes();
    }
}

pub fn missing_runtime_class_warning_appears_and_disappears_without_restart(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("runtime-classes", true);
    let classes = root().join("deploy/runtimeclasses");
    let classes = classes.to_str().expect("utf-8 path");
    let deployment = deployment_naming_class("probe", &ns, "wasm");
    let warns_missing = || {
        let out = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &deployment);
        assert!(out.ok, "{}", out.stderr);
        out.warnings().iter().any(|w| {
            w == "wasm-admission: RuntimeClass \"wasm\" does not exist in this cluster; its pods will not start"
        })
    };
    assert!(!warns_missing(), "warned while the class exists");

    let restore = Restore(world);
    cluster
        .kubectl(&["delete", "-k", classes, "--ignore-not-found"])
        .expect_ok("delete RuntimeClasses");
    eventually(
        Duration::from_secs(20),
        "the missing-class warning",
        warns_missing,
    );

    drop(restore);
    eventually(Duration::from_secs(20), "the warning to go", || {
        !warns_missing()
    });
}

/// behaviour.md §3 rule 3b through the cluster: a class with a name of its own whose `handler` runs Wasm
/// (`my-spin` with handler `spin`) makes a pod Wasm once `serve`'s watch has seen it; `check`,
/// with no cluster, knows only the configured names and leaves the same Deployment alone.
pub fn a_class_whose_handler_runs_wasm_makes_its_pods_wasm(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("handler", true);
    let deployment = format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"greeter","namespace":"{ns}"}},"spec":{{"replicas":0,"selector":{{"matchLabels":{{"app":"greeter"}}}},"template":{{"metadata":{{"labels":{{"app":"greeter"}}}},"spec":{{"runtimeClassName":"my-spin","containers":[{{"name":"app","image":"ghcr.io/acme/greeter:1"}}]}}}}}}}}"#
    );
    let injected = || {
        let out = cluster
            .kubectl_in(
                &["create", "--dry-run=server", "-o", "json", "-f", "-"],
                &deployment,
            )
            .expect_ok("dry run");
        let object: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        crate::admission::injected(&object)
    };
    assert_eq!(injected(), None, "Wasm before the class exists");

    struct Delete<'w>(&'w World);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            self.0
                .cluster
                .kubectl(&["delete", "runtimeclass", "my-spin", "--ignore-not-found"]);
        }
    }
    let _delete = Delete(world);
    cluster
        .kubectl_in(
            &["apply", "-f", "-"],
            r#"{"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{"name":"my-spin"},"handler":"spin"}"#,
        )
        .expect_ok("create RuntimeClass my-spin");
    eventually(
        Duration::from_secs(20),
        "the class to make the pod Wasm",
        || injected().as_deref() == Some("resources,otel"),
    );

    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), &deployment).expect("write");
    let checked = world.check_json(file.path());
    assert_eq!(
        checked[0]["patch"],
        serde_json::json!([]),
        "check: {}",
        checked[0]
    );
}

/// Issue 31, item 1: a bundle that ships its RuntimeClass beside its workloads (a class under a
/// name no default list knows, with a Wasm handler and a node selector) gets the same verdicts,
/// patches and denial messages from `check` (the class read from the bundle, and with `--cluster`
/// from the cluster) as from `serve` through the real apiserver once the class is applied; with
/// `--cluster` also the same warnings, the node warning included.
pub fn a_bundle_with_its_classes_gets_the_same_answers_from_check_and_serve(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("bundle", true);
    let class = r#"{"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{"name":"acme-spin"},"handler":"spin","scheduling":{"nodeSelector":{"example.com/acme-spin":"true"}}}"#;
    let workloads = [
        format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"greeter","namespace":"{ns}"}},"spec":{{"replicas":0,"selector":{{"matchLabels":{{"app":"greeter"}}}},"template":{{"metadata":{{"labels":{{"app":"greeter"}}}},"spec":{{"runtimeClassName":"acme-spin","containers":[{{"name":"app","image":"ghcr.io/acme/greeter:1"}}]}}}}}}}}"#
        ),
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"plain","namespace":"{ns}"}},"spec":{{"runtimeClassName":"acme-spin","containers":[{{"name":"app","image":"ghcr.io/acme/greeter:1"}},{{"name":"proxy","image":"envoyproxy/envoy:v1.30"}}]}}}}"#
        ),
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"privileged","namespace":"{ns}"}},"spec":{{"runtimeClassName":"acme-spin","containers":[{{"name":"app","image":"ghcr.io/acme/greeter:1","securityContext":{{"privileged":true}}}}]}}}}"#
        ),
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"annotated","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/greeter:1"}}]}}}}"#
        ),
    ];
    // The class the webhook injects into the annotated Pod, in the bundle and in the cluster
    // alike: both doors then add its scheduling to that Pod (behaviour.md §4.1).
    world.apply_runtime_classes();
    let default_class = std::fs::read_to_string(root().join("deploy/runtimeclasses/wasm.yaml"))
        .expect("deploy/runtimeclasses/wasm.yaml");
    let dir = tempfile::tempdir().expect("folder");
    let bundle = dir.path().join("bundle.yaml");
    let only_workloads = dir.path().join("workloads.yaml");
    std::fs::write(
        &bundle,
        [class.to_string(), default_class]
            .into_iter()
            .chain(workloads.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n---\n"),
    )
    .expect("write bundle");
    std::fs::write(&only_workloads, workloads.join("\n---\n")).expect("write workloads");

    // check before the class exists anywhere but in the bundle.
    let from_bundle = world.check_json_args(&[], &bundle);
    assert_eq!(from_bundle.len(), 6, "two classes and four workloads");
    assert!(
        from_bundle[2]["patch"] != serde_json::json!([]),
        "the Deployment is Wasm through the bundle's class: {}",
        from_bundle[2]
    );

    struct Delete<'w>(&'w World);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            self.0
                .cluster
                .kubectl(&["delete", "runtimeclass", "acme-spin", "--ignore-not-found"]);
        }
    }
    let _delete = Delete(world);
    cluster
        .kubectl_in(&["apply", "-f", "-"], class)
        .expect_ok("create RuntimeClass acme-spin");
    let served = |doc: &str| {
        cluster.kubectl_in(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            doc,
        )
    };
    eventually(
        Duration::from_secs(20),
        "serve's watch to see the class",
        || {
            let out = served(&workloads[0]);
            out.ok
                && crate::admission::injected(&serde_json::from_str(&out.stdout).expect("JSON"))
                    .is_some()
        },
    );
    let from_cluster = world.check_json_args(&["--cluster"], &only_workloads);

    for (i, doc) in workloads.iter().enumerate() {
        let (bundled, clustered) = (&from_bundle[i + 2], &from_cluster[i]);
        let name = clustered["name"].as_str().expect("name");
        for field in ["allowed", "message", "patch"] {
            assert_eq!(
                bundled[field], clustered[field],
                "{name}: {field} from the bundle's class and from --cluster"
            );
        }
        let out = served(doc);
        if clustered["allowed"] == false {
            assert!(!out.ok, "{name}: serve admitted what check denies");
            let message = clustered["message"].as_str().expect("message");
            assert!(
                out.stderr.contains(&format!(
                    "admission webhook \"mutate.wasm-admission.io\" denied the request: {message}"
                )),
                "{name}: kubectl said {:?}, check said {message:?}",
                out.stderr
            );
            continue;
        }
        assert!(out.ok, "{name}: {}", out.stderr);
        let stored: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        if let Err(diff) = crate::support::contains(&stored, &clustered["object"], "") {
            panic!("{name}: serve's object differs from check's: {diff}");
        }
        assert_eq!(
            crate::admission::injected(&stored),
            crate::admission::injected(&clustered["object"]),
            "{name}: the injected annotation"
        );
        let mut served_warnings: Vec<String> = out
            .warnings()
            .into_iter()
            .filter(|w| w.starts_with("wasm-admission: "))
            .collect();
        let mut checked: Vec<String> = clustered["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .map(|w| w.as_str().expect("warning").to_string())
            .collect();
        served_warnings.sort();
        checked.sort();
        assert_eq!(
            checked, served_warnings,
            "{name}: check --cluster and serve warn alike"
        );
        for warning in bundled["warnings"].as_array().expect("warnings") {
            let w = warning.as_str().expect("warning").to_string();
            assert!(
                served_warnings.contains(&w),
                "{name}: check (bundle) warns {w:?}, serve does not"
            );
        }
    }
    println!("    4 workloads compared: check (bundle), check --cluster and serve agree");
}
