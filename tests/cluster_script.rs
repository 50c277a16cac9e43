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

/// `up --node` changes machine-wide state (cgroups, mounts, a bridge): it needs root. Outside CI a
/// developer without root sees the test skipped, with the reason.
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root, and CI is set"
    );
    eprintln!("SKIPPED: {test} needs root (cluster.sh up --node)");
    false
}

#[test]
fn up_node_without_the_cni_plugins_names_the_package_and_starts_nothing() {
    if !root_or_skip("up_node_without_the_cni_plugins_names_the_package_and_starts_nothing") {
        return;
    }
    let state = tempfile::tempdir().expect("dir");
    let empty = tempfile::tempdir().expect("dir");
    let dir = state.path().join("cluster");
    let out = cluster_sh(
        &["up", "--node"],
        &[
            ("WASM_ADMISSION_CLUSTER_DIR", dir.to_str().unwrap()),
            ("WASM_ADMISSION_CNI_BIN", empty.path().to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("CNI plugin")
            && stderr(&out).contains("apt-get install containernetworking-plugins"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists(), "up left {}", dir.display());
}

#[test]
fn up_with_an_unknown_option_names_it() {
    let state = tempfile::tempdir().expect("dir");
    let dir = state.path().join("cluster");
    let out = cluster_sh(
        &["up", "--nodes"],
        &[("WASM_ADMISSION_CLUSTER_DIR", dir.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown option '--nodes'") && stderr(&out).contains("up [--node]"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists(), "up left {}", dir.display());
}

#[test]
fn a_failed_shim_build_says_so_and_keeps_no_half_built_cache() {
    let cache = tempfile::tempdir().expect("dir");
    let cargo_home = tempfile::tempdir().expect("dir");
    // No registry index and offline: cargo cannot resolve the shim's crates.
    let out = cluster_sh(
        &["build-node"],
        &[
            ("WASM_ADMISSION_CACHE", cache.path().to_str().unwrap()),
            ("CARGO_HOME", cargo_home.path().to_str().unwrap()),
            ("CARGO_NET_OFFLINE", "true"),
            (
                "RUSTUP_HOME",
                &std::env::var("RUSTUP_HOME").unwrap_or_else(|_| {
                    format!("{}/.rustup", std::env::var("HOME").unwrap_or_default())
                }),
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the Wasm shim build failed"),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(cache.path().join("wasm-shim"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

/// What a node leaves on the machine: processes, mounts, network namespaces, veths, iptables
/// chains and rules, the node's cgroups.
#[derive(Debug, PartialEq)]
struct MachineState {
    processes: Vec<String>,
    mounts: Vec<String>,
    netns: usize,
    links: Vec<String>,
    iptables: Vec<String>,
    cgroups: Vec<String>,
}

fn command_lines(program: &str, args: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn machine_state(dir: &Path) -> MachineState {
    let dir = dir.to_string_lossy().into_owned();
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
    {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = [
            "containerd",
            "kubelet",
            "kube-scheduler",
            "docker-registry",
            "pause",
            "hello",
        ]
        .iter()
        .any(|name| cmdline.contains(name));
        if cmdline.contains(&dir) || (ours && cmdline.contains("wasm-admission")) {
            processes.push(cmdline);
        }
    }
    // Other tests on the machine mount nothing of these kinds.
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .expect("mounts")
        .lines()
        .filter(|m| {
            [
                "wasm-admission",
                "containerd",
                "kubelet",
                "nsfs",
                "netns",
                "overlay",
            ]
            .iter()
            .any(|k| m.contains(k))
        })
        .map(str::to_string)
        .collect();
    let netns = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path().join("ns/net")).ok())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        + mounts.iter().filter(|m| m.starts_with("nsfs ")).count();
    let links = command_lines("ip", &["-o", "link", "show"])
        .into_iter()
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .collect();
    let mut iptables = command_lines("iptables-save", &[]);
    iptables.extend(command_lines("ip6tables-save", &[]));
    let iptables = iptables
        .into_iter()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            // A chain's packet counters change; its name and policy do not.
            Some(chain) => chain.split(" [").next().unwrap_or("").to_string(),
            None => l,
        })
        .collect();
    let cgroups = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("wasm-admission-node"))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    MachineState {
        processes,
        mounts,
        netns,
        links,
        iptables,
        cgroups,
    }
}

#[test]
fn up_node_runs_pods_on_a_ready_node_and_down_leaves_no_process_mount_netns_veth_or_rule() {
    if !root_or_skip("up_node_runs_pods_on_a_ready_node_and_down_leaves_nothing") {
        return;
    }
    let state = tempfile::tempdir().expect("dir");
    let dir = state.path().join("cluster");
    let env = [("WASM_ADMISSION_CLUSTER_DIR", dir.to_str().unwrap())];
    let before = machine_state(&dir);
    let up = cluster_sh(&["up", "--node"], &env);
    struct Down<'a>(&'a [(&'a str, &'a str)]);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = cluster_sh(&["down"], self.0);
        }
    }
    let down_guard = Down(&env);
    assert!(up.status.success(), "{}", stderr(&up));
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some(format!("export KUBECONFIG={}", dir.join("kubeconfig").display()).as_str())
    );
    let registry = lines[lines.len() - 2]
        .strip_prefix("export WASM_ADMISSION_REGISTRY=")
        .unwrap_or_else(|| panic!("no registry line: {stdout}"));

    // Only one node per machine.
    let other_state = tempfile::tempdir().expect("dir");
    let other = other_state.path().join("cluster");
    let second = cluster_sh(
        &["up", "--node"],
        &[("WASM_ADMISSION_CLUSTER_DIR", other.to_str().unwrap())],
    );
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("a node already runs on this machine"),
        "{}",
        stderr(&second)
    );
    assert!(!other.exists());

    // A pod with a network namespace and a veth on the bridge, so down has them to remove.
    let bin = std::fs::read_to_string(dir.join("bin")).expect("bin");
    let kubectl = Path::new(bin.trim()).join("kubectl");
    let kube = |args: &[&str]| {
        Command::new(&kubectl)
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .args(args)
            .output()
            .expect("kubectl")
    };
    let image = format!("{registry}/wasm-admission/hello:e2e");
    let run = kube(&["run", "hello", "--image", &image, "--restart=Never"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let wait = kube(&[
        "wait",
        "--for=condition=Ready",
        "pod/hello",
        "--timeout=120s",
    ]);
    assert!(
        wait.status.success(),
        "{}{}",
        stderr(&wait),
        String::from_utf8_lossy(&kube(&["describe", "pod", "hello"]).stdout)
    );
    let running = machine_state(&dir);
    assert!(
        running.links.len() > before.links.len(),
        "a bridge and a veth while the pod runs: {:?}",
        running.links
    );
    // Another cluster's `down` (a control plane without a node) leaves this node alone: the
    // node's marker is machine-wide, its bridge and shims are this cluster's.
    let unrelated_state = tempfile::tempdir().expect("dir");
    let unrelated = unrelated_state.path().join("cluster");
    std::fs::create_dir_all(&unrelated).expect("dir");
    let down = cluster_sh(
        &["down"],
        &[("WASM_ADMISSION_CLUSTER_DIR", unrelated.to_str().unwrap())],
    );
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(
        machine_state(&dir).links,
        running.links,
        "another cluster's down touched this node's links"
    );

    let down = cluster_sh(&["down"], &env);
    assert!(down.status.success(), "{}", stderr(&down));
    std::mem::forget(down_guard);
    assert!(!dir.exists(), "down left {}", dir.display());
    let after = machine_state(&dir);
    assert_eq!(after.processes, before.processes, "processes");
    assert_eq!(after.mounts, before.mounts, "mounts");
    assert_eq!(after.netns, before.netns, "network namespaces");
    assert_eq!(
        after.links, before.links,
        "network links (veths, the bridge)"
    );
    assert_eq!(after.iptables, before.iptables, "iptables chains and rules");
    assert_eq!(after.cgroups, before.cgroups, "the node's cgroups");
}
