//! RuntimeClass awareness against the real API (SPEC §7): `serve` watches RuntimeClasses and
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
