//! The chart never deletes what it does not own (chart README, "PolicyReport CRDs"): the
//! wgpolicyk8s.io CRDs, and with them every tool's PolicyReports, survive `helm uninstall` and
//! `audit.enabled=false`, whether another tool installed the CRDs first or this chart did.

use std::time::Duration;

use serde_json::Value;

use crate::support::{World, eventually, root};

const CRDS: [&str; 2] = [
    "policyreports.wgpolicyk8s.io",
    "clusterpolicyreports.wgpolicyk8s.io",
];

/// Releases of this case, apart from the suite's own; uninstalled, with the CRDs and the
/// namespaces of the case deleted, when the case ends, also when it fails.
struct Cleanup<'a> {
    world: &'a World,
    releases: Vec<(String, String)>,
    namespaces: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for (release, ns) in &self.releases {
            self.world
                .helm(&["uninstall", release, "-n", ns, "--ignore-not-found"]);
        }
        let mut args = vec!["delete", "crd", "--ignore-not-found"];
        args.extend(CRDS);
        self.world.cluster.kubectl(&args);
        for ns in &self.namespaces {
            self.world.cluster.kubectl(&[
                "delete",
                "namespace",
                ns,
                "--ignore-not-found",
                "--wait=false",
            ]);
        }
    }
}

/// A PolicyReport as another policy engine writes it.
fn other_tools_report(ns: &str) -> String {
    format!(
        r#"{{"apiVersion":"wgpolicyk8s.io/v1alpha2","kind":"PolicyReport","metadata":{{"name":"other-engine","namespace":"{ns}","labels":{{"app.kubernetes.io/managed-by":"other-engine"}}}},"summary":{{"pass":0,"fail":1,"warn":0,"error":0,"skip":0}},"results":[{{"policy":"require-labels","rule":"check-team","result":"fail","source":"other-engine","message":"label team is required"}}]}}"#
    )
}

fn crds_served(world: &World) {
    eventually(
        Duration::from_secs(30),
        "the PolicyReport CRDs to be served",
        || {
            world.cluster.kubectl(&["get", "policyreports", "-A"]).ok
                && world.cluster.kubectl(&["get", "clusterpolicyreports"]).ok
        },
    );
}

fn release_of(world: &World, crd: &str) -> Option<String> {
    let crd: Value = world.cluster.json(&["get", "crd", crd]);
    crd["metadata"]["annotations"]["meta.helm.sh/release-name"]
        .as_str()
        .map(str::to_string)
}

fn assert_report_survives(world: &World, ns: &str, after: &str) {
    for crd in CRDS {
        assert!(
            world.cluster.kubectl(&["get", "crd", crd]).ok,
            "{after} deleted the CRD {crd}"
        );
    }
    let report = world.cluster.kubectl(&[
        "-n",
        ns,
        "get",
        "policyreport",
        "other-engine",
        "-o",
        "json",
    ]);
    assert!(
        report.ok,
        "{after} deleted another tool's PolicyReport: {}",
        report.stderr
    );
    let report: Value = serde_json::from_str(&report.stdout).expect("report JSON");
    assert_eq!(report["results"][0]["source"], "other-engine", "{report:#}");
}

/// `helm upgrade --install` of the chart as a second release, with the audit on or off; its
/// webhook configurations call a URL where nothing listens, with failurePolicy Ignore, so that
/// they never stand in the way of the suite's other cases.
fn install(world: &World, release: &str, ns: &str, audit: bool) -> String {
    let chart = root().join("deploy/helm/wasm-admission");
    let audit = format!("audit.enabled={audit}");
    world
        .helm(&[
            "upgrade",
            "--install",
            release,
            chart.to_str().expect("utf-8 path"),
            "-n",
            ns,
            "--create-namespace",
            "--wait=false",
            "--reset-then-reuse-values",
            "--set",
            "webhook.url=https://127.0.0.1:9/",
            "--set",
            "webhook.failurePolicy=Ignore",
            "--set",
            &audit,
        ])
        .expect_ok(&format!("helm upgrade --install {release} ({audit})"))
}

pub fn policy_reports_of_other_tools_survive_uninstall_and_audit_off(world: &World) {
    let cluster = &world.cluster;
    let reports = cluster.namespace("chart-reports", false);
    let mut cleanup = Cleanup {
        world,
        releases: Vec::new(),
        namespaces: vec![reports.clone()],
    };
    for crd in CRDS {
        assert!(
            !cluster.kubectl(&["get", "crd", crd]).ok,
            "{crd} is left over from an earlier case"
        );
    }

    // 1. Another tool installed the CRDs and wrote a report: the chart installs next to them,
    //    does not take them over, and leaves them on uninstall.
    let crds = root().join("deploy/helm/wasm-admission/files/policyreport-crds.yaml");
    cluster
        .kubectl(&["apply", "-f", crds.to_str().expect("utf-8 path")])
        .expect_ok("the other tool installs the CRDs");
    crds_served(world);
    cluster
        .kubectl_in(&["create", "-f", "-"], &other_tools_report(&reports))
        .expect_ok("the other tool writes a report");
    cleanup
        .releases
        .push(("chart-beside".into(), "chart-beside".into()));
    install(world, "chart-beside", "chart-beside", true);
    for crd in CRDS {
        assert_eq!(release_of(world, crd), None, "the chart took over {crd}");
    }
    let out = world
        .helm(&["uninstall", "chart-beside", "-n", "chart-beside"])
        .expect_ok("helm uninstall chart-beside");
    assert_report_survives(world, &reports, &format!("helm uninstall ({})", out.trim()));

    // 2. The chart installed the CRDs; another tool writes a report into them. Neither turning
    //    the audit off nor uninstalling deletes them.
    let mut args = vec!["delete", "crd", "--wait=true"];
    args.extend(CRDS);
    cluster
        .kubectl(&args)
        .expect_ok("delete the other tool's CRDs");
    cleanup
        .releases
        .push(("chart-owner".into(), "chart-owner".into()));
    install(world, "chart-owner", "chart-owner", true);
    crds_served(world);
    for crd in CRDS {
        assert_eq!(
            release_of(world, crd).as_deref(),
            Some("chart-owner"),
            "the chart did not install {crd}"
        );
    }
    cluster
        .kubectl_in(&["create", "-f", "-"], &other_tools_report(&reports))
        .expect_ok("the other tool writes a report into the chart's CRDs");
    install(world, "chart-owner", "chart-owner", false);
    assert_report_survives(world, &reports, "helm upgrade --set audit.enabled=false");
    // Back on: the release still owns its CRDs (an upgrade renders them again).
    install(world, "chart-owner", "chart-owner", true);
    let out = world
        .helm(&["uninstall", "chart-owner", "-n", "chart-owner"])
        .expect_ok("helm uninstall chart-owner");
    assert!(
        out.contains("kept due to the resource policy"),
        "helm uninstall does not say it kept the CRDs: {out}"
    );
    assert_report_survives(world, &reports, "helm uninstall");

    // 3. Installed again under the same name, the release adopts the CRDs it left behind.
    install(world, "chart-owner", "chart-owner", true);
    for crd in CRDS {
        assert_eq!(release_of(world, crd).as_deref(), Some("chart-owner"));
    }
    assert_report_survives(world, &reports, "helm install over kept CRDs");
    drop(cleanup);
}
