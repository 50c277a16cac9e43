//! behaviour.md §5: Wasm pod specs that break the Pod Security Standards baseline are denied.

mod common;

use common::*;
use serde_json::{Value, json};
use wasm_admission::core::engine::Endpoint;

/// Applies `change` to a Wasm Pod and to a Wasm Deployment and returns both messages.
fn denied_messages(change: impl Fn(&mut Value, &str)) -> Vec<String> {
    let engine = engine();
    ["pod-wasm", "deployment-wasm"]
        .iter()
        .map(|name| {
            let mut object = fixture(name);
            let spec = spec_ptr(&object);
            change(&mut object, spec);
            let out = admit(&engine, &object);
            assert!(!out.allowed(), "{name} should be denied");
            assert!(!out.patched(), "{name}: a denial carries no patch");
            out.message().to_string()
        })
        .collect()
}

fn assert_all_contain(messages: &[String], needle: &str) {
    for m in messages {
        assert!(m.contains(needle), "{m:?} should contain {needle:?}");
    }
}

#[test]
fn s5_denial_message_names_object_container_and_field() {
    let engine = engine();
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/spec/template/spec/containers/0/securityContext/privileged",
        json!(true),
    );
    set(&mut d, "/spec/template/spec/hostNetwork", json!(true));
    let c = d["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = admit(&engine, &d);
    assert_eq!(
        out.message(),
        format!(
            "wasm-admission: Wasm pod template of Deployment \"shop/cart\" is not allowed: \
             container \"{c}\": securityContext.privileged=true; spec.hostNetwork=true"
        )
    );
    let status = &out.response["response"]["status"];
    assert_eq!(out.response["response"]["allowed"], false);
    assert_eq!(status["code"], 403);
    assert_eq!(status["reason"], "Forbidden");
}

#[test]
fn s5_privileged_wasm_pod_fixture_is_denied() {
    let out = admit(&engine(), &fixture("pod-wasm-privileged"));
    assert!(!out.allowed());
    assert!(
        out.message()
            .starts_with("wasm-admission: Wasm pod \"shop/debug-wasm\" is not allowed: "),
        "{}",
        out.message()
    );
    assert!(out.message().contains("securityContext.privileged=true"));
    assert!(out.message().contains("spec.hostNetwork=true"));
}

#[test]
fn s5_host_namespaces_are_denied() {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        let m = denied_messages(|o, spec| set(o, &format!("{spec}/{field}"), json!(true)));
        assert_all_contain(&m, &format!("spec.{field}=true"));
    }
}

#[test]
fn s5_host_path_volumes_are_denied() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/volumes"),
            json!([{"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}}]),
        )
    });
    assert_all_contain(&m, "volume \"docker\": hostPath=/var/run/docker.sock");
}

#[test]
fn s5_non_zero_host_ports_are_denied_and_zero_is_allowed() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/containers/0/ports"),
            json!([{"containerPort": 8080, "hostPort": 80, "protocol": "TCP"}]),
        )
    });
    assert_all_contain(&m, "ports.hostPort=80");
    let mut pod = fixture("pod-wasm");
    set(
        &mut pod,
        "/spec/containers/0/ports",
        json!([{"containerPort": 8080, "hostPort": 0, "protocol": "TCP"}]),
    );
    assert!(admit(&engine(), &pod).allowed());
}

#[test]
fn s5_capabilities_outside_the_baseline_list_are_denied() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/containers/0/securityContext/capabilities/add"),
            json!(["NET_BIND_SERVICE", "SYS_ADMIN", "NET_RAW"]),
        )
    });
    assert_all_contain(&m, "securityContext.capabilities.add=[SYS_ADMIN,NET_RAW]");
    let mut pod = fixture("pod-wasm");
    let all = wasm_admission::core::baseline::BASELINE_CAPABILITIES;
    set(
        &mut pod,
        "/spec/containers/0/securityContext/capabilities",
        json!({"add": all, "drop": ["ALL"]}),
    );
    assert!(admit(&engine(), &pod).allowed());
}

#[test]
fn s5_proc_mount_other_than_default_is_denied() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/containers/0/securityContext/procMount"),
            json!("Unmasked"),
        )
    });
    assert_all_contain(&m, "securityContext.procMount=Unmasked");
    let mut pod = fixture("pod-wasm");
    set(
        &mut pod,
        "/spec/containers/0/securityContext/procMount",
        json!("Default"),
    );
    assert!(admit(&engine(), &pod).allowed());
}

#[test]
fn s5_windows_host_process_is_denied_at_pod_and_container_level() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/securityContext/windowsOptions/hostProcess"),
            json!(true),
        )
    });
    assert_all_contain(&m, "spec.securityContext.windowsOptions.hostProcess=true");
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/containers/0/securityContext/windowsOptions/hostProcess"),
            json!(true),
        )
    });
    assert_all_contain(&m, "securityContext.windowsOptions.hostProcess=true");
}

#[test]
fn s5_seccomp_unconfined_is_denied_and_runtime_default_allowed() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/securityContext/seccompProfile"),
            json!({"type": "Unconfined"}),
        )
    });
    assert_all_contain(&m, "spec.securityContext.seccompProfile.type=Unconfined");
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/containers/0/securityContext/seccompProfile"),
            json!({"type": "Unconfined"}),
        )
    });
    assert_all_contain(&m, "securityContext.seccompProfile.type=Unconfined");
    let mut pod = fixture("pod-wasm");
    set(
        &mut pod,
        "/spec/securityContext/seccompProfile",
        json!({"type": "RuntimeDefault"}),
    );
    assert!(admit(&engine(), &pod).allowed());
}

#[test]
fn s5_apparmor_unconfined_is_denied_by_field_and_by_annotation() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/containers/0/securityContext/appArmorProfile"),
            json!({"type": "Unconfined"}),
        )
    });
    assert_all_contain(&m, "securityContext.appArmorProfile.type=Unconfined");
    let m = denied_messages(|o, _| {
        let meta = meta_ptr(o);
        set(
            o,
            &format!("{meta}/annotations/container.apparmor.security.beta.kubernetes.io~1app"),
            json!("unconfined"),
        )
    });
    assert_all_contain(
        &m,
        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]=unconfined",
    );
    let mut pod = fixture("pod-wasm");
    set(
        &mut pod,
        "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app",
        json!("runtime/default"),
    );
    set(
        &mut pod,
        "/spec/securityContext/appArmorProfile",
        json!({"type": "Localhost", "localhostProfile": "k8s-wasm"}),
    );
    assert!(admit(&engine(), &pod).allowed());
}

#[test]
fn s5_selinux_options_beyond_the_baseline_are_denied() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/securityContext/seLinuxOptions"),
            json!({"type": "spc_t"}),
        )
    });
    assert_all_contain(&m, "spec.securityContext.seLinuxOptions.type=spc_t");
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/containers/0/securityContext/seLinuxOptions"),
            json!({"user": "system_u", "role": "system_r"}),
        )
    });
    assert_all_contain(&m, "securityContext.seLinuxOptions.user=system_u");
    assert_all_contain(&m, "securityContext.seLinuxOptions.role=system_r");
    let mut pod = fixture("pod-wasm");
    set(
        &mut pod,
        "/spec/securityContext/seLinuxOptions",
        json!({"type": "container_t", "level": "s0:c123,c456"}),
    );
    assert!(admit(&engine(), &pod).allowed());
}

#[test]
fn s5_sysctls_outside_the_safe_set_are_denied() {
    let m = denied_messages(|o, spec| {
        set(
            o,
            &format!("{spec}/securityContext/sysctls"),
            json!([
                {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"},
                {"name": "kernel.msgmax", "value": "65536"}
            ]),
        )
    });
    assert_all_contain(&m, "spec.securityContext.sysctls=[kernel.msgmax]");
}

#[test]
fn s5_init_and_ephemeral_containers_are_checked_too() {
    let engine = engine();
    let mut pod = fixture("pod-wasm-sidecar");
    let init = pod["spec"]["initContainers"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    set(
        &mut pod,
        "/spec/initContainers/1/securityContext/privileged",
        json!(true),
    );
    set(
        &mut pod,
        "/spec/ephemeralContainers",
        json!([{"name": "dbg", "image": "busybox", "securityContext": {"privileged": true}}]),
    );
    let out = admit(&engine, &pod);
    assert!(
        out.message().contains(&format!(
            "initContainer \"{init}\": securityContext.privileged=true"
        )),
        "{}",
        out.message()
    );
    assert!(
        out.message()
            .contains("ephemeralContainer \"dbg\": securityContext.privileged=true"),
        "{}",
        out.message()
    );
}

#[test]
fn s5_privileged_policy_checks_only_the_privileged_flag() {
    let engine = engine_with("security:\n  policy: privileged\n");
    let mut pod = fixture("pod-wasm");
    set(&mut pod, "/spec/hostNetwork", json!(true));
    set(
        &mut pod,
        "/spec/containers/0/securityContext/capabilities/add",
        json!(["SYS_ADMIN"]),
    );
    assert!(admit(&engine, &pod).allowed());
    set(
        &mut pod,
        "/spec/containers/0/securityContext/privileged",
        json!(true),
    );
    let out = admit(&engine, &pod);
    assert!(!out.allowed());
    assert!(!out.message().contains("hostNetwork"), "{}", out.message());
}

#[test]
fn s5_non_wasm_objects_are_never_denied() {
    let engine = engine();
    let mut pod = fixture("pod-plain");
    set(&mut pod, "/spec/hostNetwork", json!(true));
    set(
        &mut pod,
        "/spec/containers/0/securityContext/privileged",
        json!(true),
    );
    let out = admit(&engine, &pod);
    assert!(out.allowed() && !out.patched());
}

#[test]
fn s5_validate_endpoint_denies_the_same() {
    let out = admit_review(
        &engine(),
        &review_for(&fixture("pod-wasm-privileged"), "CREATE", None, None),
        Endpoint::Validate,
    );
    assert!(!out.allowed());
    assert!(out.message().contains("securityContext.privileged=true"));
}

#[test]
fn s5_kubectl_debug_on_a_wasm_pod_checks_new_ephemeral_containers() {
    let engine = engine();
    let old = fixture("pod-wasm");
    let mut new = old.clone();
    set(
        &mut new,
        "/spec/ephemeralContainers",
        json!([{
            "name": "debugger-x7k2p", "image": "busybox:1.36", "stdin": true, "tty": true,
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent", "targetContainerName": "app",
            "securityContext": {"privileged": true}
        }]),
    );
    let review = review_for(&new, "UPDATE", Some(&old), Some("ephemeralcontainers"));
    let out = admit_review(&engine, &review, Endpoint::Mutate);
    assert!(!out.allowed());
    assert_eq!(
        out.message(),
        "wasm-admission: ephemeral containers of Wasm pod \"shop/cart\" are not allowed: \
         ephemeralContainer \"debugger-x7k2p\": securityContext.privileged=true"
    );
    assert_eq!(
        out.decision.failed_rule().map(|r| r.as_str()),
        Some("baseline.privileged")
    );
    // An unprivileged debug container is allowed and not patched.
    set(
        &mut new,
        "/spec/ephemeralContainers/0/securityContext",
        json!({}),
    );
    let out = admit_review(
        &engine,
        &review_for(&new, "UPDATE", Some(&old), Some("ephemeralcontainers")),
        Endpoint::Mutate,
    );
    assert!(out.allowed() && !out.patched());
    // The same on a non-Wasm pod is none of this webhook's business.
    let plain = fixture("pod-plain");
    let mut dbg = plain.clone();
    set(
        &mut dbg,
        "/spec/ephemeralContainers",
        json!([{"name": "d", "image": "busybox", "securityContext": {"privileged": true}}]),
    );
    let out = admit_review(
        &engine,
        &review_for(&dbg, "UPDATE", Some(&plain), Some("ephemeralcontainers")),
        Endpoint::Mutate,
    );
    assert!(out.allowed());
}

#[test]
fn s5_ephemeral_containers_already_present_are_not_checked_again() {
    let engine = engine();
    let mut old = fixture("pod-wasm");
    set(
        &mut old,
        "/spec/ephemeralContainers",
        json!([{"name": "old", "image": "busybox", "securityContext": {"privileged": true}}]),
    );
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "new", "image": "busybox"}));
    let out = admit_review(
        &engine,
        &review_for(&new, "UPDATE", Some(&old), Some("ephemeralcontainers")),
        Endpoint::Mutate,
    );
    assert!(out.allowed(), "{}", out.message());
}
