//! `scripts/cluster.sh` on bad input: each failure names what to fix, exits non-zero and leaves
//! nothing running or behind.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh")
}

fn cluster_sh(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("bash");
    command.arg(script()).args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run cluster.sh")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn build_without_go_names_the_missing_toolchain() {
    let cache = tempfile::tempdir().expect("dir");
    // A PATH with bash and the core tools but no go.
    let out = cluster_sh(
        &["build"],
        &[
            ("PATH", "/usr/bin:/bin"),
            ("WASM_ADMISSION_CACHE", cache.path().to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("go is not installed: install Go 1.26"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failed_build_says_so_and_keeps_no_half_built_cache() {
    let cache = tempfile::tempdir().expect("dir");
    let modules = tempfile::tempdir().expect("dir");
    // No module cache and no proxy: the download, and so the build, fails.
    let out = cluster_sh(
        &["build"],
        &[
            ("WASM_ADMISSION_CACHE", cache.path().to_str().unwrap()),
            ("GOMODCACHE", modules.path().to_str().unwrap()),
            ("GOPROXY", "off"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the control-plane build failed"),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(cache.path().join("controlplane"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
    // Go's module cache is read-only; let the temp folder go.
    let _ = Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(modules.path())
        .status();
}

#[test]
fn up_on_a_port_in_use_names_the_port_and_starts_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let state = tempfile::tempdir().expect("dir");
    let dir = state.path().join("cluster");
    let out = cluster_sh(
        &["up"],
        &[
            ("WASM_ADMISSION_APISERVER_PORT", &port),
            ("WASM_ADMISSION_CLUSTER_DIR", dir.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("port {port} on 127.0.0.1"))
            && stderr(&out).contains("is in use"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists(), "up left {}", dir.display());
}

#[test]
fn a_second_up_while_one_runs_says_so_and_down_stops_everything() {
    let state = tempfile::tempdir().expect("dir");
    let dir = state.path().join("cluster");
    let env = [("WASM_ADMISSION_CLUSTER_DIR", dir.to_str().unwrap())];
    let first = cluster_sh(&["up"], &env);
    // Whatever happens below, stop it.
    struct Down<'a>(&'a [(&'a str, &'a str)]);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = cluster_sh(&["down"], self.0);
        }
    }
    let _down = Down(&env);
    assert!(first.status.success(), "{}", stderr(&first));
    let pids: Vec<u32> = std::fs::read_to_string(dir.join("pids"))
        .expect("pids")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );

    let second = cluster_sh(&["up"], &env);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("a control plane already runs in"),
        "{}",
        stderr(&second)
    );

    let down = cluster_sh(&["down"], &env);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(!dir.exists(), "down left {}", dir.display());
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state.rsplit(") ").next().unwrap_or("").chars().next();
        assert!(
            state.is_none() || state == Some('Z'),
            "process {pid} still runs after down"
        );
    }
}
