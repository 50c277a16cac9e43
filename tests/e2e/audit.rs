//! behaviour.md §11 against the real API: `audit` finds objects the webhook never saw, with the
//! verdicts `check` gives on the same manifests, writes PolicyReports that kubectl reads back, and
//! says which permission is missing; `serve` warns while no node can run a pod's RuntimeClass,
//! and stops when a node gets the label, without a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admission::injected;
use crate::support::{World, eventually, root};

const SPIN_LABEL: &str = "example.com/spin";

/// Workloads created in a namespace that is not opted in: the webhook never sees them.
fn manifests(ns: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "Deployment",
            "cart",
            format!(
                r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"cart","namespace":"{ns}"}},"spec":{{"replicas":0,"selector":{{"matchLabels":{{"app":"cart"}}}},"template":{{"metadata":{{"labels":{{"app":"cart"}},"annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/cart:1"}}]}}}}}}}}"#
            ),
        ),
        (
            "Pod",
            "debug",
            format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"debug","namespace":"{ns}","annotations":{{"wasm-admission.io/wasm":"true"}}}},"spec":{{"containers":[{{"name":"app","image":"ghcr.io/acme/debug:1","securityContext":{{"privileged":true}}}}]}}}}"#
            ),
        ),
        (
            "CronJob",
            "report",
            format!(
                r#"{{"apiVersion":"batch/v1","kind":"CronJob","metadata":{{"name":"report","namespace":"{ns}"}},"spec":{{"schedule":"0 3 * * *","suspend":true,"jobTemplate":{{"spec":{{"template":{{"metadata":{{"annotations":{{"wasm-admission.io/wasm":"true","wasm-admission.io/otel":"false"}}}},"spec":{{"restartPolicy":"Never","runtimeClassName":"wasm","containers":[{{"name":"app","image":"ghcr.io/acme/report:1","resources":{{"requests":{{"cpu":"250m","memory":"64Mi"}},"limits":{{"cpu":"500m","memory":"128Mi"}}}}}}]}}}}}}}}}}}}"#
            ),
        ),
        (
            "Deployment",
            "web",
            format!(
                r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web","namespace":"{ns}"}},"spec":{{"replicas":0,"selector":{{"matchLabels":{{"app":"web"}}}},"template":{{"metadata":{{"labels":{{"app":"web"}}}},"spec":{{"containers":[{{"name":"app","image":"nginx:1.27"}}]}}}}}}}}"#
            ),
        ),
    ]
}

fn find<'a>(entries: &'a [Value], kind: &str, name: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["kind"] == kind && e["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in {entries:#?}"))
}

pub fn audit_finds_existing_objects_with_the_verdict_check_gives(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("audit-existing", false);
    let dir = tempfile::tempdir().expect("dir");
    let mut files: Vec<(&str, &str, PathBuf)> = Vec::new();
    for (kind, name, json) in manifests(&ns) {
        cluster
            .kubectl_in(&["create", "-f", "-"], &json)
            .expect_ok("create with the webhook not involved");
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, &json).expect("write");
        files.push((kind, name, file));
    }
    let stored = cluster.json(&["-n", &ns, "get", "deployment", "cart"]);
    assert_eq!(injected(&stored), None, "the webhook saw the namespace");

    let out = world.audit_with(&cluster.kubeconfig, &["-n", &ns, "-o", "json"]);
    assert_eq!(out.code, Some(1), "a denial exits 1: {}", out.stderr);
    // The controller manager adds ReplicaSets of the Deployments; they are audited too.
    let audited: Vec<Value> = serde_json::from_str(&out.stdout).expect("audit -o json");
    for (kind, name, file) in &files {
        let checked = world.check_json(file);
        let (c, a) = (&checked[0], find(&audited, kind, name));
        assert_eq!(a["allowed"], c["allowed"], "{kind} {name}");
        assert_eq!(a["message"], c["message"], "{kind} {name}");
        assert_eq!(a["warnings"], c["warnings"], "{kind} {name}");
        assert_eq!(
            injected(&a["object"]),
            injected(&c["object"]),
            "{kind} {name}"
        );
    }
    assert_eq!(
        injected(&find(&audited, "Deployment", "cart")["object"]).as_deref(),
        Some("runtime-class,resources,otel")
    );
    assert_eq!(find(&audited, "Pod", "debug")["allowed"], false);

    // Text and JUnit come from the same report code as check's.
    let text = world.audit_with(&cluster.kubeconfig, &["-n", &ns]);
    assert!(
        text.stdout
            .contains(&format!("mutated   Deployment {ns}/cart (cluster#"))
            && text
                .stdout
                .contains(&format!("DENIED    Pod {ns}/debug (cluster#"))
            && text.stdout.contains(", 1 denied, 0 errors"),
        "{}",
        text.stdout
    );
    let junit = world.audit_with(&cluster.kubeconfig, &["-n", &ns, "-o", "junit"]);
    assert!(
        junit
            .stdout
            .contains("<testsuite name=\"wasm-admission audit\"")
            && junit.stdout.contains("type=\"baseline.privileged\""),
        "{}",
        junit.stdout
    );
}

/// Removes the CRDs again, also when the case fails.
struct DeleteCrds<'w>(&'w World, PathBuf);

impl Drop for DeleteCrds<'_> {
    fn drop(&mut self) {
        self.0.cluster.kubectl(&[
            "delete",
            "-f",
            self.1.to_str().unwrap_or_default(),
            "--ignore-not-found",
        ]);
    }
}

pub fn policy_reports_are_applied_and_read_back_with_kubectl(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("audit-reports", false);
    for (_, _, json) in manifests(&ns) {
        cluster
            .kubectl_in(&["create", "-f", "-"], &json)
            .expect_ok("create");
    }
    let crds = root().join("deploy/helm/wasm-admission/files/policyreport-crds.yaml");
    let _delete = DeleteCrds(world, crds.clone());
    cluster
        .kubectl(&["apply", "-f", crds.to_str().expect("utf-8")])
        .expect_ok("install the PolicyReport CRDs");
    eventually(Duration::from_secs(20), "the CRDs to be served", || {
        cluster.kubectl(&["get", "policyreports", "-A"]).ok
            && cluster.kubectl(&["get", "clusterpolicyreports"]).ok
    });

    // Printed, then applied by kubectl.
    let out = world.audit_with(&cluster.kubeconfig, &["-n", &ns, "-o", "policyreport"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    cluster
        .kubectl_in(&["apply", "-f", "-"], &out.stdout)
        .expect_ok("kubectl apply the reports");
    let report = cluster.json(&["-n", &ns, "get", "policyreport", "wasm-admission"]);
    assert_eq!(report["summary"]["fail"], 1, "{report:#}");
    assert_eq!(report["summary"]["pass"], 1, "{report:#}");
    assert!(report["summary"]["skip"].as_u64() >= Some(1), "{report:#}");
    let results = report["results"].as_array().expect("results");
    assert!(
        !results.iter().any(|r| r["resources"][0]["name"] == "web"),
        "objects that are not Wasm are counted, not listed"
    );
    let of = |kind: &str, name: &str| {
        results
            .iter()
            .find(|r| r["resources"][0]["kind"] == kind && r["resources"][0]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} in {results:#?}"))
            .clone()
    };
    let debug = of("Pod", "debug");
    assert_eq!(debug["result"], "fail");
    // The rule id of the check that failed (docs/behaviour.md, "Rule ids").
    assert_eq!(debug["rule"], "baseline.privileged");
    assert_eq!(debug["source"], "wasm-admission");
    assert!(
        debug["message"]
            .as_str()
            .unwrap_or_default()
            .contains("privileged=true")
    );
    assert_eq!(of("Deployment", "cart")["result"], "warn");
    let cart_rule = of("Deployment", "cart")["rule"].clone();
    assert!(
        cart_rule.as_str().is_some_and(|r| r.starts_with("mutate.")),
        "{cart_rule}"
    );
    assert_eq!(of("CronJob", "report")["result"], "pass");

    // Applied by audit itself (what the chart's CronJob runs), over every namespace.
    cluster
        .kubectl(&["-n", &ns, "delete", "pod", "debug", "--wait=false"])
        .expect_ok("delete the denied pod");
    eventually(Duration::from_secs(20), "the pod to go", || {
        !cluster.kubectl(&["-n", &ns, "get", "pod", "debug"]).ok
    });
    let applied = world.audit_with(&cluster.kubeconfig, &["-o", "policyreport", "--apply"]);
    assert_eq!(applied.code, Some(0), "{}", applied.stderr);
    let report = cluster.json(&["-n", &ns, "get", "policyreport", "wasm-admission"]);
    assert_eq!(report["summary"]["fail"], 0, "{report:#}");
    assert_eq!(report["summary"]["pass"], 1, "{report:#}");
    let whole = cluster.json(&["get", "clusterpolicyreport", "wasm-admission"]);
    assert!(
        whole["summary"]["warn"].as_u64().unwrap_or(0) >= 2,
        "{whole:#}"
    );
}

/// A kubeconfig for the same server as `admin`, as ServiceAccount `sa` of `ns`.
fn kubeconfig_for(world: &World, ns: &str, sa: &str, dir: &Path) -> PathBuf {
    let cluster = &world.cluster;
    cluster
        .kubectl(&["-n", ns, "create", "serviceaccount", sa])
        .expect_ok("create service account");
    let token = cluster
        .kubectl(&["-n", ns, "create", "token", sa])
        .expect_ok("token");
    let admin = cluster.json(&["config", "view", "--raw", "--minify"]);
    let c = &admin["clusters"][0]["cluster"];
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        c["server"].as_str().expect("server"),
        c["certificate-authority-data"].as_str().expect("CA data"),
        token.trim()
    );
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

pub fn audit_without_permission_or_apiserver_says_what_to_fix(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("audit-denied", false);
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = kubeconfig_for(world, &ns, "nobody", dir.path());
    let started = Instant::now();
    let out = world.audit_with(&kubeconfig, &["-n", &ns]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "no permission to list pods in namespace \"{ns}\" (403 Forbidden"
        )) && out.stderr.contains("grant `list` on pods"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("grant `list` on cronjobs.batch"),
        "every kind is tried and named: {}",
        out.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // A server that accepts connections and never answers: a message within the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let text = std::fs::read_to_string(&kubeconfig).expect("read");
    let server =
        cluster.json(&["config", "view", "--raw", "--minify"])["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("server")
            .to_string();
    let dead = dir.path().join("dead.kubeconfig");
    std::fs::write(
        &dead,
        text.replace(&server, &format!("https://127.0.0.1:{port}")),
    )
    .expect("write");
    let started = Instant::now();
    let out = world.audit_with(&dead, &["--timeout", "2"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("did not answer within 2s"),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "one timeout, not one per kind: {:?}",
        started.elapsed()
    );
    drop(silent);
}

/// Deletes the node and the class, also when the case fails.
struct Cleanup<'w>(&'w World);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let c = &self.0.cluster;
        c.kubectl(&["delete", "node", "e2e-spin-node", "--ignore-not-found"]);
        c.kubectl(&["delete", "runtimeclass", "spin-nodes", "--ignore-not-found"]);
    }
}

pub fn no_node_matches_warning_appears_and_disappears_without_restart(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("node-warning", true);
    let _cleanup = Cleanup(world);
    cluster
        .kubectl_in(
            &["apply", "-f", "-"],
            &format!(
                r#"{{"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{{"name":"spin-nodes"}},"handler":"spin","scheduling":{{"nodeSelector":{{"{SPIN_LABEL}":"true"}}}}}}"#
            ),
        )
        .expect_ok("create RuntimeClass spin-nodes");
    let deployment = crate::admission::deployment_naming_class("probe", &ns, "spin-nodes");
    let expected = format!(
        "wasm-admission: no node matches RuntimeClass \"spin-nodes\" ({SPIN_LABEL}=true); the pod will stay Pending"
    );
    let warns = || {
        let out = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &deployment);
        assert!(out.ok, "{}", out.stderr);
        out.warnings().contains(&expected)
    };
    if !crate::support::within(Duration::from_secs(20), warns) {
        let out = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &deployment);
        let logs = world.webhook().take_logs();
        panic!(
            "no no-node warning; kubectl said {:?}; serve logged {logs:#?}",
            out.warnings()
        );
    }

    let node = format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"e2e-spin-node","labels":{{"{SPIN_LABEL}":"true","kubernetes.io/os":"linux"}}}}}}"#
    );
    cluster
        .kubectl_in(&["create", "-f", "-"], &node)
        .expect_ok("create a labelled Node");
    eventually(Duration::from_secs(20), "the warning to go", || !warns());

    cluster
        .kubectl(&["label", "node", "e2e-spin-node", &format!("{SPIN_LABEL}-")])
        .expect_ok("remove the label");
    eventually(Duration::from_secs(20), "the warning to come back", warns);

    let metrics = world.webhook().metrics();
    assert!(
        metrics.contains("wasm_admission_node_watch_state 2"),
        "{metrics}"
    );
    assert!(
        crate::support::metric_sum(&metrics, "wasm_admission_nodes_watched", &[]) >= 1.0,
        "{metrics}"
    );
}

/// Deletes what the RBAC case made at cluster scope, also when it fails.
struct DeleteRbac<'w>(&'w World, String);

impl Drop for DeleteRbac<'_> {
    fn drop(&mut self) {
        let c = &self.0.cluster;
        c.kubectl(&[
            "delete",
            "clusterrolebinding",
            &self.1,
            "--ignore-not-found",
        ]);
        c.kubectl(&["delete", "clusterrole", &self.1, "--ignore-not-found"]);
    }
}

/// Issue 28, item 7: the chart's audit ClusterRole, exactly as helm renders it, lets `audit
/// --apply` create its reports and patch them on the next run, and nothing more: as that account,
/// another tool's PolicyReport can be neither patched nor updated (before, it could be rewritten
/// from fail to pass).
pub fn audit_account_creates_and_patches_only_its_own_reports(world: &World) {
    let cluster = &world.cluster;
    let ns = cluster.namespace("audit-rbac", false);
    for (_, _, json) in manifests(&ns) {
        cluster
            .kubectl_in(&["create", "-f", "-"], &json)
            .expect_ok("create");
    }
    let crds = root().join("deploy/helm/wasm-admission/files/policyreport-crds.yaml");
    let _delete = DeleteCrds(world, crds.clone());
    cluster
        .kubectl(&["apply", "-f", crds.to_str().expect("utf-8")])
        .expect_ok("install the PolicyReport CRDs");
    eventually(Duration::from_secs(20), "the CRDs to be served", || {
        cluster.kubectl(&["get", "policyreports", "-A"]).ok
    });

    // The chart's ClusterRole, as rendered, bound to a fresh account.
    let chart = root().join("deploy/helm/wasm-admission");
    let rendered = world
        .helm(&[
            "template",
            "e2e-rbac",
            chart.to_str().expect("utf-8"),
            "--set",
            "audit.enabled=true",
            "--set",
            "policyReports.installCRDs=false",
            "--show-only",
            "templates/audit.yaml",
        ])
        .expect_ok("helm template the audit");
    let role = rendered
        .split("\n---")
        .find(|doc| doc.contains("\nkind: ClusterRole\n"))
        .unwrap_or_else(|| panic!("no ClusterRole in {rendered}"))
        .to_string();
    let role_name = "e2e-rbac-wasm-admission-audit".to_string();
    assert!(role.contains(&role_name), "{role}");
    let _rbac = DeleteRbac(world, role_name.clone());
    cluster
        .kubectl_in(&["apply", "-f", "-"], &role)
        .expect_ok("apply the chart's ClusterRole");
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = kubeconfig_for(world, &ns, "auditor", dir.path());
    cluster
        .kubectl(&[
            "create",
            "clusterrolebinding",
            &role_name,
            "--clusterrole",
            &role_name,
            "--serviceaccount",
            &format!("{ns}:auditor"),
        ])
        .expect_ok("bind the ClusterRole");

    // Another tool's report, failing.
    let foreign = format!(
        r#"{{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{{"name":"other-tool","namespace":"{ns}"}},"summary":{{"fail":1}},"results":[{{"policy":"other","result":"fail","source":"other-tool"}}]}}"#
    );
    cluster
        .kubectl_in(&["create", "-f", "-"], &foreign)
        .expect_ok("create a foreign PolicyReport");
    let as_auditor = |args: &[&str]| {
        let mut command = cluster.kubectl_command(args);
        command.env("KUBECONFIG", &kubeconfig);
        let out = command.output().expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for verb in ["patch", "update"] {
        let (_, answer, _) =
            as_auditor(&["auth", "can-i", verb, "policyreports/other-tool", "-n", &ns]);
        assert_eq!(answer, "no", "{verb} a foreign report");
    }
    let (patched, _, stderr) = as_auditor(&[
        "-n",
        &ns,
        "patch",
        "policyreport",
        "other-tool",
        "--type",
        "merge",
        "-p",
        r#"{"summary":{"fail":0,"pass":1}}"#,
    ]);
    assert!(!patched, "the audit account rewrote a foreign report");
    assert!(
        stderr.contains("Forbidden") || stderr.contains("forbidden"),
        "{stderr}"
    );
    let foreign_now = cluster.json(&["-n", &ns, "get", "policyreport", "other-tool"]);
    assert_eq!(foreign_now["summary"]["fail"], 1, "{foreign_now:#}");

    // audit --apply as that account: created, then patched on the second run.
    for run in ["creates", "patches"] {
        let out = world.audit_with(&kubeconfig, &["-n", &ns, "-o", "policyreport", "--apply"]);
        assert_eq!(out.code, Some(0), "audit --apply {run}: {}", out.stderr);
        assert!(
            out.stderr.contains("applied PolicyReport"),
            "{}",
            out.stderr
        );
    }
    let ours = cluster.json(&["-n", &ns, "get", "policyreport", "wasm-admission"]);
    assert_eq!(ours["summary"]["fail"], 1, "{ours:#}");
}
