#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from Kubernetes' own source
# (e2e/controlplane/: kube-apiserver, kube-controller-manager and kubectl of one pinned release,
# and etcd), for the end-to-end suite and for trying the webhook by hand without Docker or a cloud.
#
#   bash scripts/cluster.sh build   build the binaries once (cached, keyed by the pin); print their folder
#   bash scripts/cluster.sh up      start etcd, kube-apiserver and kube-controller-manager; the last
#                                   line printed is `export KUBECONFIG=<path>`
#   bash scripts/cluster.sh down    stop every process `up` started and remove its folder
#   bash scripts/cluster.sh status  say whether one runs, and where
#
# Environment:
#   WASM_ADMISSION_CLUSTER_DIR   the folder of the running control plane (default
#                                /tmp/wasm-admission-cluster); the tests set their own
#   WASM_ADMISSION_APISERVER_PORT  kube-apiserver's port on 127.0.0.1 (default: a free one)
#   WASM_ADMISSION_CACHE         cache root (default ~/.cache/wasm-admission)
#
# There is no kubelet, scheduler or kube-proxy: Pods are created and stay Pending, which is all
# admission needs. Every process listens on 127.0.0.1 only.
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
        k8s.io/kubernetes/cmd/kubectl \
        ./cmd/etcd)
}

# Prints the folder holding kube-apiserver, kube-controller-manager, kubectl and etcd.
cmd_build() {
    need go "install Go 1.26 or later (https://go.dev/doc/install, or the golang-go Debian package if it is recent enough)"
    local bin
    bin="$CACHE/controlplane/$K8S_VERSION-$(cache_key)"
    if [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$bin/kubectl" && -x "$bin/etcd" ]]; then
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
    local bin
    bin="$(cmd_build)"
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
        --profiling=false --v=1
    wait_for "kube-apiserver (https://127.0.0.1:$port)" 90 "$DIR/logs/kube-apiserver.log" \
        "$bin/kubectl" --kubeconfig="$DIR/kubeconfig" get --raw=/readyz
    spawn kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig="$DIR/kubeconfig" \
        --authentication-kubeconfig="$DIR/kubeconfig" --authorization-kubeconfig="$DIR/kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --use-service-account-credentials=false \
        --controllers=deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,job-controller,cronjob-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,garbage-collector-controller,root-ca-certificate-publisher-controller \
        --concurrent-deployment-syncs=5 --v=1
    # The controller manager is up when it has made the default namespace's service account.
    wait_for "kube-controller-manager" 90 "$DIR/logs/kube-controller-manager.log" \
        "$bin/kubectl" --kubeconfig="$DIR/kubeconfig" -n default get serviceaccount default
    trap - EXIT INT TERM
    echo "$bin" >"$DIR/bin"
    echo "cluster.sh: control plane $K8S_VERSION up in $((SECONDS - start)) s in $DIR (kubectl: $bin/kubectl)" >&2
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

case "${1:-}" in
build) cmd_build ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: bash scripts/cluster.sh build|up|down|status" >&2
    exit 2
    ;;
esac
