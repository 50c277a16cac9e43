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
