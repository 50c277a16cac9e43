#!/usr/bin/env bash
# The container image built, run and inspected for real (docs/image.md; run by scripts/test.sh):
#
#   1. the chart's default image is what scripts/image.sh tags by default;
#   2. scripts/image.sh builds the image and pushes it to a local registry (Debian's
#      docker-registry on 127.0.0.1, a free port, a temporary storage folder);
#   3. the registry holds an image whose manifest and config say: user 65532:65532, entrypoint
#      the binary, the OCI labels, linux/amd64, and whose one layer holds only the binary and the
#      CA roots; compressed size under 15 MB;
#   4. `--version` runs in the container; `certs` writes a certificate as user 65532;
#   5. `serve` in the container (host network, user 65532, read-only root filesystem, no
#      capabilities, the certificate mounted read-only at /etc/wasm-admission/tls as the chart
#      mounts its Secret) answers an AdmissionReview over TLS with a patch;
#   6. SIGTERM (podman stop -t 10) stops it within the grace period with exit code 0;
#   7. `serve` on a port in use exits non-zero and names the address.
#
# Leaves nothing behind, also on failure: the container, the image, the registry and its folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$SECONDS

fail() {
    echo "FAILED: test-image: $*" >&2
    exit 1
}
ok() { echo "   ok: $*"; }
need() { # COMMAND PACKAGE: installed with apt-get when root, otherwise named
    command -v "$1" >/dev/null && return
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "$2"; } >/dev/null || fail "apt-get install $2 failed"
    else
        fail "$1 is missing: install it (Debian/Ubuntu: sudo apt-get install $2)"
    fi
}
need podman podman
# crun (podman's default) refuses this machine's hybrid cgroup layout; runc runs the container.
need runc runc
need docker-registry docker-registry
need jq jq
need curl curl

# Rootful podman here; the same flags as docs/image.md gives for running it by hand.
PODMAN=(podman --storage-driver "${WASM_ADMISSION_STORAGE_DRIVER:-vfs}" --runtime runc --cgroup-manager cgroupfs)
VERSION="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
TAG="localhost/wasm-admission-test:$VERSION-$$"
CONTAINER="wasm-admission-test-$$"
# Unique to this run: also the label that finds any image this run left behind.
SOURCE_URL="https://example.invalid/wasm-admission-test-$$"
work="$(mktemp -d)"
registry_pid=""

cleanup() {
    local rc=$?
    "${PODMAN[@]}" rm -f -t 0 "$CONTAINER" "$CONTAINER-busy" >/dev/null 2>&1 || true
    "${PODMAN[@]}" rmi -f "$TAG" >/dev/null 2>&1 || true
    if [[ -n "$registry_pid" ]]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -d "$work" ]]; then
        for log in "$work"/*.log; do
            [[ -s "$log" ]] && { echo "--- $(basename "$log") (last lines)"; tail -20 "$log"; } >&2
        done
    fi
    rm -rf "$work"
    # Nothing left behind, whatever the outcome.
    local left
    left="$("${PODMAN[@]}" images -a -q --filter "label=org.opencontainers.image.source=$SOURCE_URL" 2>/dev/null || true)"
    if [[ -n "$left" ]] || "${PODMAN[@]}" container exists "$CONTAINER" 2>/dev/null; then
        echo "FAILED: test-image: left behind: container $CONTAINER or images $left" >&2
        # shellcheck disable=SC2086 # image IDs, one per line
        [[ -z "$left" ]] || "${PODMAN[@]}" rmi -f $left >/dev/null 2>&1 || true
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 30000))
        port_in_use "$port" || { echo "$port"; return; }
    done
    fail "no free port found between 20000 and 50000"
}
PORT="${WASM_ADMISSION_IMAGE_TEST_PORT:-$(free_port)}"
port_in_use "$PORT" &&
    fail "port $PORT is in use: free it (ss -ltnp 'sport = :$PORT' names its process) or set WASM_ADMISSION_IMAGE_TEST_PORT"
REGISTRY_PORT="$(free_port)"
[[ "$REGISTRY_PORT" != "$PORT" ]] || REGISTRY_PORT="$(free_port)"

echo "== image: the chart's default image is scripts/image.sh's default tag"
CHART=deploy/helm/wasm-admission
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' $CHART/Chart.yaml)"
repository="$(sed -n '/^image:/,/^[^ ]/s/^  repository: *//p' $CHART/values.yaml)"
chart_tag="$(sed -n '/^image:/,/^[^ ]/s/^  tag: *//p' $CHART/values.yaml)"
[[ "$app_version" == "$VERSION" ]] ||
    fail "Chart.yaml appVersion $app_version differs from Cargo.toml's version $VERSION"
[[ "$repository" == wasm-admission && "$chart_tag" == '""' ]] ||
    fail "values.yaml image.repository/tag are $repository/$chart_tag, not wasm-admission/\"\" (the appVersion)"
grep -q "image: \"wasm-admission:$VERSION\"" deploy/install.yaml ||
    fail "deploy/install.yaml does not run wasm-admission:$VERSION"
ok "chart and install.yaml run wasm-admission:$VERSION, the tag scripts/image.sh gives by default"

echo "== image: a local registry (docker-registry on 127.0.0.1:$REGISTRY_PORT)"
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  secret: wasm-admission-test-image
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/" && break
    kill -0 "$registry_pid" 2>/dev/null || fail "docker-registry exited (registry.log below)"
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/" || fail "docker-registry did not answer within 15 s"
ok "registry answers /v2/"

echo "== image: scripts/image.sh --tag $TAG --push 127.0.0.1:$REGISTRY_PORT"
build_start=$SECONDS
bash scripts/image.sh --tag "$TAG" --source "$SOURCE_URL" \
    --push "127.0.0.1:$REGISTRY_PORT" --insecure >"$work/image-sh.out" 2>"$work/build.log" ||
    fail "scripts/image.sh failed (build.log below)"
build_seconds=$((SECONDS - build_start))
[[ "$(tail -1 "$work/image-sh.out")" == "$TAG" ]] || fail "scripts/image.sh did not print the tag it built"
ok "built and pushed in ${build_seconds} s"

echo "== image: manifest, config and layer in the registry"
name="${TAG##*/}"
repo="${name%%:*}"
ref="${name#*:}"
api="http://127.0.0.1:$REGISTRY_PORT/v2/$repo"
curl -sSf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -o "$work/manifest.json" "$api/manifests/$ref" || fail "no manifest for $repo:$ref in the registry"
media="$(jq -r .mediaType "$work/manifest.json")"
[[ "$media" == application/vnd.oci.image.manifest.v1+json ]] || fail "manifest media type is $media"
curl -sSf -o "$work/config.json" "$api/blobs/$(jq -r .config.digest "$work/manifest.json")" ||
    fail "config blob missing"
expect() { # JQ-FILTER EXPECTED-JSON WHAT
    local got
    got="$(jq -c "$1" "$work/config.json")"
    [[ "$got" == "$2" ]] || fail "$3: $1 is $got, expected $2"
}
expect .os '"linux"' "os"
expect .architecture '"amd64"' "architecture"
expect .config.User '"65532:65532"' "non-root numeric user"
expect .config.Entrypoint '["/usr/local/bin/wasm-admission"]' "entrypoint"
expect .config.Cmd '["serve"]' "default command"
expect '.config.Labels["org.opencontainers.image.title"]' '"wasm-admission"' "title label"
expect '.config.Labels["org.opencontainers.image.version"]' "\"$VERSION\"" "version label"
expect '.config.Labels["org.opencontainers.image.licenses"]' '"Apache-2.0"' "licence label"
expect '.config.Labels["org.opencontainers.image.source"]' "\"$SOURCE_URL\"" "source label"
ok "linux/amd64, user 65532:65532, entrypoint /usr/local/bin/wasm-admission serve, labels title, version $VERSION, licenses, source"
# Every entry of every layer (one: scripts/image.sh builds with --layers=false) with its owner and
# mode: nothing but the binary, the CA roots and their folders.
: >"$work/entries"
for digest in $(jq -r '.layers[].digest' "$work/manifest.json"); do
    curl -sSf -o "$work/layer.tar.gz" "$api/blobs/$digest" || fail "layer blob $digest missing"
    tar -tvzf "$work/layer.tar.gz" | awk '{print $1, $2, $NF}' >>"$work/entries"
done
cat >"$work/entries.expected" <<'ENTRIES'
drwxr-xr-x 0/0 etc/
drwxr-xr-x 0/0 etc/ssl/
drwxr-xr-x 0/0 etc/ssl/certs/
-rw-r--r-- 0/0 etc/ssl/certs/ca-certificates.crt
drwxr-xr-x 0/0 usr/
drwxr-xr-x 0/0 usr/local/
drwxr-xr-x 0/0 usr/local/bin/
-rwxr-xr-x 0/0 usr/local/bin/wasm-admission
ENTRIES
diff -u "$work/entries.expected" "$work/entries" >&2 ||
    fail "the layers hold other entries than the binary, the CA roots and their folders"
ok "layers ($(jq '.layers | length' "$work/manifest.json")): /etc/ssl/certs/ca-certificates.crt and /usr/local/bin/wasm-admission (root, 0644 and 0755), nothing else"
compressed="$(jq '[.config.size] + [.layers[].size] | add' "$work/manifest.json")"
uncompressed="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$TAG")"
[[ "$compressed" -lt 15000000 ]] || fail "compressed size $compressed bytes is not under 15 MB"
ok "size: $compressed bytes compressed (under 15 MB), $uncompressed bytes uncompressed"

echo "== image: --version and certs in the container"
RUN=(--network host --read-only --user 65532:65532 --cap-drop ALL
    --security-opt no-new-privileges --ulimit nofile=1024:1024 --ulimit nproc=1000:1000)
version_out="$("${PODMAN[@]}" run --rm "${RUN[@]}" "$TAG" --version)" || fail "--version failed in the container"
[[ "$version_out" == "wasm-admission $VERSION (commit $(git rev-parse HEAD), target x86_64-unknown-linux-musl)" ]] ||
    fail "--version said '$version_out'"
ok "--version: $version_out"
mkdir -p "$work/generated" "$work/tls"
chmod 0777 "$work/generated"
"${PODMAN[@]}" run --rm "${RUN[@]}" -v "$work/generated:/out" "$TAG" certs --out-dir /out >"$work/certs.log" 2>&1 ||
    fail "certs failed in the container (certs.log below)"
# As the chart mounts its Secret: files of root, group 65532 (fsGroup), mode 0440, read-only.
for f in ca.crt tls.crt tls.key; do
    install -m 0440 "$work/generated/$f" "$work/tls/$f"
    [[ "$(id -u)" != 0 ]] || chown 0:65532 "$work/tls/$f"
done
ok "certs wrote ca.crt, tls.crt and tls.key as user 65532"

echo "== image: serve in the container on 127.0.0.1:$PORT"
SERVE_ARGS=(serve --tls-cert-file /etc/wasm-admission/tls/tls.crt
    --tls-private-key-file /etc/wasm-admission/tls/tls.key
    --namespace wasm-admission --watch-runtime-classes off --log-format json)
"${PODMAN[@]}" run -d "${RUN[@]}" --name "$CONTAINER" \
    -v "$work/tls:/etc/wasm-admission/tls:ro" \
    "$TAG" "${SERVE_ARGS[@]}" --listen "127.0.0.1:$PORT" >/dev/null ||
    fail "podman run failed"
host="wasm-admission.wasm-admission.svc"
TLS=(--cacert "$work/tls/ca.crt" --connect-to "$host:$PORT:127.0.0.1:$PORT")
ready=0
for _ in $(seq 150); do
    if curl -sf "${TLS[@]}" -o /dev/null "https://$host:$PORT/readyz"; then
        ready=1
        break
    fi
    if [[ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$CONTAINER")" != true ]]; then
        "${PODMAN[@]}" logs "$CONTAINER" >"$work/serve.log" 2>&1 || true
        if grep -qi "in use" "$work/serve.log"; then
            fail "port $PORT is in use: free it or set WASM_ADMISSION_IMAGE_TEST_PORT (serve.log below)"
        fi
        fail "serve exited in the container (serve.log below)"
    fi
    sleep 0.1
done
[[ "$ready" == 1 ]] || fail "serve was not ready within 15 s"
pid="$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$CONTAINER")"
uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"
[[ "$uid" == 65532 ]] || fail "serve runs as uid $uid, not 65532"
ok "ready over TLS, running as uid $uid with a read-only root filesystem"
curl -sSf "${TLS[@]}" -H 'Content-Type: application/json' \
    --data-binary @examples/review/deployment-create.json \
    -o "$work/answer.json" "https://$host:$PORT/mutate" || fail "POST /mutate failed"
jq -e '.response.allowed == true and (.response.patchType == "JSONPatch")' "$work/answer.json" >/dev/null ||
    fail "the answer is not an allowed JSONPatch: $(head -c 400 "$work/answer.json")"
jq -r .response.patch "$work/answer.json" | base64 -d >"$work/patch.json"
jq -e 'any(.[]; .path == "/spec/template/spec/runtimeClassName" and .value == "wasm")' \
    "$work/patch.json" >/dev/null || fail "the patch does not set runtimeClassName wasm: $(cat "$work/patch.json")"
ok "POST /mutate (examples/review/deployment-create.json) answered with a patch setting runtimeClassName wasm"

echo "== image: SIGTERM stops serve with exit code 0"
stop_start=$(date +%s%N)
"${PODMAN[@]}" stop -t 10 "$CONTAINER" >/dev/null || fail "podman stop failed"
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
code="$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
"${PODMAN[@]}" logs "$CONTAINER" >"$work/serve.log" 2>&1 || true
[[ "$code" == 0 ]] || fail "serve exited with $code after SIGTERM (137: killed after the 10 s grace period)"
[[ "$stop_ms" -lt 10000 ]] || fail "serve took $stop_ms ms to stop (grace period 10 s)"
ok "stopped in $stop_ms ms with exit code 0"
"${PODMAN[@]}" rm "$CONTAINER" >/dev/null

echo "== image: serve on a port in use says so"
set +e
"${PODMAN[@]}" run --rm "${RUN[@]}" --name "$CONTAINER-busy" -v "$work/tls:/etc/wasm-admission/tls:ro" \
    "$TAG" "${SERVE_ARGS[@]}" --listen "127.0.0.1:$REGISTRY_PORT" >"$work/busy.log" 2>&1
code=$?
set -e
[[ "$code" != 0 ]] || fail "serve on the registry's port 127.0.0.1:$REGISTRY_PORT exited 0"
if ! grep -q "127.0.0.1:$REGISTRY_PORT" "$work/busy.log" || ! grep -qi "in use" "$work/busy.log"; then
    fail "serve on a busy port did not name it: $(cat "$work/busy.log")"
fi
ok "exit $code: $(grep -i "in use" "$work/busy.log" | head -1 | cut -c1-160)"

echo "test-image: all passed in $((SECONDS - start)) s (image build ${build_seconds} s; $compressed bytes compressed)"
