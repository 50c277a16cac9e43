#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from Kubernetes' own source
# (e2e/controlplane/: kube-apiserver, kube-controller-manager and kubectl of one pinned release,
# and etcd), for the end-to-end suite and for trying the webhook by hand without Docker or a cloud.
#
#   bash scripts/cluster.sh build   build the binaries once (cached, keyed by the pin); print their folder
#   bash scripts/cluster.sh build-node  build the node's containerd and Wasm shim once (cached, keyed by
#                                   their lock files and toolchains); print their folders
#   bash scripts/cluster.sh up      start etcd, kube-apiserver and kube-controller-manager; the last
#                                   line printed is `export KUBECONFIG=<path>`
#   bash scripts/cluster.sh up --node
#                                   the same plus kube-scheduler and one worker node (kubelet,
#                                   containerd 2 with runc and the Wasm shim under the handler `wasm`,
#                                   a bridge CNI) and a local registry the node pulls from; before the
#                                   last line it prints `export WASM_ADMISSION_REGISTRY=HOST:PORT`.
#                                   Needs root; one node per machine (see "A Wasm pod on a real node"
#                                   in the README)
#   bash scripts/cluster.sh down    stop every process `up` started and remove its folder
#   bash scripts/cluster.sh status  say whether one runs, and where
#
# Environment:
#   WASM_ADMISSION_CLUSTER_DIR   the folder of the running control plane (default
#                                /tmp/wasm-admission-cluster); the tests set their own
#   WASM_ADMISSION_APISERVER_PORT  kube-apiserver's port on 127.0.0.1 (default: a free one)
#   WASM_ADMISSION_CACHE         cache root (default ~/.cache/wasm-admission)
#   WASM_ADMISSION_CNI_BIN       the CNI plugins' folder for --node (default /usr/lib/cni, where Debian's
#                                containernetworking-plugins puts them)
#
# Without --node there is no kubelet, scheduler or kube-proxy: Pods are created and stay Pending,
# which is all admission needs. Every process listens on 127.0.0.1 only; kube-proxy and cluster
# DNS are never started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE="$ROOT/e2e/controlplane"
CACHE="${WASM_ADMISSION_CACHE:-$HOME/.cache/wasm-admission}"
DIR="${WASM_ADMISSION_CLUSTER_DIR:-/tmp/wasm-admission-cluster}"
# The release the module pins (go.mod's k8s.io/kubernetes line) is what the binaries report.
K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$MODULE/go.mod")"

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

# The cache key: everything that decides the binaries' bytes.
cache_key() {
    {
        go version
        echo "$K8S_VERSION"
        cat "$MODULE/go.mod" "$MODULE/go.sum"
        find "$MODULE/cmd" -type f -name '*.go' | sort | xargs cat
        sed -n '/^build_binaries()/,/^}/p' "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16
}

build_binaries() {
    local out="$1" minor
    minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    (cd "$MODULE" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubectl \
        k8s.io/kubernetes/cmd/kubelet \
        ./cmd/etcd)
}

# Prints the folder holding kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kubectl and etcd.
cmd_build() {
    need go "install Go 1.26 or later (https://go.dev/doc/install, or the golang-go Debian package if it is recent enough)"
    local bin
    bin="$CACHE/controlplane/$K8S_VERSION-$(cache_key)"
    if [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$bin/kubectl" && -x "$bin/etcd" &&
        -x "$bin/kube-scheduler" && -x "$bin/kubelet" ]]; then
        echo "$bin"
        return 0
    fi
    echo "== building the control plane $K8S_VERSION into $bin (once; several minutes on a cold cache)" >&2
    local start=$SECONDS tmp
    mkdir -p "$CACHE/controlplane"
    tmp="$(mktemp -d "$CACHE/controlplane/.build.XXXXXX")"
    if ! build_binaries "$tmp" >&2; then
        rm -rf "$tmp"
        die "the control-plane build failed (see the go errors above)"
    fi
    rm -rf "$bin"
    mv "$tmp" "$bin"
    # Older builds of other pins are of no use any more.
    find "$CACHE/controlplane" -mindepth 1 -maxdepth 1 -type d ! -path "$bin" -exec rm -rf {} +
    echo "== built in $((SECONDS - start)) s" >&2
    echo "$bin"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_in_use() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
PY
}

# A process that exists and is not a zombie (an exited child nobody has reaped yet).
alive() {
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

running() {
    [[ -f "$DIR/pids" ]] || return 1
    local pid
    while read -r _ pid; do
        alive "$pid" && return 0
    done <"$DIR/pids"
    return 1
}

cmd_down() {
    node_down
    if [[ -f "$DIR/pids" ]]; then
        local name pid
        # Reverse order: the controller manager first, etcd last.
        while read -r name pid; do
            kill -TERM "$pid" 2>/dev/null || true
        done < <(tac "$DIR/pids")
        for _ in $(seq 50); do
            running || break
            sleep 0.1
        done
        while read -r name pid; do
            kill -KILL "$pid" 2>/dev/null || true
        done <"$DIR/pids"
    fi
    if [[ -d "$DIR" ]]; then
        rm -rf "$DIR"
        echo "cluster.sh: stopped and removed $DIR" >&2
    fi
}

# Starts one process in the background, its output in $DIR/logs/NAME.log.
spawn() {
    local name="$1"
    shift
    setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
    echo "$name $!" >>"$DIR/pids"
}

# Waits until a command succeeds, or fails naming what did not come up.
wait_for() {
    local what="$1" seconds="$2" log="$3"
    shift 3
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "cluster.sh: $what did not come up within $seconds s; the end of $log:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

write_certs() {
    local pki="$DIR/pki"
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout ca.key -out ca.crt -subj "/CN=wasm-admission-e2e-ca" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout apiserver.key \
            -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile apiserver.ext -out apiserver.crt 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout admin.key \
            -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >admin.ext
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile admin.ext -out admin.crt 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        rm -f ./*.csr ./*.ext
    )
}

write_kubeconfig() {
    local port="$1" pki="$DIR/pki"
    cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: https://127.0.0.1:$port
      certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
  - name: admin
    user:
      client-certificate-data: $(base64 -w0 <"$pki/admin.crt")
      client-key-data: $(base64 -w0 <"$pki/admin.key")
contexts:
  - name: e2e
    context: {cluster: e2e, user: admin}
current-context: e2e
EOF
    chmod 600 "$DIR/kubeconfig"
}

cmd_up() {
    local with_node=0
    case "${1:-}" in
    "") ;;
    --node) with_node=1 ;;
    *) die "unknown option '$1' for up (usage: bash scripts/cluster.sh up [--node])" ;;
    esac
    if running; then
        die "a control plane already runs in $DIR (export KUBECONFIG=$DIR/kubeconfig); 'bash scripts/cluster.sh down' stops it"
    fi
    need python3 "install python3 (apt-get install python3)"
    need openssl "install openssl (apt-get install openssl)"
    need setsid "install util-linux (apt-get install util-linux)"
    local port="${WASM_ADMISSION_APISERVER_PORT:-}"
    if [[ -n "$port" ]] && port_in_use "$port"; then
        die "port $port on 127.0.0.1 (WASM_ADMISSION_APISERVER_PORT) is in use: free it or pick another"
    fi
    local bin node_bin="" shim_bin=""
    if ((with_node)); then
        need curl "install curl (apt-get install curl)"
        node_preflight
    fi
    bin="$(cmd_build)"
    if ((with_node)); then
        shim_bin="$(cmd_build_shim)"
        node_bin="$(cmd_build_node)"
    fi
    [[ -n "$port" ]] || port="$(free_port)"
    local etcd_client etcd_peer
    etcd_client="$(free_port)"
    etcd_peer="$(free_port)"

    rm -rf "$DIR"
    mkdir -p "$DIR/logs"
    # From here on, a failure (or an interrupt) stops whatever was started and removes the folder.
    trap 'echo "cluster.sh: up failed; cleaning up" >&2; cmd_down' EXIT
    trap 'exit 1' INT TERM
    local start=$SECONDS
    write_certs
    write_kubeconfig "$port"
    local pki="$DIR/pki"

    spawn etcd "$bin/etcd" --name=e2e --data-dir="$DIR/etcd" \
        --listen-client-urls="http://127.0.0.1:$etcd_client" \
        --advertise-client-urls="http://127.0.0.1:$etcd_client" \
        --listen-peer-urls="http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
        --initial-cluster="e2e=http://127.0.0.1:$etcd_peer" \
        --listen-metrics-urls="" --unsafe-no-fsync --log-level=warn
    spawn kube-apiserver "$bin/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$etcd_client" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
        --endpoint-reconciler-type=none \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --authorization-mode=RBAC \
        --service-account-issuer="https://127.0.0.1:$port" \
        --service-account-key-file="$pki/sa.pub" \
        --service-account-signing-key-file="$pki/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --allow-privileged=true \
        --kubelet-preferred-address-types=InternalIP \
        --profiling=false --v=1
    wait_for "kube-apiserver (https://127.0.0.1:$port)" 90 "$DIR/logs/kube-apiserver.log" \
        "$bin/kubectl" --kubeconfig="$DIR/kubeconfig" get --raw=/readyz
    local controllers=deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,job-controller,cronjob-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,garbage-collector-controller,root-ca-certificate-publisher-controller
    # With a node: the node lifecycle controller lifts the not-ready taint kubelet registers with.
    ((with_node)) && controllers+=,node-lifecycle-controller
    spawn kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig="$DIR/kubeconfig" \
        --authentication-kubeconfig="$DIR/kubeconfig" --authorization-kubeconfig="$DIR/kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --use-service-account-credentials=false \
        --controllers="$controllers" \
        --concurrent-deployment-syncs=5 --v=1
    # The controller manager is up when it has made the default namespace's service account.
    wait_for "kube-controller-manager" 90 "$DIR/logs/kube-controller-manager.log" \
        "$bin/kubectl" --kubeconfig="$DIR/kubeconfig" -n default get serviceaccount default
    echo "$bin" >"$DIR/bin"
    if ((with_node)); then
        node_up "$bin" "$node_bin" "$shim_bin"
    fi
    trap - EXIT INT TERM
    echo "cluster.sh: control plane $K8S_VERSION up in $((SECONDS - start)) s in $DIR (kubectl: $bin/kubectl)" >&2
    if ((with_node)); then
        echo "cluster.sh: node $NODE_NAME Ready (containerd $CONTAINERD_VERSION, runc and the Wasm shim under the handler wasm); registry http://$(cat "$DIR/registry")" >&2
        echo "export WASM_ADMISSION_REGISTRY=$(cat "$DIR/registry")"
    fi
    echo "export KUBECONFIG=$DIR/kubeconfig"
}

cmd_status() {
    if running; then
        echo "a control plane runs in $DIR: export KUBECONFIG=$DIR/kubeconfig"
    else
        echo "no control plane runs in $DIR"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# The worker node (`up --node`): kube-scheduler, kubelet, containerd 2 with runc and the Wasm
# shim, a bridge CNI and a registry. Everything it writes lives under $DIR/node, except what the
# kernel and the components keep machine-wide (cgroups under /$NODE_CGROUP, the bridge
# $NODE_BRIDGE, the marker $NODE_MARKER, kubelet's iptables canary chains and its symlinks in
# /var/log/containers); `down` removes those too.

NODE_MODULE="$ROOT/e2e/node"
SHIM_CRATE="$ROOT/e2e/wasm-shim"
CONTAINERD_VERSION="$(awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/containerd/containerd/v2") { print $(i + 1); exit } }' "$NODE_MODULE/go.mod")"
NODE_NAME=wasm-admission-node
NODE_CGROUP=wasm-admission-node
NODE_BRIDGE=wa-e2e0
NODE_SUBNET=10.244.77.0/24
NODE_GATEWAY=10.244.77.1
# One node per machine: its cgroups, bridge and kubelet chains are machine-wide.
NODE_MARKER=/run/wasm-admission-node
CNI_BIN="${WASM_ADMISSION_CNI_BIN:-/usr/lib/cni}"

node_cache_key() {
    {
        go version
        cat "$NODE_MODULE/go.mod" "$NODE_MODULE/go.sum"
        find "$NODE_MODULE/cmd" -type f -name '*.go' | sort | xargs cat
        sed -n '/^build_node_binaries()/,/^}/p' "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16
}

build_node_binaries() {
    local out="$1"
    local ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
    (cd "$NODE_MODULE" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$out/" \
        github.com/containerd/containerd/v2/cmd/containerd \
        github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
        github.com/containerd/containerd/v2/cmd/ctr \
        ./cmd/pause ./cmd/hello)
}

# Prints the folder holding containerd, containerd-shim-runc-v2, ctr, pause and hello.
cmd_build_node() {
    need go "install Go 1.26.6 or later (containerd $CONTAINERD_VERSION needs it)"
    local bin
    bin="$CACHE/node/$CONTAINERD_VERSION-$(node_cache_key)"
    if [[ -x "$bin/containerd" && -x "$bin/containerd-shim-runc-v2" && -x "$bin/ctr" && -x "$bin/pause" && -x "$bin/hello" ]]; then
        echo "$bin"
        return 0
    fi
    echo "== building containerd $CONTAINERD_VERSION and the node's images' binaries into $bin (once)" >&2
    local start=$SECONDS tmp
    mkdir -p "$CACHE/node"
    tmp="$(mktemp -d "$CACHE/node/.build.XXXXXX")"
    if ! build_node_binaries "$tmp" >&2; then
        rm -rf "$tmp"
        die "the containerd build failed (see the go errors above)"
    fi
    rm -rf "$bin"
    mv "$tmp" "$bin"
    find "$CACHE/node" -mindepth 1 -maxdepth 1 -type d ! -path "$bin" -exec rm -rf {} +
    echo "== built in $((SECONDS - start)) s" >&2
    echo "$bin"
}

shim_cache_key() {
    {
        rustc -V
        cargo -V
        cat "$SHIM_CRATE/Cargo.toml" "$SHIM_CRATE/Cargo.lock"
        find "$SHIM_CRATE/src" -type f | sort | xargs cat
    } | sha256sum | cut -c1-16
}

# Prints the folder holding containerd-shim-wasm-v1 and wat2wasm (e2e/wasm-shim, release build).
cmd_build_shim() {
    need cargo "install Rust (https://rustup.rs)"
    local bin
    bin="$CACHE/wasm-shim/$(shim_cache_key)"
    if [[ -x "$bin/containerd-shim-wasm-v1" && -x "$bin/wat2wasm" ]]; then
        echo "$bin"
        return 0
    fi
    need protoc "install protobuf-compiler (apt-get install protobuf-compiler): the shim's ttrpc code is generated at build time"
    [[ -e /usr/include/seccomp.h ]] ||
        die "libseccomp-dev is not installed (apt-get install libseccomp-dev): the shim's container library links libseccomp"
    echo "== building the Wasm shim (e2e/wasm-shim) into $bin (once; many minutes on a cold cache)" >&2
    local start=$SECONDS target="${CARGO_TARGET_DIR:-$ROOT/target}"
    if ! (cd "$SHIM_CRATE" && CARGO_TARGET_DIR="$target" cargo build --release --locked >&2); then
        die "the Wasm shim build failed (see the cargo errors above)"
    fi
    mkdir -p "$CACHE/wasm-shim"
    local tmp
    tmp="$(mktemp -d "$CACHE/wasm-shim/.build.XXXXXX")"
    cp "$target/release/containerd-shim-wasm-v1" "$target/release/wat2wasm" "$tmp/"
    rm -rf "$bin"
    mv "$tmp" "$bin"
    find "$CACHE/wasm-shim" -mindepth 1 -maxdepth 1 -type d ! -path "$bin" -exec rm -rf {} +
    echo "== built in $((SECONDS - start)) s" >&2
    echo "$bin"
}

# The checks a node needs from this machine, each naming what to do.
node_preflight() {
    [[ "$(id -u)" == 0 ]] || die "--node needs root (kubelet and containerd manage mounts, cgroups and network namespaces)"
    local ctl
    for ctl in cpu cpuacct cpuset memory pids; do
        if ! grep -qw "$ctl" /proc/cgroups || ! awk -v c="$ctl" '$1 == c && $4 == 1 { f = 1 } END { exit !f }' /proc/cgroups; then
            die "the cgroup controller '$ctl' is missing or disabled in this kernel (/proc/cgroups): kubelet needs cpu, cpuacct, cpuset, memory and pids"
        fi
    done
    [[ -d "/sys/fs/cgroup/memory" || -f /sys/fs/cgroup/cgroup.controllers ]] ||
        die "no memory cgroup is mounted under /sys/fs/cgroup: mount the cgroup controllers (v1 or v2) first"
    need runc "install runc (apt-get install runc)"
    need ip "install iproute2 (apt-get install iproute2)"
    need iptables "install iptables (apt-get install iptables): kubelet creates its canary chains with it"
    need docker-registry "install docker-registry (apt-get install docker-registry): the node pulls its images from it"
    local plugin
    for plugin in bridge host-local loopback; do
        [[ -x "$CNI_BIN/$plugin" ]] ||
            die "the CNI plugin $CNI_BIN/$plugin is missing: install containernetworking-plugins (apt-get install containernetworking-plugins); without it no pod gets a network"
    done
    if [[ -f "$NODE_MARKER" ]]; then
        local other
        other="$(cat "$NODE_MARKER")"
        if [[ "$other" != "$DIR" ]] && DIR="$other" running; then
            die "a node already runs on this machine (cluster $other); only one can: 'WASM_ADMISSION_CLUSTER_DIR=$other bash scripts/cluster.sh down' stops it"
        fi
        # A node whose processes are all gone: remove what it left.
        [[ "$other" == "$DIR" ]] || DIR="$other" node_down
    fi
}

write_node_files() {
    local reg="$1" bin="$2" shim="$3" kubelet_port="$4" node="$DIR/node"
    mkdir -p "$node/cni" "$node/certs.d/$reg" "$node/pod-logs" "$node/kubelet"
    cat >"$node/containerd.toml" <<EOF
version = 3
root = "$node/containerd/root"
state = "$node/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$node/containerd.sock"

[ttrpc]
  address = "$node/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$node/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$reg/wasm-admission/pause:e2e"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$node/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  # Root here may lack CAP_SYS_RESOURCE (so on these VMs): kubelet's -998 for the pause
  # container cannot be set, and runc fails the sandbox. Keep scores at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "$bin/containerd-shim-runc-v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$node/runc"
        SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasm]
      runtime_type = "io.containerd.wasm.v1"
      runtime_path = "$shim/containerd-shim-wasm-v1"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$node/cni"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
    # The registry over plain HTTP, and nothing else: any other registry resolves to a closed
    # loopback port, so a pod naming docker.io fails at once instead of leaving the machine.
    cat >"$node/certs.d/$reg/hosts.toml" <<EOF
server = "http://$reg"
[host."http://$reg"]
  capabilities = ["pull", "resolve"]
EOF
    mkdir -p "$node/certs.d/_default"
    cat >"$node/certs.d/_default/hosts.toml" <<EOF
[host."http://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF
    cat >"$node/cni/10-wasm-admission.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "wasm-admission",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node/cni-ipam",
        "ranges": [[{ "subnet": "$NODE_SUBNET" }]]
      }
    },
    { "type": "loopback" }
  ]
}
EOF
    # Pods get no cluster DNS (none runs) and no resolver of the machine's.
    : >"$node/resolv.conf"
    cat >"$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
containerRuntimeEndpoint: unix://$node/containerd.sock
address: $NODE_GATEWAY
port: $kubelet_port
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: $node/pod-logs
resolvConf: $node/resolv.conf
serializeImagePulls: false
failSwapOn: false
protectKernelDefaults: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
EOF
}

# The machine-wide cgroup every pod goes under (kubelet's cgroupRoot must exist in every
# controller).
make_node_cgroups() {
    local ctl path
    for ctl in /sys/fs/cgroup/*/; do
        ctl="${ctl%/}"
        [[ -f "$ctl/cgroup.procs" ]] || continue
        path="$ctl/$NODE_CGROUP"
        mkdir -p "$path" || die "cannot create the cgroup $path: is /sys/fs/cgroup writable?"
        if [[ -f "$ctl/cpuset.cpus" ]]; then
            cat "$ctl/cpuset.cpus" >"$path/cpuset.cpus"
            cat "$ctl/cpuset.mems" >"$path/cpuset.mems"
        fi
    done
}

remove_node_cgroups() {
    local ctl root pid
    for ctl in /sys/fs/cgroup/*/; do
        root="${ctl%/}/$NODE_CGROUP"
        [[ -d "$root" ]] || continue
        # Whatever still runs in the pods' cgroups (containers, the pause processes) is killed.
        while read -r pid; do
            kill -KILL "$pid" 2>/dev/null || true
        done < <(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null)
    done
    for ctl in /sys/fs/cgroup/*/; do
        root="${ctl%/}/$NODE_CGROUP"
        [[ -d "$root" ]] || continue
        local tries
        for tries in $(seq 50); do
            find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [[ -d "$root" ]] || break
            sleep 0.1
        done
        [[ -d "$root" ]] && echo "cluster.sh: could not remove the cgroup $root (processes still in it?)" >&2
    done
    return 0
}

# Processes started by containerd for this node: the shims (they name containerd's socket in
# their arguments) and anything still running in the node's runc root.
kill_node_shims() {
    local sock="$DIR/node/containerd.sock" pid
    for pid in $(pgrep -f -- "-address $sock" 2>/dev/null || true); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

unmount_under() {
    local prefix="$1" mnt
    # Deepest first; a mount point's spaces are octal-escaped in /proc/self/mounts.
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v p="$prefix/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sed 's/\\040/ /g' | sort -r)
}

# Chains kubelet adds (KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) that were not there before up.
remove_new_iptables_chains() {
    local node="$DIR/node" tool table chain
    for tool in iptables ip6tables; do
        command -v "$tool" >/dev/null || continue
        [[ -f "$node/$tool.before" ]] || continue
        for table in filter nat mangle; do
            while read -r chain; do
                if ! grep -qx "$table $chain" "$node/$tool.before"; then
                    "$tool" -w -t "$table" -F "$chain" 2>/dev/null || true
                    "$tool" -w -t "$table" -X "$chain" 2>/dev/null || true
                fi
            done < <("$tool-save" -t "$table" 2>/dev/null | awk '/^:KUBE-/ { print substr($1, 2) }')
        done
    done
}

# Machine-wide folders kubelet, containerd's shims and the CNI plugins write to whatever their
# configuration says (kubelet's /var/log/containers links, the Wasm shim's state under
# /run/containerd/wasm, libcni's result cache in /var/lib/cni): what `up` finds there is
# recorded, and `down` removes only what was not there before.
NODE_MACHINE_PATHS=(/run/containerd /run/netns /var/lib/cni /var/lib/kubelet /var/log/containers /var/log/pods)

save_machine_paths() {
    local path
    for path in "${NODE_MACHINE_PATHS[@]}"; do
        [[ -e "$path" ]] && find "$path" -mindepth 0 -maxdepth 3 2>/dev/null
    done >"$DIR/node/paths.before"
    return 0
}

remove_new_machine_paths() {
    [[ -f "$DIR/node/paths.before" ]] || return 0
    local path
    for path in "${NODE_MACHINE_PATHS[@]}"; do
        [[ -e "$path" ]] || continue
        while read -r p; do
            grep -qxF -- "$p" "$DIR/node/paths.before" || rm -rf -- "$p"
        done < <(find "$path" -mindepth 0 -maxdepth 3 2>/dev/null | sort -r)
    done
}

save_iptables_chains() {
    local tool table
    for tool in iptables ip6tables; do
        command -v "$tool" >/dev/null || continue
        for table in filter nat mangle; do
            "$tool-save" -t "$table" 2>/dev/null | awk -v t="$table" '/^:/ { print t " " substr($1, 2) }'
        done >"$DIR/node/$tool.before"
    done
}

# Stops the node of $DIR and removes everything it made, on the machine and in $DIR/node.
node_down() {
    # Only this cluster's node: the marker is machine-wide, and another cluster's `down` (or a
    # failed `up`) while a node runs must leave that node's bridge, shims and rules alone.
    if [[ ! -d "$DIR/node" ]] && ! [[ -f "$NODE_MARKER" && "$(cat "$NODE_MARKER")" == "$DIR" ]]; then
        return 0
    fi
    local name pid
    if [[ -f "$DIR/pids" ]]; then
        # kubelet and the scheduler first, so nothing restarts what is stopped below.
        while read -r name pid; do
            case "$name" in kubelet | kube-scheduler) kill -KILL "$pid" 2>/dev/null || true ;; esac
        done <"$DIR/pids"
    fi
    kill_node_shims
    remove_node_cgroups
    kill_node_shims
    if [[ -f "$DIR/pids" ]]; then
        while read -r name pid; do
            case "$name" in containerd | registry) kill -TERM "$pid" 2>/dev/null || true ;; esac
        done <"$DIR/pids"
        for _ in $(seq 50); do
            local left=0
            while read -r name pid; do
                case "$name" in containerd | registry) alive "$pid" && left=1 ;; esac
            done <"$DIR/pids"
            ((left)) || break
            sleep 0.1
        done
        while read -r name pid; do
            case "$name" in containerd | registry) kill -KILL "$pid" 2>/dev/null || true ;; esac
        done <"$DIR/pids"
    fi
    unmount_under "$DIR"
    if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
        # Deleting the bridge takes its remaining veths' host ends with it.
        local veth
        for veth in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
            ip link delete "$veth" 2>/dev/null || true
        done
        ip link delete "$NODE_BRIDGE" 2>/dev/null || true
    fi
    remove_new_iptables_chains
    remove_new_machine_paths
    [[ -f "$NODE_MARKER" && "$(cat "$NODE_MARKER")" == "$DIR" ]] && rm -f "$NODE_MARKER"
    return 0
}

# Builds the node's images and pushes them to the registry at $1.
push_node_images() {
    local reg="$1" bin="$2" shim="$3" work="$DIR/node/images"
    local push=(python3 "$NODE_MODULE/push-image.py" "$reg")
    mkdir -p "$work"
    cp "$bin/pause" "$bin/hello" "$work/"
    "$shim/wat2wasm" "$NODE_MODULE/modules/env-service.wat" "$work/env-service.wasm"
    "$shim/wat2wasm" "$NODE_MODULE/modules/job.wat" "$work/job.wasm"
    "${push[@]}" wasm-admission/pause:e2e container "$work/pause" >/dev/null
    "${push[@]}" wasm-admission/hello:e2e container "$work/hello" >/dev/null
    local module
    for module in env-service job; do
        "${push[@]}" "wasm-admission/$module:compat" compat "$work/$module.wasm" >/dev/null
        "${push[@]}" "wasm-admission/$module:artifact" artifact "$work/$module.wasm" >/dev/null
    done
}

# Starts the registry, containerd, kubelet and kube-scheduler for the control plane just started.
node_up() {
    local cp_bin="$1" bin="$2" shim="$3" node="$DIR/node"
    mkdir -p "$node"
    echo "$DIR" >"$NODE_MARKER"
    save_iptables_chains
    save_machine_paths
    local reg_port kubelet_port reg
    reg_port="$(free_port)"
    kubelet_port="$(free_port)"
    reg="127.0.0.1:$reg_port"

    mkdir -p "$node/registry"
    cat >"$node/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $node/registry
  delete:
    enabled: true
http:
  addr: $reg
  secret: wasm-admission-e2e
EOF
    spawn registry docker-registry serve "$node/registry.yml"
    wait_for "docker-registry ($reg)" 30 "$DIR/logs/registry.log" curl -fsS "http://$reg/v2/"
    push_node_images "$reg" "$bin" "$shim" || die "pushing the node's images to $reg failed (see above)"

    write_node_files "$reg" "$bin" "$shim" "$kubelet_port"
    make_node_cgroups
    # The bridge the CNI plugin attaches pods to, made here so its gateway address exists before
    # the first pod: kubelet refuses a loopback node IP, so the node's InternalIP (where
    # kube-apiserver reaches kubelet for logs) is this address of the machine's own.
    if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
        ip link add "$NODE_BRIDGE" type bridge || die "cannot create the bridge $NODE_BRIDGE (is the bridge module available?)"
    fi
    ip addr replace "$NODE_GATEWAY/${NODE_SUBNET#*/}" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    spawn containerd "$bin/containerd" --config "$node/containerd.toml" --log-level warn
    if ! wait_for "containerd (socket $node/containerd.sock)" 30 "$DIR/logs/containerd.log" \
        "$bin/ctr" --address "$node/containerd.sock" version; then
        die "containerd is not answering on its socket $node/containerd.sock: see $DIR/logs/containerd.log"
    fi
    if ! wait_for "containerd's CRI plugin" 30 "$DIR/logs/containerd.log" \
        bash -c "'$bin/ctr' --address '$node/containerd.sock' plugins ls | grep -Eq 'io.containerd.grpc.v1 +cri .* ok'"; then
        die "containerd's CRI plugin did not load: see $DIR/logs/containerd.log"
    fi

    spawn kube-scheduler "$cp_bin/kube-scheduler" \
        --kubeconfig="$DIR/kubeconfig" \
        --authentication-kubeconfig="$DIR/kubeconfig" --authorization-kubeconfig="$DIR/kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --v=1
    local selector labels
    # The node carries the label of every shipped RuntimeClass's nodeSelector whose handler it
    # runs: handler `wasm` (the shim) under whichever label the class `wasm` asks for.
    labels="wasm-admission.io/runtime-wasm=true"
    selector="$(awk '/nodeSelector:/ { getline; gsub(/[ "]/, ""); sub(/:/, "="); print; exit }' "$ROOT/deploy/runtimeclasses/wasm.yaml")"
    [[ -n "$selector" ]] && labels+=",$selector"
    spawn kubelet "$cp_bin/kubelet" \
        --config="$node/kubelet.yaml" \
        --kubeconfig="$DIR/kubeconfig" \
        --root-dir="$node/kubelet" \
        --cert-dir="$node/kubelet/pki" \
        --hostname-override="$NODE_NAME" \
        --node-ip="$NODE_GATEWAY" \
        --node-labels="$labels" \
        --v=1
    if ! wait_for "the node $NODE_NAME (kubelet)" 120 "$DIR/logs/kubelet.log" \
        "$cp_bin/kubectl" --kubeconfig="$DIR/kubeconfig" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s; then
        if grep -q 'cni plugin not initialized\|NetworkReady=false' "$DIR/logs/kubelet.log"; then
            die "the node is not Ready: the CNI is not configured (containerd reads $node/cni); see $DIR/logs/containerd.log"
        fi
        die "the node $NODE_NAME did not become Ready: see $DIR/logs/kubelet.log"
    fi
    echo "$reg" >"$DIR/registry"
    echo "$bin" >"$node/bin"
}

case "${1:-}" in
build) cmd_build ;;
build-node)
    cmd_build_shim
    cmd_build_node
    ;;
up) cmd_up "${2:-}" ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: bash scripts/cluster.sh build|build-node|up [--node]|down|status" >&2
    exit 2
    ;;
esac
