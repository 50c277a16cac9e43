//! The baseline checks against Kubernetes' own Pod Security Admission, built into the pinned
//! kube-apiserver: for every `security.baselineVersion` the apiserver knows (v1.30 to its own
//! minor), the webhook's verdict on a Wasm pod equals PSA's verdict at `enforce: baseline` with
//! that `enforce-version`, on pods at each line that moved between versions and one over each
//! other line.

use serde_json::Value;

use crate::support::World;

/// (name, pod spec JSON): each one just inside or just outside a baseline line.
pub const PODS: &[(&str, &str)] = &[
    ("plain", r#"{"containers":[{"name":"app","image":"a:1"}]}"#),
    (
        "privileged",
        r#"{"containers":[{"name":"app","image":"a:1","securityContext":{"privileged":true}}]}"#,
    ),
    (
        "host-network",
        r#"{"hostNetwork":true,"containers":[{"name":"app","image":"a:1"}]}"#,
    ),
    (
        "host-port",
        r#"{"containers":[{"name":"app","image":"a:1","ports":[{"containerPort":80,"hostPort":8080}]}]}"#,
    ),
    (
        "host-path",
        r#"{"volumes":[{"name":"h","hostPath":{"path":"/etc"}}],"containers":[{"name":"app","image":"a:1"}]}"#,
    ),
    (
        "cap-net-bind",
        r#"{"containers":[{"name":"app","image":"a:1","securityContext":{"capabilities":{"add":["NET_BIND_SERVICE"]}}}]}"#,
    ),
    (
        "cap-sys-admin",
        r#"{"containers":[{"name":"app","image":"a:1","securityContext":{"capabilities":{"add":["SYS_ADMIN"]}}}]}"#,
    ),
    (
        "seccomp-unconfined",
        r#"{"securityContext":{"seccompProfile":{"type":"Unconfined"}},"containers":[{"name":"app","image":"a:1"}]}"#,
    ),
    (
        "apparmor-unconfined",
        r#"{"containers":[{"name":"app","image":"a:1","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}]}"#,
    ),
    (
        "selinux-container-engine-t",
        r#"{"containers":[{"name":"app","image":"a:1","securityContext":{"seLinuxOptions":{"type":"container_engine_t"}}}]}"#,
    ),
    (
        "selinux-user",
        r#"{"containers":[{"name":"app","image":"a:1","securityContext":{"seLinuxOptions":{"user":"root"}}}]}"#,
    ),
    (
        "sysctl-tcp-rmem",
        r#"{"securityContext":{"sysctls":[{"name":"net.ipv4.tcp_rmem","value":"4096 87380 6291456"}]},"containers":[{"name":"app","image":"a:1"}]}"#,
    ),
    (
        "sysctl-port-range",
        r#"{"securityContext":{"sysctls":[{"name":"net.ipv4.ip_local_port_range","value":"1024 65000"}]},"containers":[{"name":"app","image":"a:1"}]}"#,
    ),
    (
        "sysctl-unsafe",
        r#"{"securityContext":{"sysctls":[{"name":"kernel.msgmax","value":"65536"}]},"containers":[{"name":"app","image":"a:1"}]}"#,
    ),
    (
        "probe-host",
        r#"{"containers":[{"name":"app","image":"a:1","readinessProbe":{"httpGet":{"host":"10.0.0.1","port":80}}}]}"#,
    ),
    (
        "lifecycle-host",
        r#"{"containers":[{"name":"app","image":"a:1","lifecycle":{"postStart":{"tcpSocket":{"host":"10.0.0.1","port":80}}}}]}"#,
    ),
    (
        "proc-mount-unmasked-own-userns",
        r#"{"hostUsers":false,"containers":[{"name":"app","image":"a:1","securityContext":{"procMount":"Unmasked"}}]}"#,
    ),
];

pub fn pod(name: &str, ns: &str, spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{spec}}}"#
    )
}

/// Writes [`PODS`] in namespace `ns` as one List to `path`; returns each pod's JSON.
pub fn write_pods(path: &std::path::Path, ns: &str) -> Vec<String> {
    let docs: Vec<String> = PODS
        .iter()
        .map(|(name, spec)| pod(name, ns, spec))
        .collect();
    std::fs::write(
        path,
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            docs.join(",")
        ),
    )
    .expect("pods");
    docs
}

pub fn baseline_verdicts_equal_pod_security_admission_at_every_version(world: &World) {
    let cluster = &world.cluster;
    let server: Value = serde_json::from_str(
        &cluster
            .kubectl(&["version", "-o", "json"])
            .expect_ok("kubectl version"),
    )
    .expect("version JSON");
    let newest: u32 = server["serverVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .expect("server minor");
    let dir = tempfile::tempdir().expect("dir");
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for minor in 30..=newest {
        let version = format!("v1.{minor}");
        // Not opted in: only Pod Security Admission judges these pods here.
        let ns = cluster.namespace(&format!("psa-v1-{minor}"), false);
        cluster
            .kubectl(&[
                "label",
                "namespace",
                &ns,
                "pod-security.kubernetes.io/enforce=baseline",
                &format!("pod-security.kubernetes.io/enforce-version={version}"),
            ])
            .expect_ok("label namespace for PSA");
        let config = dir.path().join(format!("{version}.yaml"));
        std::fs::write(
            &config,
            format!("security:\n  baselineVersion: {version}\n"),
        )
        .expect("config");
        let manifests = dir.path().join(format!("{version}-pods.json"));
        let docs = write_pods(&manifests, &ns);
        let checked = world.check_json_with(&config, &manifests);
        for ((name, _), doc) in PODS.iter().zip(&docs) {
            let psa = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], doc);
            if !psa.ok {
                assert!(
                    psa.stderr.contains("violates PodSecurity"),
                    "{name}: {}",
                    psa.stderr
                );
            }
            let ours = checked
                .iter()
                .find(|d| d["name"] == *name)
                .unwrap_or_else(|| panic!("check reported no {name}"));
            let allowed = ours["allowed"] == true;
            compared += 1;
            if allowed != psa.ok {
                mismatches.push(format!(
                    "{version} {name}: Pod Security Admission {}, wasm-admission {} ({})",
                    if psa.ok { "allows" } else { "denies" },
                    if allowed { "allows" } else { "denies" },
                    if psa.ok {
                        ours["message"].as_str().unwrap_or("")
                    } else {
                        psa.stderr.trim()
                    }
                ));
            }
        }
    }
    println!("    {compared} verdicts compared with Pod Security Admission (v1.30 to v1.{newest})");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
