#!/usr/bin/env bash
# The memory figures of docs/operations.md ("Node awareness and the scheduled audit"), measured
# with the release binary against the real control plane of scripts/cluster.sh.
#
#   bash scripts/measure-memory.sh audit [SIZES...]   Pods in 4 namespaces, created through the API
#                                                     up to each size (default: 1000 10000); at
#                                                     each size `audit -o json|policyreport|junit`
#                                                     over all namespaces at --page-size 100, 500
#                                                     and 2000: peak RSS and wall time
#   bash scripts/measure-memory.sh nodes [COUNT]      COUNT Node objects (default 5000, 15 labels
#                                                     each, no status); `serve`'s RSS once its
#                                                     Node watch has synced with none, after the
#                                                     COUNT nodes arrived as watch events, and
#                                                     after a restart that lists them
#
# Build the binary first: cargo build --release --bin wasm-admission (CARGO_TARGET_DIR is
# honoured; WASM_ADMISSION_BIN names another binary). The script starts its own control plane in $WASM_ADMISSION_CLUSTER_DIR (default
# /tmp/wasm-admission-measure) and stops it, and any `serve` it started, on every exit.
# Needs GNU time (/usr/bin/time), kubectl from the control plane, curl and python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${WASM_ADMISSION_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wasm-admission}"
export WASM_ADMISSION_CLUSTER_DIR="${WASM_ADMISSION_CLUSTER_DIR:-/tmp/wasm-admission-measure}"
NAMESPACES=(shop payments edge batch)
PARALLEL=8
CHUNK=250
SERVE_PID=""
WORK=""

die() {
    echo "measure-memory.sh: $*" >&2
    exit 1
}

cleanup() {
    if [[ -n "$SERVE_PID" ]]; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    bash "$ROOT/scripts/cluster.sh" down >/dev/null 2>&1 || true
    [[ -n "$WORK" ]] && rm -rf "$WORK"
}

start_cluster() {
    [[ -x "$BIN" ]] || die "$BIN is missing: cargo build --release --bin wasm-admission"
    [[ -x /usr/bin/time ]] || die "GNU time is missing: apt-get install time"
    command -v python3 >/dev/null || die "python3 is missing"
    local bindir
    bindir="$(bash "$ROOT/scripts/cluster.sh" build)"
    KUBECTL="$bindir/kubectl"
    trap cleanup EXIT
    WORK="$(mktemp -d)"
    local last
    last="$(bash "$ROOT/scripts/cluster.sh" up | tail -n 1)"
    export KUBECONFIG="${last#export KUBECONFIG=}"
    [[ -f "$KUBECONFIG" ]] || die "cluster.sh up did not print a kubeconfig: $last"
}

# Writes chunk files of Pods numbered FROM..TO-1 (JSON Lists) into $1 and prints their paths.
# One Pod in 10 is Wasm (annotation), one in 40 a privileged Wasm pod (denied by audit); the
# rest are ordinary two-container pods. Each is about 5 to 6 KiB of JSON as the apiserver
# returns it (defaults, the token volume, managedFields).
write_pods() {
    python3 - "$1" "$2" "$3" "$CHUNK" "${NAMESPACES[@]}" <<'EOF'
import json, sys
out, start, end, chunk, namespaces = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
def pod(i):
    ns = namespaces[i % len(namespaces)]
    name = f"app-{i:06d}"
    meta = {"name": name, "namespace": ns,
            "labels": {"app.kubernetes.io/name": f"app-{i % 50}", "app.kubernetes.io/part-of": ns,
                       "pod-template-hash": f"{i * 2654435761 % 4294967296:08x}"[:10]},
            "annotations": {"example.com/owner": "team-" + ns, "example.com/revision": str(i % 17)}}
    env = [{"name": f"SETTING_{k}", "value": f"value-{i}-{k}"} for k in range(6)]
    if i % 40 == 0:
        meta["annotations"]["wasm-admission.io/wasm"] = "true"
        spec = {"hostNetwork": True,
                "containers": [{"name": "app", "image": "ghcr.io/acme/wasm-debug:0.3.1",
                                "securityContext": {"privileged": True}, "env": env}]}
    elif i % 10 == 0:
        meta["annotations"]["wasm-admission.io/wasm"] = "true"
        spec = {"containers": [{"name": "app", "image": f"ghcr.io/acme/spin-app-{i % 7}:1.{i % 5}.0",
                                "ports": [{"containerPort": 80}], "env": env}]}
    else:
        spec = {"containers": [
            {"name": "web", "image": f"registry.example.com/shop/web-{i % 13}:2.{i % 9}.1",
             "ports": [{"containerPort": 8080, "name": "http"}], "env": env,
             "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
             "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}},
            {"name": "proxy", "image": "docker.io/envoyproxy/envoy:v1.31.2",
             "args": ["-c", "/etc/envoy/envoy.yaml"], "ports": [{"containerPort": 9901}]}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
for first in range(start, end, chunk):
    path = f"{out}/pods-{first:06d}.json"
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List",
                   "items": [pod(i) for i in range(first, min(first + chunk, end))]}, f)
    print(path)
EOF
}

# Creates Pods FROM..TO-1, $PARALLEL `kubectl create` processes at a time.
create_pods() {
    local from="$1" to="$2" dir="$WORK/pods-$1" start=$SECONDS
    mkdir -p "$dir"
    write_pods "$dir" "$from" "$to" |
        xargs -P "$PARALLEL" -I{} "$KUBECTL" create -f {} -o name >/dev/null
    local count
    count="$("$KUBECTL" get pods -A --no-headers --chunk-size=2000 | wc -l)"
    [[ "$count" -eq "$to" ]] || die "expected $to Pods, found $count"
    echo "created Pods $from..$((to - 1)) in $((SECONDS - start)) s ($count in the cluster)" >&2
}

# `audit` under GNU time; prints "RSS_KiB SECONDS EXIT OUTPUT_BYTES".
measure_audit() {
    local format="$1" size="$2" log="$WORK/time.log" out="$WORK/audit.out" code=0
    /usr/bin/time -v "$BIN" audit -o "$format" --page-size "$size" >"$out" 2>"$log" || code=$?
    # 0: nothing denied; 1: something denied (the privileged Wasm pods). Anything else is a failure.
    [[ "$code" -le 1 ]] || die "audit -o $format --page-size $size exited $code: $(tail -n 5 "$log")"
    local rss wall
    rss="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log")"
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$log")"
    echo "$rss $(to_seconds "$wall") $code $(stat -c %s "$out")"
}

# GNU time's "m:ss.cc" or "h:mm:ss" as seconds.
to_seconds() {
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }' <<<"$1"
}

cmd_audit() {
    local sizes=("$@")
    [[ ${#sizes[@]} -gt 0 ]] || sizes=(1000 10000)
    start_cluster
    for ns in "${NAMESPACES[@]}"; do "$KUBECTL" create namespace "$ns" >/dev/null; done
    # The ServiceAccount admission plugin needs `default` before the first Pod; the controller
    # manager creates it too, a moment later.
    for ns in "${NAMESPACES[@]}"; do
        "$KUBECTL" -n "$ns" create serviceaccount default >/dev/null 2>&1 || true
    done
    local have=0 pods
    printf '%-7s %-13s %6s %10s %8s %12s %5s\n' pods format page "RSS KiB" seconds "output B" exit
    for pods in "${sizes[@]}"; do
        [[ "$pods" -gt "$have" ]] || die "sizes must grow: $pods after $have"
        create_pods "$have" "$pods"
        have="$pods"
        local format page
        for format in json policyreport junit; do
            for page in 100 500 2000; do
                read -r rss secs code bytes < <(measure_audit "$format" "$page")
                printf '%-7s %-13s %6s %10s %8s %12s %5s\n' \
                    "$pods" "$format" "$page" "$rss" "$secs" "$bytes" "$code"
            done
        done
    done
}

# The value of a metric without labels on serve's metrics listener, or nothing.
metric() {
    curl -fsS "http://$METRICS/metrics" 2>/dev/null | awk -v m="$1" '$1 == m { print $2 }'
}

# Starts serve (dev certificate, RuntimeClass and Node watches on) in the background.
start_serve() {
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    METRICS="127.0.0.1:$port"
    "$BIN" serve --dev --listen 127.0.0.1:0 --metrics-listen "$METRICS" \
        --watch-runtime-classes on --log-format json --shutdown-delay 0s \
        >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SERVE_PID=$!
}

# Waits until serve's Node watch has synced with $1 nodes; prints its RSS in KiB.
wait_nodes() {
    local want="$1" deadline=$((SECONDS + 120))
    until [[ "$(metric wasm_admission_node_watch_state)" == 2 && "$(metric wasm_admission_nodes_watched)" == "$want" ]]; do
        kill -0 "$SERVE_PID" 2>/dev/null || die "serve exited: $(tail -n 5 "$WORK/serve.log")"
        [[ $SECONDS -lt $deadline ]] || die "the Node watch did not reach $want nodes: $(metric wasm_admission_nodes_watched)"
        sleep 0.5
    done
    # Let the allocator settle after the last event.
    sleep 2
    awk '/^VmRSS/ { print $2 }' "/proc/$SERVE_PID/status"
}

stop_serve() {
    kill -TERM "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
    SERVE_PID=""
}

# Node objects 0..COUNT-1 in chunk files, 15 labels each, EKS-like (as the unit measurement in
# tests/spec_11_node_warning.rs).
write_nodes() {
    python3 - "$1" "$2" "$CHUNK" <<'EOF'
import json, sys
out, count, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def node(i):
    name = f"ip-10-0-{i // 250}-{i % 250}.eu-west-1.compute.internal"
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/instance-type": "m6i.2xlarge", "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
        "node.kubernetes.io/instance-type": "m6i.2xlarge",
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": "eu-west-1" + "abc"[i % 3],
        "failure-domain.beta.kubernetes.io/region": "eu-west-1",
        "failure-domain.beta.kubernetes.io/zone": "eu-west-1a",
        "eks.amazonaws.com/nodegroup": f"workers-{i % 10}",
        "eks.amazonaws.com/capacityType": "ON_DEMAND",
        "k8s.io/cloud-provider-aws": "0123456789abcdef0123456789abcdef",
        "kwasm.sh/kwasm-provisioned": "true",
    }
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
for first in range(0, count, chunk):
    path = f"{out}/nodes-{first:06d}.json"
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List",
                   "items": [node(i) for i in range(first, min(first + chunk, count))]}, f)
    print(path)
EOF
}

cmd_nodes() {
    local count="${1:-5000}"
    start_cluster
    local empty events listed start
    start_serve
    empty="$(wait_nodes 0)"
    echo "serve, Node watch synced with 0 nodes: $empty KiB" >&2
    start=$SECONDS
    mkdir -p "$WORK/nodes"
    write_nodes "$WORK/nodes" "$count" |
        xargs -P "$PARALLEL" -I{} "$KUBECTL" create -f {} -o name >/dev/null
    echo "created $count Nodes in $((SECONDS - start)) s" >&2
    events="$(wait_nodes "$count")"
    stop_serve
    start_serve
    listed="$(wait_nodes "$count")"
    stop_serve
    printf '%-44s %10s %12s\n' "serve" "RSS KiB" "vs 0 nodes"
    printf '%-44s %10s %12s\n' "Node watch synced, 0 nodes" "$empty" "-"
    printf '%-44s %10s %12s\n' "$count nodes added while watching" "$events" "+$((events - empty))"
    printf '%-44s %10s %12s\n' "restarted: $count nodes listed (pages of 500)" "$listed" "+$((listed - empty))"
}

case "${1:-}" in
audit) shift && cmd_audit "$@" ;;
nodes) shift && cmd_nodes "$@" ;;
*) die "usage: measure-memory.sh audit [SIZES...] | nodes [COUNT]" ;;
esac
