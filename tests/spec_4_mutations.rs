//! behaviour.md §4: the mutations of Wasm pod specs: only what is missing, never dropping a field.

mod common;

use common::*;
use serde_json::{Value, json};
use wasm_admission::core::detection::ClusterRuntimeClasses;
use wasm_admission::core::engine::Endpoint;

fn container(object: &Value, list: &str, i: usize) -> Value {
    object
        .pointer(&format!("{}/{list}/{i}", spec_ptr(object)))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn s4_1_runtime_class_is_added_when_absent_from_configuration() {
    let engine = engine_with("runtimeClassName: wasmedge-v2\n");
    let out = admit(&engine, &fixture("pod-wasm"));
    assert_eq!(out.object["spec"]["runtimeClassName"], "wasmedge-v2");
}

#[test]
fn s4_1_present_runtime_class_is_kept_with_a_warning() {
    let engine = engine();
    let mut pod = fixture("pod-wasm");
    pod["spec"]["runtimeClassName"] = json!("kata");
    let out = admit(&engine, &pod);
    assert_eq!(out.object["spec"]["runtimeClassName"], "kata");
    assert!(
        out.decision
            .warnings
            .iter()
            .any(|w| w.contains("\"kata\" kept")),
        "{:?}",
        out.decision.warnings
    );
    let injected = out.injected("/metadata").unwrap();
    assert!(!injected.contains("runtime-class"), "{injected}");
    // The same class as wanted: no warning.
    pod["spec"]["runtimeClassName"] = json!("wasm");
    assert!(admit(&engine, &pod).decision.warnings.is_empty());
}

fn kept_warnings(out: &Admitted) -> Vec<&String> {
    out.decision
        .warnings
        .iter()
        .filter(|w| w.contains(" kept"))
        .collect()
}

#[test]
fn s4_1_a_class_that_runs_wasm_is_kept_without_a_warning() {
    let engine = engine();
    // Wasm by annotation (rule 2), naming a class of detection.runtimeClasses.
    let mut pod = fixture("pod-wasm");
    for class in ["wasmtime-spin-v2", "wasmedge", "spin"] {
        pod["spec"]["runtimeClassName"] = json!(class);
        let out = admit(&engine, &pod);
        assert_eq!(out.object["spec"]["runtimeClassName"], class);
        assert!(
            kept_warnings(&out).is_empty(),
            "{class}: {:?}",
            out.decision.warnings
        );
    }
    // A class known only from the cluster, by its handler: quiet with the watch's facts, and
    // warned about without them (`check`).
    pod["spec"]["runtimeClassName"] = json!("my-spin");
    let cluster = cluster_classes(&[("my-spin", "spin"), ("wasm", "spin")]);
    let out = admit_in_cluster(&engine, &pod, &cluster);
    assert!(
        kept_warnings(&out).is_empty(),
        "{:?}",
        out.decision.warnings
    );
    assert_eq!(kept_warnings(&admit(&engine, &pod)).len(), 1);
    // A class that does not run Wasm still gets the warning, with or without the cluster.
    pod["spec"]["runtimeClassName"] = json!("kata");
    let cluster = cluster_classes(&[("kata", "kata-qemu"), ("wasm", "spin")]);
    assert_eq!(
        kept_warnings(&admit_in_cluster(&engine, &pod, &cluster)).len(),
        1
    );
}

#[test]
fn s4_1_variant_runtime_class_is_kept_without_a_warning_only_for_the_variant_annotation() {
    let engine = engine();
    let job = example_workload("wasm/wasmedge-crun-job.yaml");
    let out = admit(&engine, &job);
    assert_eq!(
        out.object["spec"]["template"]["spec"]["runtimeClassName"],
        "crun"
    );
    assert!(
        out.decision.warnings.is_empty(),
        "{:?}",
        out.decision.warnings
    );
    // The same pod marked Wasm by annotation instead: crun is not known to run it as Wasm.
    let mut marked = job.clone();
    remove(
        &mut marked,
        "/spec/template/metadata/annotations/module.wasm.image~1variant",
    );
    set(
        &mut marked,
        "/spec/template/metadata/annotations/wasm-admission.io~1wasm",
        json!("true"),
    );
    let w = kept_warnings(&admit(&engine, &marked)).len();
    assert_eq!(w, 1, "rule 2 with crun warns");
    // Configured classes replace the default.
    let engine = engine_with("detection:\n  variantRuntimeClasses: [crun-wasm]\n");
    assert_eq!(
        kept_warnings(&admit(&engine, &job)).len(),
        1,
        "crun no longer listed"
    );
    let mut other = job.clone();
    set(
        &mut other,
        "/spec/template/spec/runtimeClassName",
        json!("crun-wasm"),
    );
    assert!(kept_warnings(&admit(&engine, &other)).is_empty());
}

#[test]
fn s4_2_defaults_fill_empty_resources_of_every_container_and_init_container() {
    let engine = engine();
    let pod = fixture("pod-wasm-sidecar");
    let out = admit(&engine, &pod);
    let expected = json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}});
    for (list, i) in [
        ("initContainers", 0),
        ("initContainers", 1),
        ("containers", 1),
    ] {
        let c = container(&out.object, list, i);
        assert_eq!(
            c["resources"]["requests"], expected["requests"],
            "{list}[{i}]"
        );
        assert_eq!(c["resources"]["limits"], expected["limits"], "{list}[{i}]");
    }
    // `app` had cpu 200m as limit and request: kept; memory added.
    let app = container(&out.object, "containers", 0);
    assert_eq!(
        app["resources"]["limits"],
        json!({"cpu": "200m", "memory": "128Mi"})
    );
    assert_eq!(
        app["resources"]["requests"],
        json!({"cpu": "200m", "memory": "64Mi"})
    );
}

#[test]
fn s4_2_default_request_never_exceeds_the_containers_limit() {
    let engine = engine();
    let mut pod = fixture("pod-wasm");
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "0.1", "memory": "32Mi"}});
    let out = admit(&engine, &pod);
    let r = &out.object["spec"]["containers"][0]["resources"];
    assert_eq!(r["requests"], json!({"cpu": "0.1", "memory": "32Mi"}));
    assert_eq!(r["limits"], json!({"cpu": "0.1", "memory": "32Mi"}));
}

#[test]
fn s4_2_default_limit_is_not_added_below_the_containers_request() {
    let engine = engine();
    let mut pod = fixture("pod-wasm");
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "1", "memory": "128M"}});
    let out = admit(&engine, &pod);
    let r = &out.object["spec"]["containers"][0]["resources"];
    // 1 CPU > 500m: no cpu limit. 128M (decimal) < 128Mi: the memory limit fits and is added.
    assert_eq!(r["limits"], json!({"memory": "128Mi"}));
    assert_eq!(r["requests"], json!({"cpu": "1", "memory": "128M"}));
    // 129Mi > 128Mi: no memory limit.
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": "129Mi"}});
    let out = admit(&engine, &pod);
    assert_eq!(
        out.object["spec"]["containers"][0]["resources"]["limits"],
        json!({"cpu": "500m"})
    );
}

#[test]
fn s4_2_quantities_compare_by_value() {
    let engine = engine();
    let mut pod = fixture("pod-wasm");
    // 0.5 equals the default 500m limit: the request of 0.5 is not above the limit, so it is added.
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "0.5"}});
    let out = admit(&engine, &pod);
    assert_eq!(
        out.object["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "500m"
    );
}

#[test]
fn s4_2_resource_profiles_are_chosen_by_annotation() {
    let engine = engine();
    for (profile, req, lim) in [
        (
            "edge",
            json!({"cpu": "50m", "memory": "64Mi"}),
            json!({"cpu": "100m", "memory": "128Mi"}),
        ),
        (
            "serverless",
            json!({"cpu": "10m", "memory": "32Mi"}),
            json!({"cpu": "50m", "memory": "64Mi"}),
        ),
    ] {
        let mut d = fixture("deployment-wasm");
        set(
            &mut d,
            "/spec/template/metadata/annotations/wasm-admission.io~1resource-profile",
            json!(profile),
        );
        let out = admit(&engine, &d);
        let r = &out.object["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"], req, "{profile}");
        assert_eq!(r["limits"], lim, "{profile}");
    }
}

#[test]
fn s4_2_unknown_profile_is_denied_listing_the_known_names() {
    let engine = engine();
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/metadata/annotations/wasm-admission.io~1resource-profile",
        json!("egde"),
    );
    let out = admit(&engine, &d);
    assert!(!out.allowed());
    let m = out.message();
    assert!(
        m.contains("\"egde\"") && m.contains("edge, serverless"),
        "{m}"
    );
    assert_eq!(out.response["response"]["status"]["code"], 403);
}

#[test]
fn s4_2_empty_default_map_turns_that_default_off() {
    let engine = engine_with("resources:\n  limits: {}\n");
    let out = admit(&engine, &fixture("pod-wasm"));
    let r = &out.object["spec"]["containers"][0]["resources"];
    assert_eq!(r, &json!({"requests": {"cpu": "250m", "memory": "64Mi"}}));
}

#[test]
fn s4_3_otel_variables_are_appended_in_order_with_spec_values() {
    let engine = engine();
    let d = fixture("deployment-wasm");
    let out = admit(&engine, &d);
    let env = out.object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let n = names.len();
    assert_eq!(
        &names[n - 5..],
        [
            "OTEL_SERVICE_NAME",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES"
        ]
    );
    assert_eq!(env[n - 5]["value"], "cart", "app.kubernetes.io/name label");
    assert_eq!(env[n - 4]["value"], "http://otel-collector:4317");
    assert_eq!(
        env[n - 3]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env[n - 2]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let c = d["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap();
    assert_eq!(
        env[n - 1]["value"],
        format!(
            "k8s.container.name={c},k8s.deployment.name=cart,k8s.namespace.name=shop,\
             k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)"
        )
    );
}

#[test]
fn s4_3_resource_attributes_name_each_workload_kind() {
    let engine = engine();
    for (name, attr) in [
        ("statefulset-wasm", "k8s.statefulset.name=ledger"),
        ("daemonset-wasm", "k8s.daemonset.name=edge-agent"),
        ("replicaset-wasm", "k8s.replicaset.name=cart-5b8f7c9d4f"),
        ("job-wasm", "k8s.job.name=migrate"),
        ("cronjob-wasm", "k8s.cronjob.name=report"),
    ] {
        let out = admit(&engine, &fixture(name));
        let v = env_of(&out.object, 0, "OTEL_RESOURCE_ATTRIBUTES").unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(v.contains(attr), "{name}: {v}");
        // Sorted by key.
        let keys: Vec<&str> = v.split(',').map(|p| p.split('=').next().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{name}");
    }
    // A bare Pod names no workload.
    let out = admit(&engine, &fixture("pod-wasm"));
    let v = env_of(&out.object, 0, "OTEL_RESOURCE_ATTRIBUTES").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v.split(',').count(), 4, "{v}");
}

#[test]
fn s4_3_service_name_sources_in_order() {
    let engine = engine();
    let service = |object: &Value| {
        let out = admit(&engine, object);
        env_of(&out.object, 0, "OTEL_SERVICE_NAME").unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/spec/template/metadata/annotations/resource.opentelemetry.io~1service.name",
        json!("checkout"),
    );
    assert_eq!(service(&d), "checkout", "annotation first");
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/spec/template/metadata/labels/app.kubernetes.io~1name",
        json!("cart-ui"),
    );
    assert_eq!(service(&d), "cart-ui", "then the label");
    let mut d = fixture("deployment-wasm");
    remove(
        &mut d,
        "/spec/template/metadata/labels/app.kubernetes.io~1name",
    );
    assert_eq!(service(&d), "cart", "then the workload's name");
}

#[test]
fn s4_3_service_name_of_a_controller_created_pod_is_its_deployment() {
    let engine = engine();
    let pod = fixture("pod-wasm-controller");
    let out = admit(&engine, &pod);
    assert_eq!(
        env_of(&out.object, 0, "OTEL_SERVICE_NAME").unwrap()["value"],
        "cart"
    );
    // Owned by a bare ReplicaSet (no pod-template-hash): the owner's name.
    let mut p = pod.clone();
    remove(&mut p, "/metadata/labels/pod-template-hash");
    let out = admit(&engine, &p);
    assert_eq!(
        env_of(&out.object, 0, "OTEL_SERVICE_NAME").unwrap()["value"],
        "cart-7d9f8b6c5d"
    );
    // No owner, no name: generateName without its trailing dash.
    remove(&mut p, "/metadata/ownerReferences");
    let out = admit(&engine, &p);
    assert_eq!(
        env_of(&out.object, 0, "OTEL_SERVICE_NAME").unwrap()["value"],
        "cart-7d9f8b6c5d"
    );
    // A named Pod: its name.
    let out = admit(&engine, &fixture("pod-wasm"));
    let mut named = fixture("pod-wasm");
    remove(&mut named, "/metadata/labels/app.kubernetes.io~1name");
    let out2 = admit(&engine, &named);
    assert_eq!(
        env_of(&out.object, 0, "OTEL_SERVICE_NAME").unwrap()["value"],
        "cart"
    );
    assert_eq!(
        env_of(&out2.object, 0, "OTEL_SERVICE_NAME").unwrap()["value"],
        named["metadata"]["name"]
    );
}

#[test]
fn s4_3_endpoint_from_annotation_then_configuration() {
    let mut d = fixture("deployment-wasm");
    let out = admit(
        &engine_with("otel:\n  endpoint: http://collector.obs:4317\n"),
        &d,
    );
    assert_eq!(
        env_of(&out.object, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").unwrap()["value"],
        "http://collector.obs:4317"
    );
    set(
        &mut d,
        "/metadata/annotations/wasm-admission.io~1otel-endpoint",
        json!("http://edge:4317"),
    );
    let out = admit(&engine(), &d);
    assert_eq!(
        env_of(&out.object, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").unwrap()["value"],
        "http://edge:4317"
    );
}

#[test]
fn s4_3_containers_keep_variables_they_define_and_init_containers_get_none() {
    let engine = engine();
    let pod = fixture("pod-wasm-sidecar");
    let out = admit(&engine, &pod);
    // `proxy` defines OTEL_SERVICE_NAME=custom: kept, once.
    let proxy = &out.object["spec"]["containers"][1]["env"];
    let services: Vec<&Value> = proxy
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "OTEL_SERVICE_NAME")
        .collect();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["value"], "custom");
    assert_eq!(
        proxy[0]["name"], "OTEL_SERVICE_NAME",
        "existing entries stay first"
    );
    for i in 0..2 {
        let env = out.object["spec"]["initContainers"][i]
            .get("env")
            .cloned()
            .unwrap_or(json!([]));
        assert!(
            env.as_array()
                .unwrap()
                .iter()
                .all(|e| !e["name"].as_str().unwrap().starts_with("OTEL_")),
            "init {i}"
        );
    }
}

#[test]
fn s4_3_otel_is_skipped_by_annotation_configuration_or_operator_injection() {
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/spec/template/metadata/annotations/wasm-admission.io~1otel",
        json!("false"),
    );
    let out = admit(&engine(), &d);
    assert!(env_of(&out.object, 0, "OTEL_SERVICE_NAME").is_none());
    assert!(
        !out.injected("/spec/template/metadata")
            .unwrap()
            .contains("otel")
    );
    let out = admit(
        &engine_with("otel:\n  enabled: false\n"),
        &fixture("deployment-wasm"),
    );
    assert!(env_of(&out.object, 0, "OTEL_SERVICE_NAME").is_none());
    let pod = fixture("pod-wasm-otel-operator");
    let before = pod["spec"]["containers"][0]["env"].clone();
    let out = admit(&engine(), &pod);
    assert_eq!(out.object["spec"]["containers"][0]["env"], before);
}

#[test]
fn s4_4_pod_annotations_from_configuration_only_where_absent() {
    let engine = engine_with(
        "podAnnotations:\n  module.wasm.image/variant: compat-smart\n  team: payments\n",
    );
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/spec/template/metadata/annotations/team",
        json!("checkout"),
    );
    let out = admit(&engine, &d);
    let a = &out.object["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(a["module.wasm.image/variant"], "compat-smart");
    assert_eq!(a["team"], "checkout");
    assert!(
        out.object["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("team").is_none()),
        "not on the workload's own metadata"
    );
    // A template without any annotations gets the map created.
    let out = admit(&engine, &fixture("deployment-wasmedge"));
    assert_eq!(
        out.object["spec"]["template"]["metadata"]["annotations"]["team"],
        "payments"
    );
}

#[test]
fn s4_5_injected_lists_what_changed_in_order_on_the_pod_metadata() {
    let engine = engine_with("podAnnotations: {a: b}\n");
    let out = admit(&engine, &fixture("deployment-wasm"));
    assert_eq!(
        out.injected("/spec/template/metadata").unwrap(),
        "runtime-class,resources,otel,annotations"
    );
    assert!(
        out.object["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("wasm-admission.io/injected").is_none())
    );
    assert_eq!(
        out.decision.audit_annotations["injected"],
        "runtime-class,resources,otel,annotations"
    );
}

#[test]
fn s4_5_nothing_changed_means_no_injected_annotation_and_no_patch() {
    let engine = engine();
    let first = admit(&engine, &fixture("pod-wasm-otel-operator"));
    let mut pod = first.object.clone();
    remove(
        &mut pod,
        "/metadata/annotations/wasm-admission.io~1injected",
    );
    let again = admit(&engine, &pod);
    assert!(!again.patched(), "{:?}", again.decision.patch);
}

#[test]
fn s4_patch_adds_into_existing_parents_and_escapes_keys() {
    let engine = engine();
    let out = admit(&engine, &fixture("pod-wasm"));
    let ops: Value = serde_json::from_str(out.decision.patch.as_json()).unwrap();
    let paths: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/spec/runtimeClassName"), "{paths:?}");
    // `resources: {}` exists: requests and limits are added into it.
    assert!(
        paths.contains(&"/spec/containers/0/resources/requests"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/metadata/annotations/wasm-admission.io~1injected"),
        "{paths:?}"
    );
    assert!(ops.as_array().unwrap().iter().all(|o| o["op"] == "add"));
}

#[test]
fn s4_webhook_on_its_own_output_gives_an_empty_patch_also_after_apiserver_defaults() {
    let engine = engine_with("podAnnotations: {module.wasm.image/variant: compat-smart}\n");
    for name in all_fixtures() {
        let first = admit(&engine, &fixture(&name));
        if !first.allowed() {
            continue;
        }
        let again = admit(&engine, &first.object);
        assert!(!again.patched(), "{name}: {:?}", again.decision.patch);
        let mut defaulted = first.object.clone();
        apiserver_defaults(&mut defaulted);
        let again = admit(&engine, &defaulted);
        assert!(
            !again.patched(),
            "{name} after defaults: {:?}",
            again.decision.patch
        );
    }
}

#[test]
fn s4_unknown_fields_survive_the_patch() {
    let engine = engine();
    let mut pod = fixture("pod-wasm");
    pod["spec"]["futureField"] = json!({"x": 1});
    pod["spec"]["containers"][0]["futureContainerField"] = json!(true);
    let out = admit(&engine, &pod);
    assert_eq!(out.object["spec"]["futureField"], json!({"x": 1}));
    assert_eq!(
        out.object["spec"]["containers"][0]["futureContainerField"],
        true
    );
}

#[test]
fn s4_reinvocation_after_another_webhook_adds_a_container_extends_injected() {
    let engine = engine();
    let first = admit(&engine, &fixture("pod-wasm"));
    let mut pod = first.object.clone();
    let mut extra = pod["spec"]["containers"][0].clone();
    extra["name"] = json!("mesh-proxy");
    extra["resources"] = json!({});
    extra.as_object_mut().unwrap().remove("env");
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(extra);
    let again = admit(&engine, &pod);
    // The pod already carries OTEL_RESOURCE_ATTRIBUTES_NODE_NAME (ours): OTel is skipped as a
    // whole; the new container still gets resources, and `injected` keeps the earlier entries.
    assert!(again.patched());
    assert_eq!(
        again.object["spec"]["containers"][1]["resources"]["limits"]["cpu"],
        "500m"
    );
    assert_eq!(
        again.injected("/metadata").unwrap(),
        "runtime-class,resources,otel"
    );
}

#[test]
fn s4_validate_endpoint_never_patches() {
    let out = admit_review(
        &engine(),
        &review_for(&fixture("deployment-wasm"), "CREATE", None, None),
        Endpoint::Validate,
    );
    assert!(out.allowed() && !out.patched());
}

/// The default class as deploy/runtimeclasses/wasm.yaml defines it: a node selector, a
/// toleration and a pod overhead.
fn scheduled_wasm_class() -> ClusterRuntimeClasses {
    let mut classes = cluster_classes(&[("wasm", "wasmedge")]);
    let wasm = classes.get_mut("wasm").expect("wasm");
    wasm.node_selector = [(
        "wasm-admission.io/runtime-wasmedge".to_string(),
        "true".to_string(),
    )]
    .into();
    wasm.tolerations = vec![json!({"key": "wasm", "operator": "Exists", "effect": "NoSchedule"})];
    wasm.overhead = [
        ("cpu".to_string(), "10m".to_string()),
        ("memory".to_string(), "10Mi".to_string()),
    ]
    .into();
    classes
}

/// §4.1: a Pod whose class the webhook injects also gets the class's scheduling and overhead,
/// as the RuntimeClass admission plugin would add them one step later (so the apiserver has no
/// reason to call `/mutate` again).
#[test]
fn s4_1_an_injected_class_brings_its_scheduling_and_overhead_to_a_pod() {
    let out = admit_in_cluster(&engine(), &fixture("pod-wasm"), &scheduled_wasm_class());
    let spec = &out.object["spec"];
    assert_eq!(spec["runtimeClassName"], "wasm");
    assert_eq!(
        spec["nodeSelector"],
        json!({"wasm-admission.io/runtime-wasmedge": "true"})
    );
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "wasm", "operator": "Exists", "effect": "NoSchedule"}])
    );
    assert_eq!(spec["overhead"], json!({"cpu": "10m", "memory": "10Mi"}));
}

/// §4.1: what the Pod already has is kept: its own node-selector value (the plugin judges a
/// conflict), its tolerations (the class's are appended once), its overhead.
#[test]
fn s4_1_class_scheduling_keeps_what_the_pod_has() {
    let mut pod = fixture("pod-wasm");
    set(
        &mut pod,
        "/spec/nodeSelector",
        json!({"wasm-admission.io/runtime-wasmedge": "false", "zone": "a"}),
    );
    set(
        &mut pod,
        "/spec/tolerations",
        json!([
            {"key": "wasm", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "gpu", "operator": "Exists"}
        ]),
    );
    set(&mut pod, "/spec/overhead", json!({"cpu": "1"}));
    let out = admit_in_cluster(&engine(), &pod, &scheduled_wasm_class());
    let spec = &out.object["spec"];
    assert_eq!(
        spec["nodeSelector"],
        json!({"wasm-admission.io/runtime-wasmedge": "false", "zone": "a"})
    );
    assert_eq!(spec["tolerations"].as_array().map(Vec::len), Some(2));
    assert_eq!(spec["overhead"], json!({"cpu": "1"}));
}

/// §4.1: templates and unknown classes get only the class name; the plugin acts on Pods only.
#[test]
fn s4_1_class_scheduling_is_for_pods_whose_class_is_known() {
    let out = admit_in_cluster(
        &engine(),
        &fixture("deployment-wasm"),
        &scheduled_wasm_class(),
    );
    let spec = &out.object["spec"]["template"]["spec"];
    assert_eq!(spec["runtimeClassName"], "wasm");
    assert!(spec.get("nodeSelector").is_none(), "{spec}");
    assert!(spec.get("overhead").is_none(), "{spec}");
    let out = admit(&engine(), &fixture("pod-wasm"));
    assert_eq!(out.object["spec"]["runtimeClassName"], "wasm");
    assert!(out.object["spec"].get("nodeSelector").is_none());
}
