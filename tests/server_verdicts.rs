//! `serve` names the rule that denied (docs/behaviour.md, "Rule ids"): the review count of a
//! denial carries a `rule` label from the fixed set of ids, and the JSON log line of the review a
//! `rule` field; other outcomes carry neither.

mod server_support;

use serde_json::Value;
use server_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_counted_and_logged_under_its_failing_rule() {
    let pki = Pki::new("test CA");
    let (_dir, cert, key) = pair_files(&pki.serving());
    let spawned = spawn_serve(&[
        "--tls-cert-file",
        cert.to_str().expect("path"),
        "--tls-private-key-file",
        key.to_str().expect("path"),
    ]);
    let client = apiserver_client(&pki.ca_pem, spawned.addr, Http::One);
    let url = |path: &str| format!("https://{SERVICE_HOST}:{}{path}", spawned.addr.port());

    let denied = post_review(&client, &url("/mutate"), PRIVILEGED_CREATE)
        .await
        .expect("review");
    assert_eq!(
        denied.body["response"]["allowed"], false,
        "{:?}",
        denied.body
    );
    let mutated = post_review(&client, &url("/mutate"), DEPLOYMENT_CREATE)
        .await
        .expect("review");
    assert_eq!(mutated.body["response"]["allowed"], true);

    let text = metrics_text(&client, &url("/metrics")).await;
    assert_eq!(
        metric(
            &text,
            "wasm_admission_reviews_total{endpoint=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",outcome=\"denied\",rule=\"baseline.privileged\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "wasm_admission_reviews_total{endpoint=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",outcome=\"mutated\"}"
        ),
        1.0,
        "a series of another outcome has no rule label: {text}"
    );

    let reviews: Vec<Value> = spawned
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "admission review")
        .collect();
    let of = |outcome: &str| {
        reviews
            .iter()
            .find(|v| v["outcome"] == outcome)
            .unwrap_or_else(|| panic!("a {outcome} review logged: {reviews:#?}"))
            .clone()
    };
    assert_eq!(of("denied")["rule"], "baseline.privileged");
    assert!(of("mutated").get("rule").is_none(), "{reviews:#?}");
}
