//! The apiserver's own view of the webhook: its admission metrics count what this case did, and
//! agree with the webhook's own.

use crate::support::{World, metric_sum};

const DURATION_COUNT: &str = "apiserver_admission_webhook_admission_duration_seconds_count";
const REJECTIONS: &str = "apiserver_admission_webhook_rejection_count";
const REVIEWS: &str = "wasm_admission_reviews_total";

pub fn apiserver_metrics_count_the_webhook_calls_and_denials(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("metrics", true);
    world.apply_runtime_classes();
    crate::reinvocation::wait_for_one_mutate_per_wasm_pod(world, &ns);
    let mutate = [
        ("name", "mutate.wasm-admission.io"),
        ("operation", "CREATE"),
    ];
    let validate = [
        ("name", "validate.wasm-admission.io"),
        ("operation", "CREATE"),
    ];
    let denied_by_mutate = [
        ("name", "mutate.wasm-admission.io"),
        ("operation", "CREATE"),
        ("error_type", "no_error"),
        ("rejection_code", "403"),
    ];
    let before = cluster.apiserver_metrics();
    let served_before = world.webhook().metrics();

    const ADMITTED: usize = 4;
    const DENIED: usize = 3;
    for i in 0..ADMITTED {
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"ok-{i}","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/app:1"}}]}}}}"#
        );
        cluster
            .kubectl_in(&["create", "-f", "-"], &pod)
            .expect_ok("create");
    }
    for i in 0..DENIED {
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"no-{i}","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"hostPID":true,"containers":[{{"name":"app","image":"ghcr.io/acme/app:1"}}]}}}}"#
        );
        let out = cluster.kubectl_in(&["create", "-f", "-"], &pod);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
    }
    let after = cluster.apiserver_metrics();
    let served_after = world.webhook().metrics();
    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric_sum(&after, name, labels) - metric_sum(&before, name, labels)
    };
    let served = |outcome: &str| {
        let labels = [
            ("endpoint", "mutate"),
            ("kind", "Pod"),
            ("outcome", outcome),
        ];
        metric_sum(&served_after, REVIEWS, &labels) - metric_sum(&served_before, REVIEWS, &labels)
    };

    // Every Pod is sent to /mutate once: the webhook writes the injected class's
    // scheduling.nodeSelector and overhead itself (behaviour.md §4.1), so the RuntimeClass
    // plugin's second pass changes nothing and the apiserver has no reason to ask again. A
    // denied one never reaches /validate.
    assert_eq!(delta(DURATION_COUNT, &mutate), (ADMITTED + DENIED) as f64);
    assert_eq!(delta(DURATION_COUNT, &validate), ADMITTED as f64);
    assert_eq!(delta(REJECTIONS, &denied_by_mutate), DENIED as f64);
    assert_eq!(served("mutated"), ADMITTED as f64, "{served_after}");
    assert_eq!(served("unchanged"), 0.0, "{served_after}");
    assert_eq!(served("denied"), DENIED as f64, "{served_after}");
    let pod = cluster.json(&["-n", &ns, "get", "pod", "ok-0"]);
    assert_eq!(
        pod["spec"]["nodeSelector"]["wasm-admission.io/runtime-wasmedge"], "true",
        "the RuntimeClass's nodeSelector: {pod}"
    );
    assert_eq!(pod["spec"]["overhead"]["cpu"], "10m", "{pod}");
    println!(
        "    apiserver counted {} calls to /mutate, {} to /validate, {} denials",
        delta(DURATION_COUNT, &mutate),
        delta(DURATION_COUNT, &validate),
        delta(REJECTIONS, &denied_by_mutate)
    );
}
