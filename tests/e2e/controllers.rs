//! Pods made by the controller manager (generateName, ownerReferences) pass the webhook too
//! (behaviour.md §2, §4.3, §6 `mutateTemplates`).

use std::time::Duration;

use serde_json::Value;

use crate::admission::{example_in, injected};
use crate::support::{World, eventually};

/// The Pods of a Deployment, once the controllers made `count` of them.
fn pods_of(world: &World, ns: &str, selector: &str, count: usize) -> Vec<Value> {
    let mut pods = Vec::new();
    eventually(Duration::from_secs(60), "the Deployment's Pods", || {
        pods = world
            .cluster
            .json(&["-n", ns, "get", "pods", "-l", selector])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        pods.len() >= count
    });
    pods
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn pods_of_a_mutated_template_come_out_identical_to_it(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("templates-mutated", true);
    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &example_in("examples/wasm/deployment-wasmedge.yaml", &ns),
        )
        .expect_ok("create Deployment");
    let deployment = cluster.json(&["-n", &ns, "get", "deployment", "inventory"]);
    let template = &deployment["spec"]["template"];
    assert_eq!(
        injected(&deployment).as_deref(),
        Some("runtime-class,resources,otel")
    );
    let pods = pods_of(world, &ns, "app.kubernetes.io/name=inventory", 1);
    for pod in &pods {
        assert!(pod["metadata"]["generateName"].is_string(), "{pod}");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        // The second look (at the Pod) found nothing left to do.
        assert_eq!(
            pod["metadata"]["annotations"]["wasm-admission.io/injected"],
            template["metadata"]["annotations"]["wasm-admission.io/injected"]
        );
        assert_eq!(
            pod["spec"]["runtimeClassName"],
            template["spec"]["runtimeClassName"]
        );
        for (p, t) in pod["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .zip(
                template["spec"]["containers"]
                    .as_array()
                    .expect("containers"),
            )
        {
            assert_eq!(p["env"], t["env"], "env of {}", p["name"]);
            assert_eq!(p["resources"], t["resources"], "resources of {}", p["name"]);
        }
    }
}

pub fn pods_are_mutated_when_templates_are_not(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("templates-kept", true);
    let config = std::fs::read_to_string(world.webhook().config_path()).expect("config");
    let restore = Restore {
        world,
        config: config.clone(),
    };
    assert!(config.contains("mutateTemplates: true"), "{config}");
    world.reconfigure(&config.replace("mutateTemplates: true", "mutateTemplates: false"));

    cluster
        .kubectl_in(
            &["create", "-f", "-"],
            &example_in("examples/wasm/deployment-wasmedge.yaml", &ns),
        )
        .expect_ok("create Deployment");
    let deployment = cluster.json(&["-n", &ns, "get", "deployment", "inventory"]);
    assert_eq!(injected(&deployment), None, "the template was mutated");
    assert!(
        deployment["spec"]["template"]["spec"]
            .get("runtimeClassName")
            .is_none()
    );

    let pods = pods_of(world, &ns, "app.kubernetes.io/name=inventory", 1);
    for pod in &pods {
        assert_eq!(pod["spec"]["runtimeClassName"], "wasmedge", "{pod}");
        assert_eq!(
            injected(pod).as_deref(),
            Some("runtime-class,resources,otel")
        );
        let app = &pod["spec"]["containers"][0];
        assert!(env_names(app).contains(&"OTEL_RESOURCE_ATTRIBUTES".to_string()));
        // From the pod template's label app.kubernetes.io/name.
        let service = app["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == "OTEL_SERVICE_NAME")
            .expect("OTEL_SERVICE_NAME");
        assert_eq!(service["value"], "inventory");
        assert!(app["resources"]["limits"]["cpu"].is_string(), "{app}");
    }
    drop(restore);
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
