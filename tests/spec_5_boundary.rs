//! behaviour.md §5, the boundary (issue 28, items 3, 4, 5 and 12): nothing written on the pod or
//! its template turns the baseline check off for a pod spec on a Wasm RuntimeClass or whose images
//! are Wasm; the opt-outs opt out of §4's mutations only; exemptions are the administrator's
//! (`security.exemptions`); Pod UPDATEs that change an image or an annotation a rule reads are
//! judged. Each attempt is run through the webhook's review door and through `check`; the native
//! policies get the same table on the real apiserver (tests/e2e/boundary.rs).

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use serde_json::{Value, json};
use wasm_admission::core::config::Config;
use wasm_admission::core::engine::{Endpoint, Facts};

/// A folder removed when dropped, also when a test fails.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("spec5-boundary-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The image patterns of the attempts that rely on rule 5.
const PATTERNS: &str = "detection:\n  imagePatterns: ['ghcr.io/acme/*-wasm:*']\n";

fn pod(name: &str, labels: Value, annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels, "annotations": annotations},
        "spec": spec,
    })
}

fn container(image: &str, privileged: bool) -> Value {
    json!({"name": "app", "image": image, "securityContext": {"privileged": privileged}})
}

/// A pod author's attempt to get a pod past §5, as one object (a CREATE).
struct Attempt {
    name: &'static str,
    object: Value,
    /// What the denial names.
    violation: &'static str,
}

/// Issue 28, item 3: every self-service opt-out on a pod that names a Wasm class; item 4: an
/// image that rules 5 calls Wasm (as `kubectl set image` leaves the pod).
fn attempts() -> Vec<Attempt> {
    let wasm_class = |extra: Value| {
        let mut spec = json!({"runtimeClassName": "wasmedge", "containers": [container("ghcr.io/acme/app:1", true)]});
        if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
            s.extend(e);
        }
        spec
    };
    let host = json!({
        "runtimeClassName": "wasmedge",
        "hostPID": true,
        "hostNetwork": true,
        "containers": [container("ghcr.io/acme/app:1", false)],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    });
    let mut deployment = fixture("deployment-wasm");
    set(
        &mut deployment,
        "/spec/template/metadata/annotations",
        json!({"wasm-admission.io/wasm": "false"}),
    );
    set(
        &mut deployment,
        "/spec/template/metadata/labels/wasm-admission.io~1skip",
        json!("true"),
    );
    set(
        &mut deployment,
        "/spec/template/spec/runtimeClassName",
        json!("wasmtime-spin-v2"),
    );
    set(
        &mut deployment,
        "/spec/template/spec/containers/0/securityContext",
        json!({"privileged": true}),
    );
    vec![
        Attempt {
            name: "skip-label",
            object: pod(
                "skip",
                json!({"wasm-admission.io/skip": "true"}),
                json!({}),
                wasm_class(json!({})),
            ),
            violation: "securityContext.privileged=true",
        },
        Attempt {
            name: "wasm-false-annotation",
            object: pod(
                "off",
                json!({}),
                json!({"wasm-admission.io/wasm": "false"}),
                host,
            ),
            violation: "spec.hostPID=true; volume \"root\": hostPath=/",
        },
        Attempt {
            name: "template-opt-outs",
            object: deployment,
            violation: "securityContext.privileged=true",
        },
        Attempt {
            name: "image-pattern-with-wasm-false",
            object: pod(
                "img",
                json!({"wasm-admission.io/skip": "true"}),
                json!({"wasm-admission.io/wasm": "false"}),
                json!({"containers": [container("ghcr.io/acme/cart-wasm:2", true)]}),
            ),
            violation: "securityContext.privileged=true",
        },
    ]
}

#[test]
fn s5_boundary_no_opt_out_on_the_pod_turns_the_check_off_at_the_review_door() {
    let engine = engine_with(PATTERNS);
    for a in attempts() {
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let out = admit_review(
                &engine,
                &review_for(&a.object, "CREATE", None, None),
                endpoint,
            );
            assert!(!out.allowed(), "{} via {endpoint:?} was admitted", a.name);
            assert!(
                out.message().contains(a.violation),
                "{}: {}",
                a.name,
                out.message()
            );
            assert_eq!(
                out.response["response"]["status"]["code"], 403,
                "{}",
                a.name
            );
        }
    }
}

#[test]
fn s5_boundary_no_opt_out_on_the_pod_turns_the_check_off_in_check() {
    let dir = TempDir::new("check");
    let config = dir.0.join("config.yaml");
    std::fs::write(&config, PATTERNS).expect("config");
    for a in attempts() {
        let path = dir.0.join(format!("{}.json", a.name));
        let mut file = std::fs::File::create(&path).expect("file");
        file.write_all(a.object.to_string().as_bytes())
            .expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
            .args(["check", "-o", "json", "--config"])
            .arg(&config)
            .arg(&path)
            .output()
            .expect("run check");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            a.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
        assert_eq!(report[0]["allowed"], false, "{}", a.name);
        let message = report[0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(a.violation), "{}: {message}", a.name);
    }
}

#[test]
fn s5_boundary_opt_outs_still_opt_out_of_mutation() {
    let engine = engine();
    for (labels, annotations) in [
        (json!({"wasm-admission.io/skip": "true"}), json!({})),
        (json!({}), json!({"wasm-admission.io/wasm": "false"})),
    ] {
        let clean = pod(
            "clean",
            labels,
            annotations,
            json!({"runtimeClassName": "wasmedge", "containers": [container("ghcr.io/acme/app:1", false)]}),
        );
        let out = admit(&engine, &clean);
        assert!(out.allowed(), "{}", out.message());
        assert!(!out.patched(), "an opted-out pod is not mutated");
    }
}

#[test]
fn s5_boundary_skip_label_still_skips_a_pod_that_is_wasm_only_by_its_own_annotation() {
    // Not on a Wasm class, images not Wasm: the pod itself is the only signal, and it opted out.
    let engine = engine();
    let p = pod(
        "marked",
        json!({"wasm-admission.io/skip": "true"}),
        json!({"wasm-admission.io/wasm": "true"}),
        json!({"containers": [container("nginx", true)]}),
    );
    assert!(admit(&engine, &p).allowed());
}

/// Issue 28, item 3, last attempt: `wasm: "false"` added to a running Wasm pod, then a
/// privileged `kubectl debug`.
#[test]
fn s5_boundary_annotation_update_then_kubectl_debug_is_denied() {
    let engine = engine();
    let running = pod(
        "run",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": [container("ghcr.io/acme/app:1", false)]}),
    );
    let mut annotated = running.clone();
    set(
        &mut annotated,
        "/metadata/annotations/wasm-admission.io~1wasm",
        json!("false"),
    );
    let update = admit_review(
        &engine,
        &review_for(&annotated, "UPDATE", Some(&running), None),
        Endpoint::Validate,
    );
    assert!(
        update.allowed(),
        "a clean pod's annotation update is allowed: {}",
        update.message()
    );
    let mut debugged = annotated.clone();
    set(
        &mut debugged,
        "/spec/ephemeralContainers",
        json!([{"name": "debugger", "image": "busybox", "securityContext": {"privileged": true}}]),
    );
    let debug = admit_review(
        &engine,
        &review_for(
            &debugged,
            "UPDATE",
            Some(&annotated),
            Some("ephemeralcontainers"),
        ),
        Endpoint::Validate,
    );
    assert!(
        !debug.allowed(),
        "privileged kubectl debug on a Wasm-class pod was admitted"
    );
    assert!(
        debug
            .message()
            .contains("ephemeralContainer \"debugger\": securityContext.privileged=true"),
        "{}",
        debug.message()
    );
}

/// Issue 28, item 4: `kubectl set image` to an image that rule 5 calls Wasm.
#[test]
fn s5_boundary_set_image_on_update_is_judged_like_a_create() {
    let engine = engine_with(PATTERNS);
    let before = pod(
        "swap",
        json!({}),
        json!({}),
        json!({"containers": [container("nginx:1", true)]}),
    );
    let created = admit_review(
        &engine,
        &review_for(&before, "CREATE", None, None),
        Endpoint::Validate,
    );
    assert!(
        created.allowed(),
        "a privileged ordinary pod is not this webhook's to deny"
    );
    let mut after = before.clone();
    set(
        &mut after,
        "/spec/containers/0/image",
        json!("ghcr.io/acme/cart-wasm:2"),
    );
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let out = admit_review(
            &engine,
            &review_for(&after, "UPDATE", Some(&before), None),
            endpoint,
        );
        assert!(
            !out.allowed(),
            "set image to a Wasm image was stored via {endpoint:?}"
        );
        assert!(
            out.message().contains("securityContext.privileged=true"),
            "{}",
            out.message()
        );
        assert!(!out.patched(), "a Pod UPDATE is never patched");
    }
    // An UPDATE that changes neither an image nor an annotation a rule reads is left alone, as
    // before (a pod admitted earlier keeps taking label changes).
    let mut relabelled = after.clone();
    set(&mut relabelled, "/metadata/labels/team", json!("a"));
    let out = admit_review(
        &engine,
        &review_for(&relabelled, "UPDATE", Some(&after), None),
        Endpoint::Validate,
    );
    assert!(out.allowed());
    // A clean Wasm pod's image update is allowed, without a patch.
    let mut clean = after.clone();
    set(
        &mut clean,
        "/spec/containers/0/securityContext/privileged",
        json!(false),
    );
    let mut clean_new = clean.clone();
    set(
        &mut clean_new,
        "/spec/containers/0/image",
        json!("ghcr.io/acme/cart-wasm:3"),
    );
    let out = admit_review(
        &engine,
        &review_for(&clean_new, "UPDATE", Some(&clean), None),
        Endpoint::Mutate,
    );
    assert!(out.allowed() && !out.patched(), "{}", out.message());
}

#[test]
fn s5_boundary_exemptions_are_the_administrators() {
    let privileged = pod(
        "admin",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "wasmedge", "containers": [container("ghcr.io/acme/app:1", true)]}),
    );
    // review_for sends userInfo.username "admin" in namespace "shop".
    for exemptions in [
        "usernames: [admin]",
        "namespaces: [shop]",
        "runtimeClasses: [wasmedge]",
    ] {
        let engine = engine_with(&format!("security:\n  exemptions:\n    {exemptions}\n"));
        let out = admit_review(
            &engine,
            &review_for(&privileged, "CREATE", None, None),
            Endpoint::Mutate,
        );
        assert!(out.allowed(), "{exemptions}: {}", out.message());
        assert!(
            out.patched(),
            "{exemptions}: an exempt pod is still mutated"
        );
    }
    for other in [
        "usernames: [someone]",
        "namespaces: [other]",
        "runtimeClasses: [spin]",
    ] {
        let engine = engine_with(&format!("security:\n  exemptions:\n    {other}\n"));
        assert!(!admit(&engine, &privileged).allowed(), "{other}");
    }
}

#[test]
fn s5_boundary_exemption_keys_are_validated() {
    for (yaml, key) in [
        ("security:\n  exemptions:\n    users: [a]\n", "users"),
        (
            "security:\n  exemptions:\n    namespaces: [Shop]\n",
            "security.exemptions.namespaces",
        ),
        (
            "security:\n  exemptions:\n    runtimeClasses: ['a b']\n",
            "security.exemptions.runtimeClasses",
        ),
        (
            "security:\n  exemptions:\n    usernames: ['']\n",
            "security.exemptions.usernames",
        ),
    ] {
        let err = Config::from_yaml(yaml).expect_err(yaml);
        assert!(err.contains(key), "{yaml}: {err}");
    }
}

/// Issue 28, item 5 (the core part): while `serve` has no complete RuntimeClass list, a class
/// that is not Wasm by name is unknown, and the pod is checked as Wasm, with a warning.
#[test]
fn s5_ready_means_decided_unknown_class_is_checked_while_classes_are_pending() {
    let engine = engine();
    let privileged = pod(
        "spin",
        json!({}),
        json!({}),
        json!({"runtimeClassName": "my-spin", "containers": [container("ghcr.io/acme/app:1", true)]}),
    );
    let pending = Facts {
        runtime_classes_pending: true,
        ..Facts::default()
    };
    let review = review_for(&privileged, "CREATE", None, None);
    let out = admit_review_with(&engine, &review, Endpoint::Mutate, &pending);
    assert!(
        !out.allowed(),
        "a privileged pod on an unknown class was allowed while pending"
    );
    assert!(
        out.message().contains(
            "RuntimeClass \"my-spin\" counts as Wasm until the cluster's RuntimeClasses are listed"
        ),
        "{}",
        out.message()
    );
    // Clean: allowed with the warning, and not mutated (the class alone is no detection).
    let mut clean = privileged.clone();
    set(
        &mut clean,
        "/spec/containers/0/securityContext/privileged",
        json!(false),
    );
    let out = admit_review_with(
        &engine,
        &review_for(&clean, "CREATE", None, None),
        Endpoint::Mutate,
        &pending,
    );
    assert!(out.allowed() && !out.patched());
    assert!(
        out.decision
            .warnings
            .iter()
            .any(|w| w.contains("\"my-spin\" is checked as Wasm")),
        "{:?}",
        out.decision.warnings
    );
    // Once the list is there and says runc, the class is known not to be Wasm.
    let classes = cluster_classes(&[("my-spin", "runc")]);
    assert!(admit_in_cluster(&engine, &privileged, &classes).allowed());
    let classes = cluster_classes(&[("my-spin", "spin")]);
    assert!(!admit_in_cluster(&engine, &privileged, &classes).allowed());
}

/// Issue 28, item 12: a non-ASCII image glob is refused, naming the key (the engine matched bytes
/// and CEL code points, so `check` and the policies disagreed).
#[test]
fn s3_rule_5_non_ascii_image_globs_are_refused_naming_the_key() {
    let err = Config::from_yaml("detection:\n  imagePatterns: ['ghcr.io/acmé/*']\n")
        .expect_err("non-ASCII");
    assert!(err.starts_with("detection.imagePatterns"), "{err}");
    assert!(
        err.contains("ghcr.io/acmé/*") && err.contains("non-ASCII"),
        "{err}"
    );
    let dir = TempDir::new("globs");
    let config = dir.0.join("config.yaml");
    std::fs::write(
        &config,
        "detection:\n  imagePatterns: ['ghcr.io/acm?/*', 'ghcr.io/acmé/*']\n",
    )
    .expect("config");
    let manifest = fixture_path("pod-wasm");
    for args in [
        vec!["policies".as_ref(), "--config".as_ref(), config.as_os_str()],
        vec![
            "check".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            manifest.as_os_str(),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
            .args(&args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("detection.imagePatterns") && stderr.contains("non-ASCII"),
            "{args:?}: {stderr}"
        );
    }
}
