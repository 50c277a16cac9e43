//! `wasm-admission policies` (behaviour.md §10) as a user runs it: the YAML on standard output,
//! and a configuration it cannot express refused with exit code 2 and nothing on standard output.
//! That the policies enforce what the webhook does is proven on the real apiserver
//! (tests/e2e/native_policies.rs).

use std::process::Command;

fn policies(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .arg("policies")
        .args(args)
        .output()
        .expect("run wasm-admission")
}

/// Every string in the YAML documents (the CEL expressions as the apiserver reads them), one per
/// line, after the documents' kinds.
fn strings(yaml: &str) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).expect("YAML");
        out.push_str(&format!(
            "kind: {}\n",
            value["kind"].as_str().unwrap_or_default()
        ));
        walk(&value, &mut out);
    }
    out
}

fn config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), text).expect("write");
    file
}

#[test]
fn s10_default_configuration_prints_two_policies_and_their_bindings() {
    let out = policies(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    let names: Vec<(String, String)> = docs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("MutatingAdmissionPolicy", "wasm-admission-mutate"),
            ("MutatingAdmissionPolicyBinding", "wasm-admission-mutate"),
            ("ValidatingAdmissionPolicy", "wasm-admission-validate"),
            (
                "ValidatingAdmissionPolicyBinding",
                "wasm-admission-validate"
            ),
        ]
        .map(|(k, n)| (k.to_string(), n.to_string()))
    );
    assert!(
        docs.iter()
            .all(|d| d["apiVersion"] == "admissionregistration.k8s.io/v1")
    );
    assert_eq!(docs[0]["spec"]["reinvocationPolicy"], "IfNeeded");
    assert_eq!(docs[0]["spec"]["failurePolicy"], "Fail");
    assert_eq!(
        docs[3]["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    // What stays with the webhook is said, on standard error.
    assert!(String::from_utf8_lossy(&out.stderr).contains("detection.runtimeHandlers"));
}

#[test]
fn s10_registry_inspection_is_refused_with_exit_2_and_no_output() {
    let file = config("detection:\n  registry:\n    enabled: true\n");
    let out = policies(&["--config", file.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on standard output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detection.registry.enabled"), "{err}");
    // For mode both the webhook keeps it, and says so.
    let out = policies(&[
        "--config",
        file.path().to_str().expect("path"),
        "--webhook-does-io",
    ]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("left to the webhook: detection.registry")
    );
}

#[test]
fn s10_an_unreadable_configuration_is_exit_2_naming_the_key() {
    let file = config("mutateTemplate: false\n");
    let out = policies(&["--config", file.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mutateTemplate"));
}

#[test]
fn s10_configuration_values_reach_the_policies_as_cel_literals() {
    let file = config(
        "runtimeClassName: \"it's\"\nexcludedNamespaces: [ops]\nmutateTemplates: false\n\
         podAnnotations: {module.wasm.image/variant: compat-smart}\n\
         security: {baselineVersion: v1.30}\n",
    );
    let out = policies(&[
        "--config",
        file.path().to_str().expect("path"),
        "--namespace",
        "wasm-system",
        "--failure-policy",
        "ignore",
    ]);
    assert!(out.status.success());
    let text = strings(&String::from_utf8(out.stdout).expect("utf-8"));
    // A quote in a configured value is escaped, not an end of the CEL string.
    assert!(text.contains(r"'it\'s'"), "{text}");
    assert!(
        text.contains("'ops', 'wasm-system'"),
        "own namespace excluded too"
    );
    assert!(text.contains("\nIgnore\n"), "failurePolicy: Ignore");
    let mutating = text
        .split("kind: ValidatingAdmissionPolicy")
        .next()
        .unwrap_or_default();
    assert!(
        !mutating.contains("deployments"),
        "mutateTemplates: false: the mutating policy matches Pods only"
    );
    // v1.30: no probe-host check, and container_engine_t is not yet allowed.
    assert!(!text.contains("baseline since v1.34"));
    assert!(!text.contains("container_engine_t"));
}

/// Issue 28, item 2: the validating policy never fails open, whatever `--failure-policy` says.
#[test]
fn s10_the_validating_policy_always_fails_closed() {
    let out = policies(&["--failure-policy", "ignore"]);
    assert!(out.status.success());
    let docs: Vec<serde_json::Value> =
        serde_yaml_ng::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
            .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
            .collect();
    assert_eq!(
        docs[0]["spec"]["failurePolicy"], "Ignore",
        "the mutating policy follows the flag"
    );
    let validating = &docs[2]["spec"];
    assert_eq!(validating["failurePolicy"], "Fail");
    // behaviour.md §5, the boundary: no selector a pod's author controls, and Pod and Job UPDATEs.
    assert!(
        validating["matchConstraints"]
            .get("objectSelector")
            .is_none()
    );
    let conditions = validating["matchConditions"].to_string();
    assert!(
        !conditions.contains("wasm-admission.io/skip"),
        "{conditions}"
    );
    let rules = validating["matchConstraints"]["resourceRules"].to_string();
    assert!(
        rules.contains(r#""operations":["CREATE","UPDATE"],"resources":["pods"]"#)
            && rules.contains(r#""operations":["CREATE","UPDATE"],"resources":["jobs"]"#),
        "{rules}"
    );
    // The lists it walks are bounded, and the new ephemeral containers found through a map.
    let text = strings(&String::from_utf8_lossy(&out.stdout));
    assert!(text.contains("variables.containerCount > 1024"), "{text}");
    assert!(text.contains("transformMapEntry"), "{text}");
}

/// Issue 28, item 11: `POD_NAMESPACE` in the environment is not an exclusion; only
/// `--namespace` is, and the command says which namespace it excludes.
#[test]
fn s10_pod_namespace_from_the_environment_is_not_excluded_silently() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .arg("policies")
        .env("POD_NAMESPACE", "payments")
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("payments"), "POD_NAMESPACE was excluded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("POD_NAMESPACE=payments is set but not used"),
        "{stderr}"
    );
    let out = policies(&["--namespace", "payments"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("'payments'"));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("namespace \"payments\" (--namespace) is excluded"),
        "said loudly"
    );
}

/// Issue 28, item 3, in the generated policies: `security.exemptions` reach the validating policy
/// as CEL literals.
#[test]
fn s10_exemptions_reach_the_validating_policy() {
    let file = config(
        "security:\n  exemptions:\n    usernames: ['system:serviceaccount:ci:deployer']\n    namespaces: [legacy]\n    runtimeClasses: [gvisor]\n",
    );
    let out = policies(&["--config", file.path().to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = strings(&String::from_utf8_lossy(&out.stdout));
    assert!(text.contains("request.namespace in ['legacy']"), "{text}");
    assert!(
        text.contains(
            "request.userInfo.?username.orValue('') in ['system:serviceaccount:ci:deployer']"
        ),
        "{text}"
    );
    assert!(
        text.contains("variables.spec.?runtimeClassName.orValue('') in ['gvisor']"),
        "{text}"
    );
}

#[test]
fn s6_match_conditions_print_one_yaml_list_for_both_webhooks() {
    let out = policies(&["--match-conditions"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<serde_json::Value> = serde_yaml_ng::from_slice(&out.stdout).expect("a YAML list");
    let names: Vec<&str> = list.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["wasm-possible", "create-or-rule-input-changed"]);
}

#[test]
fn s6_a_pattern_cel_cannot_read_as_the_engine_does_is_exit_2_naming_the_key() {
    let file = config("detection:\n  imagePatterns: ['ghcr.io/acme/*', 'ghcr.io/acmé/*']\n");
    let path = file.path().to_str().expect("utf-8 path");
    let out = policies(&["--match-conditions", "--config", path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detection.imagePatterns"), "{err}");
}

#[test]
fn s6_registry_inspection_keeps_only_the_update_condition_and_says_why() {
    let file = config("detection:\n  registry:\n    enabled: true\n");
    let path = file.path().to_str().expect("utf-8 path");
    let out = policies(&["--match-conditions", "--config", path]);
    assert!(out.status.success());
    let list: Vec<serde_json::Value> = serde_yaml_ng::from_slice(&out.stdout).expect("a YAML list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "create-or-rule-input-changed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every Pod and workload CREATE reaches the webhook"),
        "{err}"
    );
}

#[test]
fn s6_match_conditions_take_no_policy_only_flags() {
    let out = policies(&["--match-conditions", "--failure-policy", "ignore"]);
    assert_eq!(out.status.code(), Some(2));
}
