//! behaviour.md §5 and §8 `security.baselineVersion`: each baseline check, just inside and just outside its
//! line, at every version where the line moved (v1.30 to latest = v1.37), as the upstream Pod
//! Security Admission policy package draws it.

mod common;

use common::*;
use serde_json::{Value, json};

/// The webhook's verdict on the Wasm pod `pod-wasm` changed by `change`, at `version`:
/// `Ok(())` when allowed, else the denial message.
fn verdict(version: &str, change: impl Fn(&mut Value)) -> Result<(), String> {
    let engine = engine_with(&format!("security:\n  baselineVersion: {version}\n"));
    let mut pod = fixture("pod-wasm");
    change(&mut pod);
    let out = admit(&engine, &pod);
    if out.allowed() {
        Ok(())
    } else {
        Err(out.message().to_string())
    }
}

fn assert_allowed(version: &str, change: impl Fn(&mut Value)) {
    if let Err(m) = verdict(version, change) {
        panic!("at {version} should be allowed, was denied: {m}");
    }
}

fn assert_denied(version: &str, needle: &str, change: impl Fn(&mut Value)) {
    match verdict(version, change) {
        Ok(()) => panic!("at {version} should be denied for {needle:?}, was allowed"),
        Err(m) => assert!(
            m.contains(needle),
            "at {version}: {m:?} should contain {needle:?}"
        ),
    }
}

/// Both ends of the supported range, for checks whose line never moved.
const ENDS: [&str; 3] = ["v1.30", "v1.37", "latest"];

fn sysctl(name: &'static str) -> impl Fn(&mut Value) {
    move |p| {
        set(
            p,
            "/spec/securityContext/sysctls",
            json!([{"name": name, "value": "1"}]),
        )
    }
}

fn container_sc(field: &'static str, value: Value) -> impl Fn(&mut Value) {
    move |p| {
        set(
            p,
            &format!("/spec/containers/0/securityContext/{field}"),
            value.clone(),
        )
    }
}

#[test]
fn s5_v_host_namespaces_every_version() {
    for v in ENDS {
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_allowed(v, |p| set(p, &format!("/spec/{field}"), json!(false)));
            assert_denied(v, &format!("spec.{field}=true"), |p| {
                set(p, &format!("/spec/{field}"), json!(true))
            });
        }
    }
}

#[test]
fn s5_v_privileged_every_version() {
    for v in ENDS {
        assert_allowed(v, container_sc("privileged", json!(false)));
        assert_denied(
            v,
            "container \"app\": securityContext.privileged=true",
            container_sc("privileged", json!(true)),
        );
    }
}

#[test]
fn s5_v_capabilities_baseline_every_version() {
    let all = wasm_admission::core::baseline::BASELINE_CAPABILITIES;
    for v in ENDS {
        assert_allowed(v, container_sc("capabilities", json!({"add": all})));
        assert_denied(
            v,
            "securityContext.capabilities.add=[NET_RAW]",
            container_sc("capabilities", json!({"add": ["CHOWN", "NET_RAW"]})),
        );
    }
}

fn add_volume(volume: Value) -> impl Fn(&mut Value) {
    move |p| {
        p["spec"]["volumes"]
            .as_array_mut()
            .expect("the fixture has volumes")
            .push(volume.clone())
    }
}

#[test]
fn s5_v_host_path_volumes_every_version() {
    for v in ENDS {
        assert_allowed(v, add_volume(json!({"name": "tmp", "emptyDir": {}})));
        assert_denied(
            v,
            "volume \"etc\": hostPath=/etc",
            add_volume(json!({"name": "etc", "hostPath": {"path": "/etc"}})),
        );
    }
}

#[test]
fn s5_v_host_ports_every_version() {
    for v in ENDS {
        assert_allowed(v, |p| {
            set(p, "/spec/containers/0/ports/0/hostPort", json!(0))
        });
        assert_denied(v, "container \"app\": ports.hostPort=1", |p| {
            set(p, "/spec/containers/0/ports/0/hostPort", json!(1))
        });
    }
}

#[test]
fn s5_v_app_armor_profile_every_version() {
    let annotation = "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app";
    for v in ENDS {
        for allowed in ["", "runtime/default", "localhost/k8s-wasm"] {
            assert_allowed(v, |p| set(p, annotation, json!(allowed)));
        }
        assert_denied(
            v,
            "metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]=unconfined",
            |p| set(p, annotation, json!("unconfined")),
        );
        for allowed in ["RuntimeDefault", "Localhost"] {
            assert_allowed(v, |p| {
                set(
                    p,
                    "/spec/securityContext/appArmorProfile",
                    json!({"type": allowed}),
                )
            });
        }
        assert_denied(
            v,
            "container \"app\": securityContext.appArmorProfile.type=Unconfined",
            container_sc("appArmorProfile", json!({"type": "Unconfined"})),
        );
    }
}

#[test]
fn s5_v_se_linux_options_container_engine_t_from_v1_31() {
    let pod_type = |t: &'static str| {
        move |p: &mut Value| {
            set(
                p,
                "/spec/securityContext/seLinuxOptions",
                json!({"type": t, "level": "s0:c1,c2"}),
            )
        }
    };
    assert_allowed("v1.30", pod_type("container_kvm_t"));
    assert_denied(
        "v1.30",
        "spec.securityContext.seLinuxOptions.type=container_engine_t",
        pod_type("container_engine_t"),
    );
    for v in ["v1.31", "v1.37", "latest"] {
        assert_allowed(v, pod_type("container_engine_t"));
        assert_allowed(v, pod_type(""));
        assert_denied(
            v,
            "spec.securityContext.seLinuxOptions.type=spc_t",
            pod_type("spc_t"),
        );
    }
    for v in ENDS {
        assert_denied(
            v,
            "container \"app\": securityContext.seLinuxOptions.user=system_u",
            container_sc("seLinuxOptions", json!({"user": "system_u"})),
        );
        assert_denied(
            v,
            "container \"app\": securityContext.seLinuxOptions.role=system_r",
            container_sc("seLinuxOptions", json!({"role": "system_r"})),
        );
    }
}

#[test]
fn s5_v_proc_mount_unmasked_allowed_with_host_users_false_from_v1_35() {
    let unmasked = |host_users: Option<bool>| {
        move |p: &mut Value| {
            set(
                p,
                "/spec/containers/0/securityContext/procMount",
                json!("Unmasked"),
            );
            if let Some(h) = host_users {
                set(p, "/spec/hostUsers", json!(h));
            }
        }
    };
    for v in ENDS {
        assert_allowed(v, container_sc("procMount", json!("Default")));
    }
    for v in ["v1.30", "v1.34"] {
        assert_denied(
            v,
            "container \"app\": securityContext.procMount=Unmasked",
            unmasked(Some(false)),
        );
    }
    for v in ["v1.35", "v1.37", "latest"] {
        assert_allowed(v, unmasked(Some(false)));
        assert_denied(
            v,
            "securityContext.procMount=Unmasked",
            unmasked(Some(true)),
        );
        assert_denied(v, "securityContext.procMount=Unmasked", unmasked(None));
    }
}

#[test]
fn s5_v_seccomp_profile_baseline_every_version() {
    for v in ENDS {
        for allowed in ["RuntimeDefault", "Localhost"] {
            assert_allowed(v, container_sc("seccompProfile", json!({"type": allowed})));
        }
        assert_denied(
            v,
            "spec.securityContext.seccompProfile.type=Unconfined",
            |p| {
                set(
                    p,
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "Unconfined"}),
                )
            },
        );
        // Only the two are allowed, as upstream says (the apiserver refuses other types anyway).
        assert_denied(
            v,
            "container \"app\": securityContext.seccompProfile.type=\"\"",
            container_sc("seccompProfile", json!({})),
        );
    }
}

#[test]
fn s5_v_sysctls_v1_30_safe_set() {
    for name in [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ] {
        for v in ENDS {
            assert_allowed(v, sysctl(name));
        }
    }
    for v in ENDS {
        assert_denied(
            v,
            "spec.securityContext.sysctls=[kernel.msgmax]",
            sysctl("kernel.msgmax"),
        );
    }
}

#[test]
fn s5_v_sysctls_tcp_rmem_and_tcp_wmem_from_v1_32() {
    for name in ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"] {
        for v in ["v1.30", "v1.31"] {
            assert_denied(
                v,
                &format!("spec.securityContext.sysctls=[{name}]"),
                sysctl(name),
            );
        }
        for v in ["v1.32", "v1.36", "latest"] {
            assert_allowed(v, sysctl(name));
        }
    }
}

#[test]
fn s5_v_sysctls_tcp_slow_start_after_idle_and_tcp_notsent_lowat_from_v1_37() {
    for name in [
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    ] {
        for v in ["v1.30", "v1.32", "v1.36"] {
            assert_denied(
                v,
                &format!("spec.securityContext.sysctls=[{name}]"),
                sysctl(name),
            );
        }
        for v in ["v1.37", "latest"] {
            assert_allowed(v, sysctl(name));
        }
    }
}

#[test]
fn s5_v_windows_host_process_every_version() {
    for v in ENDS {
        assert_allowed(
            v,
            container_sc("windowsOptions", json!({"hostProcess": false})),
        );
        assert_denied(
            v,
            "container \"app\": securityContext.windowsOptions.hostProcess=true",
            container_sc("windowsOptions", json!({"hostProcess": true})),
        );
        assert_denied(
            v,
            "spec.securityContext.windowsOptions.hostProcess=true",
            |p| {
                set(
                    p,
                    "/spec/securityContext/windowsOptions/hostProcess",
                    json!(true),
                )
            },
        );
    }
}

/// Every field of the probe and lifecycle host check, as `(pointer under the container, field
/// in the message)`.
const HOST_FIELDS: [(&str, &str); 10] = [
    ("livenessProbe/httpGet", "livenessProbe.httpGet.host"),
    ("readinessProbe/httpGet", "readinessProbe.httpGet.host"),
    ("startupProbe/httpGet", "startupProbe.httpGet.host"),
    ("livenessProbe/tcpSocket", "livenessProbe.tcpSocket.host"),
    ("readinessProbe/tcpSocket", "readinessProbe.tcpSocket.host"),
    ("startupProbe/tcpSocket", "startupProbe.tcpSocket.host"),
    (
        "lifecycle/postStart/httpGet",
        "lifecycle.postStart.httpGet.host",
    ),
    (
        "lifecycle/preStop/httpGet",
        "lifecycle.preStop.httpGet.host",
    ),
    (
        "lifecycle/postStart/tcpSocket",
        "lifecycle.postStart.tcpSocket.host",
    ),
    (
        "lifecycle/preStop/tcpSocket",
        "lifecycle.preStop.tcpSocket.host",
    ),
];

fn handler_host(pointer: &'static str, host: &'static str) -> impl Fn(&mut Value) {
    move |p| {
        set(
            p,
            &format!("/spec/containers/0/{pointer}"),
            json!({"host": host, "port": 8080, "path": "/healthz"}),
        )
    }
}

#[test]
fn s5_v_probe_and_lifecycle_host_from_v1_34() {
    for (pointer, field) in HOST_FIELDS {
        for v in ["v1.30", "v1.33"] {
            assert_allowed(v, handler_host(pointer, "10.0.0.1"));
        }
        for v in ["v1.34", "v1.37", "latest"] {
            assert_allowed(v, handler_host(pointer, ""));
            assert_denied(
                v,
                &format!("container \"app\": {field}=10.0.0.1 (baseline since v1.34)"),
                handler_host(pointer, "10.0.0.1"),
            );
        }
    }
    // Init containers too, and the whole message keeps behaviour.md §5's shape.
    let m = verdict("v1.34", |p| {
        set(
            p,
            "/spec/initContainers",
            json!([{"name": "wait", "image": "busybox",
                    "startupProbe": {"tcpSocket": {"host": "db.internal", "port": 5432}}}]),
        )
    })
    .unwrap_err();
    assert_eq!(
        m,
        "wasm-admission: Wasm pod \"shop/cart\" is not allowed: initContainer \"wait\": \
         startupProbe.tcpSocket.host=db.internal (baseline since v1.34)"
    );
}

#[test]
fn s5_v_probe_host_in_a_deployment_template_is_denied() {
    let engine = engine();
    let mut d = fixture("deployment-wasm");
    set(
        &mut d,
        "/spec/template/spec/containers/0/readinessProbe",
        json!({"httpGet": {"host": "169.254.169.254", "path": "/", "port": 80}}),
    );
    let out = admit(&engine, &d);
    assert!(!out.allowed());
    assert!(
        out.message()
            .contains("readinessProbe.httpGet.host=169.254.169.254 (baseline since v1.34)"),
        "{}",
        out.message()
    );
}

#[test]
fn s5_v_default_is_latest_and_newer_versions_are_evaluated_as_latest() {
    let engine = engine();
    for v in ["latest", "v1.37", "v1.40", "v1.999"] {
        assert_allowed(v, sysctl("net.ipv4.tcp_notsent_lowat"));
        assert_denied(
            v,
            "livenessProbe.httpGet.host=10.0.0.1",
            handler_host("livenessProbe/httpGet", "10.0.0.1"),
        );
    }
    let mut pod = fixture("pod-wasm");
    sysctl("net.ipv4.tcp_notsent_lowat")(&mut pod);
    assert!(admit(&engine, &pod).allowed(), "the default is latest");
    handler_host("livenessProbe/httpGet", "10.0.0.1")(&mut pod);
    assert!(!admit(&engine, &pod).allowed(), "the default is latest");
}

#[test]
fn s5_v_privileged_policy_checks_only_the_privileged_flag_at_every_version() {
    for v in ["v1.30", "latest"] {
        let engine = engine_with(&format!(
            "security:\n  policy: privileged\n  baselineVersion: {v}\n"
        ));
        let mut pod = fixture("pod-wasm");
        handler_host("livenessProbe/httpGet", "10.0.0.1")(&mut pod);
        sysctl("kernel.msgmax")(&mut pod);
        assert!(admit(&engine, &pod).allowed(), "{v}");
        container_sc("privileged", json!(true))(&mut pod);
        let out = admit(&engine, &pod);
        assert!(!out.allowed(), "{v}");
        assert!(
            out.message()
                .ends_with(": container \"app\": securityContext.privileged=true"),
            "{}",
            out.message()
        );
    }
}
