#!/usr/bin/env bash
# The release, made and checked for real (docs/releasing.md; run by scripts/test.sh):
#
#   1. scripts/release.sh refuses before building: a VERSION that differs from Cargo.toml and the
#      chart (naming both), a missing tool (cosign), a missing key, a wrong key password, a work
#      tree with uncommitted changes (naming the file);
#   2. a push to a registry that is down leaves dist/ complete (SHA256SUMS verifies) and names
#      each part that did not reach it;
#   3. the release into a local registry (Debian's docker-registry on 127.0.0.1, plain HTTP),
#      signed with a throwaway cosign key, then:
#      - the index has linux/amd64 and linux/arm64, each with the labels, user and entrypoint of
#        the single-arch image, and each holding the binary of dist/ for its architecture;
#      - the aarch64 binary runs under qemu-user-static: `--version` names the version, the commit
#        and aarch64-unknown-linux-musl; `check -o json examples/` prints what the x86_64 binary
#        prints, with the same exit code;
#      - `serve` of the aarch64 binary (under qemu) answers an AdmissionReview over TLS with the
#        patch the x86_64 binary gives, and stops on SIGTERM with exit code 0;
#      - `cosign verify` of the index and the chart passes with the release's public key and fails
#        with another key; `cosign verify-blob` of SHA256SUMS likewise;
#      - each crate SBOM lists exactly the crates `cargo tree` compiles into the binary for its
#        target, at the versions of Cargo.lock; the image SBOM names both platforms, the
#        binaries' SHA-256 and their crates;
#      - install.yaml names the image by the digest the registry serves;
#      - the chart from oci://…/charts/wasm-admission renders that image (helm template) and
#        installs into the real control plane of scripts/cluster.sh (helm install), whose
#        Deployment then runs the image by that digest.
#
# The release is built from HEAD: from this checkout when it has no uncommitted changes, else
# from a clone of HEAD (say so; the clone builds wasm-admission itself again).
# Leaves nothing behind, also on failure: the registry, the control plane, their folders.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$SECONDS

fail() {
    echo "FAILED: test-release: $*" >&2
    exit 1
}
ok() { echo "   ok: $*"; }

echo "== release: tools (scripts/release-tools.sh; cosign built once, cached)"
tools_start=$SECONDS
TOOLS_BIN="$(bash scripts/release-tools.sh | tail -1)" || fail "scripts/release-tools.sh failed"
export PATH="$PATH:$TOOLS_BIN"
ok "tools ready in $((SECONDS - tools_start)) s"

# A clone of HEAD (below) uses this checkout's helm and kubectl (scripts/deploy-tools.sh).
export WASM_ADMISSION_TOOLS_DIR="${WASM_ADMISSION_TOOLS_DIR:-$ROOT/.cache/tools}"
VERSION="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
work="$(mktemp -d)"
registry_pid=""
serve_pids=()
export WASM_ADMISSION_CLUSTER_DIR="$work/cluster"
cleanup() {
    local rc=$?
    for pid in "${serve_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -f "$WASM_ADMISSION_CLUSTER_DIR/kubeconfig" ]]; then
        bash "$ROOT/scripts/cluster.sh" down >/dev/null 2>&1 || true
    fi
    if [[ -n "$registry_pid" ]]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 ]]; then
        for log in "$work"/*.log; do
            [[ -s "$log" ]] && { echo "--- $(basename "$log") (last lines)"; tail -25 "$log"; } >&2
        done
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The checkout the release is built from.
SRC="$ROOT"
if [[ -n "$(git status --porcelain --untracked-files=normal)" ]]; then
    echo "   this checkout has uncommitted changes: the release is built from a clone of HEAD"
    git clone --quiet --no-hardlinks "$ROOT" "$work/src" || fail "git clone of HEAD failed"
    SRC="$work/src"
fi
COMMIT="$(git -C "$SRC" rev-parse HEAD)"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 30000))
        port_in_use "$port" || { echo "$port"; return; }
    done
    fail "no free port found between 20000 and 50000"
}

# cosign keys: the release's, and another one that must not verify it.
export COSIGN_PASSWORD=release-test
(cd "$work" && cosign generate-key-pair --output-key-prefix release >/dev/null 2>&1 &&
    cosign generate-key-pair --output-key-prefix other >/dev/null 2>&1) || fail "cosign generate-key-pair failed"

echo "== release: refusals before building"
refused() { # NAME EXPECTED-TEXT ARGS...: release.sh fails, says EXPECTED-TEXT, builds nothing
    local name="$1" expected="$2"
    shift 2
    local out="$work/refused-$name"
    if (cd "$SRC" && bash scripts/release.sh "$@" --out "$out") >"$work/refusal.log" 2>&1; then
        fail "$name: release.sh $* succeeded"
    fi
    grep -qF -- "$expected" "$work/refusal.log" ||
        fail "$name: release.sh $* did not say '$expected': $(cat "$work/refusal.log")"
    [[ ! -e "$out" ]] || fail "$name: release.sh $* wrote $out before refusing"
    ok "$name: $(grep -F -- "$expected" "$work/refusal.log" | head -1 | cut -c1-150)"
}
refused version-mismatch "Cargo.toml version is $VERSION" 9.9.9
refused version-mismatch-chart "Chart.yaml appVersion is $VERSION" 9.9.9
mkdir -p "$work/no-tools"
WASM_ADMISSION_RELEASE_TOOLS="$work/no-tools" \
    PATH="$(tr ':' '\n' <<<"$PATH" | grep -v release-tools/cosign | paste -sd:)" \
    refused missing-cosign "cosign (bash scripts/release-tools.sh)" "$VERSION" --key "$work/release.key"
refused missing-key "--key $work/absent.key: no such file" "$VERSION" --key "$work/absent.key"
COSIGN_PASSWORD=wrong refused wrong-password "cosign cannot read it" "$VERSION" --key "$work/release.key"
git clone --quiet "$SRC" "$work/dirty" || fail "git clone failed"
echo "# local change" >>"$work/dirty/README.md"
(
    SRC="$work/dirty"
    refused dirty-tree " M README.md" "$VERSION"
)

REGISTRY_PORT="$(free_port)"
REGISTRY="127.0.0.1:$REGISTRY_PORT"

echo "== release: a push to a registry that is down ($REGISTRY, nothing listens)"
release_start=$SECONDS
if (cd "$SRC" && bash scripts/release.sh "$VERSION" --registry "$REGISTRY" --plain-http \
    --key "$work/release.key" --out "$work/dist-down") >"$work/release-down.log" 2>&1; then
    fail "release.sh succeeded with its registry down"
fi
first_seconds=$((SECONDS - release_start))
for part in "the image index $REGISTRY/wasm-admission:$VERSION" "the image signature" \
    "the chart oci://$REGISTRY/charts/wasm-admission:$VERSION" "the chart signature"; do
    grep -qF -- "- $part" "$work/release-down.log" || fail "release.sh did not name '$part' as not pushed"
done
grep -qF "dist/ is complete" "$work/release-down.log" || fail "release.sh did not say dist/ is complete"
(cd "$work/dist-down" && sha256sum --quiet -c SHA256SUMS) || fail "dist/ of the failed push does not verify"
[[ -s "$work/dist-down/SHA256SUMS.sig" && -s "$work/dist-down/image/index.json" ]] ||
    fail "dist/ of the failed push lacks SHA256SUMS.sig or the image"
ok "exit non-zero after ${first_seconds} s naming the index, the chart and both signatures; dist/ complete and verified"

echo "== release: a local registry ($REGISTRY, docker-registry)"
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
  secret: wasm-admission-test-release
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 150); do
    curl -sf -o /dev/null "http://$REGISTRY/v2/" && break
    kill -0 "$registry_pid" 2>/dev/null || fail "docker-registry exited (registry.log below)"
    sleep 0.1
done
curl -sf -o /dev/null "http://$REGISTRY/v2/" || fail "docker-registry did not answer within 15 s"
ok "registry answers /v2/"

echo "== release: bash scripts/release.sh $VERSION --registry $REGISTRY --plain-http --key release.key"
release_start=$SECONDS
(cd "$SRC" && bash scripts/release.sh "$VERSION" --registry "$REGISTRY" --plain-http \
    --key "$work/release.key" --source https://example.invalid/wasm-admission --out "$work/dist") \
    >"$work/release.log" 2>&1 || fail "release.sh failed (release.log below)"
release_seconds=$((SECONDS - release_start))
DIST="$work/dist"
# shellcheck disable=SC1091 # written by release.sh
source "$DIST/digests.env"
ok "released in ${release_seconds} s: $IMAGE, $CHART@$CHART_DIGEST"
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not verify"
ok "SHA256SUMS verifies ($(wc -l <"$DIST/SHA256SUMS") files)"

echo "== release: the image index in the registry"
SKOPEO=(skopeo inspect --tls-verify=false)
"${SKOPEO[@]}" --raw "docker://$REGISTRY/wasm-admission:$VERSION" >"$work/index.json" ||
    fail "no index for wasm-admission:$VERSION in the registry"
served="sha256:$(sha256sum "$work/index.json" | cut -d' ' -f1)"
[[ "$served" == "$INDEX_DIGEST" ]] || fail "the registry serves $served, release.sh reported $INDEX_DIGEST"
[[ "$IMAGE" == "$REGISTRY/wasm-admission@$served" ]] || fail "digests.env names $IMAGE"
platforms="$(jq -c '[.manifests[] | .platform.os + "/" + .platform.architecture] | sort' "$work/index.json")"
[[ "$platforms" == '["linux/amd64","linux/arm64"]' ]] || fail "the index has platforms $platforms"
ok "index $served: $platforms"
for arch in amd64 arm64; do
    manifest="$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' "$work/index.json")"
    "${SKOPEO[@]}" --raw "docker://$REGISTRY/wasm-admission@$manifest" >"$work/manifest-$arch.json"
    "${SKOPEO[@]}" --config "docker://$REGISTRY/wasm-admission@$manifest" >"$work/config-$arch.json"
    got="$(jq -c '[.os, .architecture, .config.User, .config.Entrypoint, .config.Cmd,
        (.config.Labels | with_entries(select(.key | startswith("org.opencontainers.image."))))]' "$work/config-$arch.json")"
    want="$(jq -nc --arg a "$arch" --arg v "$VERSION" --arg c "$COMMIT" '["linux", $a, "65532:65532",
        ["/usr/local/bin/wasm-admission"], ["serve"],
        {"org.opencontainers.image.description": "Kubernetes admission webhook for clusters that run WebAssembly workloads beside containers",
         "org.opencontainers.image.licenses": "Apache-2.0",
         "org.opencontainers.image.revision": $c,
         "org.opencontainers.image.source": "https://example.invalid/wasm-admission",
         "org.opencontainers.image.title": "wasm-admission",
         "org.opencontainers.image.version": $v}]')"
    [[ "$got" == "$want" ]] || fail "linux/$arch config: $got, expected $want"
    # The one layer holds the binary of dist/ for this architecture.
    layer="$(jq -r '.layers[0].digest' "$work/manifest-$arch.json")"
    curl -sSf -o "$work/layer-$arch.tar.gz" "http://$REGISTRY/v2/wasm-admission/blobs/$layer" || fail "layer $layer missing"
    mkdir -p "$work/layer-$arch"
    tar -xzf "$work/layer-$arch.tar.gz" -C "$work/layer-$arch" usr/local/bin/wasm-admission
    triple=x86_64-unknown-linux-musl
    [[ "$arch" == arm64 ]] && triple=aarch64-unknown-linux-musl
    cmp -s "$work/layer-$arch/usr/local/bin/wasm-admission" "$DIST/wasm-admission-$VERSION-$triple" ||
        fail "linux/$arch holds another binary than dist/wasm-admission-$VERSION-$triple"
    ok "linux/$arch: user 65532:65532, entrypoint, the six labels; its binary is dist/wasm-admission-$VERSION-$triple"
done

echo "== release: the aarch64 binary under qemu-user-static"
X86="$DIST/wasm-admission-$VERSION-x86_64-unknown-linux-musl"
ARM="$DIST/wasm-admission-$VERSION-aarch64-unknown-linux-musl"
file_arch="$(readelf -h "$ARM" | sed -n 's/^ *Machine: *//p')"
[[ "$file_arch" == AArch64 ]] || fail "$ARM is built for $file_arch"
arm_version="$(qemu-aarch64-static "$ARM" --version)" || fail "the aarch64 binary does not run under qemu"
[[ "$arm_version" == "wasm-admission $VERSION (commit $COMMIT, target aarch64-unknown-linux-musl)" ]] ||
    fail "the aarch64 binary says '$arm_version'"
ok "$arm_version"
set +e
(cd "$SRC" && "$X86" check -o json examples/) >"$work/check-x86.json" 2>"$work/check-x86.err"
x86_code=$?
(cd "$SRC" && qemu-aarch64-static "$ARM" check -o json examples/) >"$work/check-arm.json" 2>"$work/check-arm.err"
arm_code=$?
set -e
[[ "$x86_code" == "$arm_code" ]] || fail "check exits $x86_code on x86_64, $arm_code on aarch64"
cmp -s "$work/check-x86.json" "$work/check-arm.json" ||
    fail "check -o json examples/ differs between x86_64 and aarch64: $(diff "$work/check-x86.json" "$work/check-arm.json" | head -5)"
cmp -s "$work/check-x86.err" "$work/check-arm.err" || fail "check's standard error differs between x86_64 and aarch64"
objects="$(jq length "$work/check-x86.json")"
[[ "$objects" -gt 10 ]] || fail "check -o json examples/ reported only $objects objects"
ok "check -o json examples/: the same $objects objects and exit code $x86_code on both"

echo "== release: serve of the aarch64 binary answers an AdmissionReview as the x86_64 one does"
"$X86" certs --out-dir "$work/tls" >"$work/certs.log" 2>&1 || fail "certs failed (certs.log below)"
host="wasm-admission.wasm-admission.svc"
serve_answer() { # NAME COMMAND...: start serve, POST examples/review/deployment-create.json, stop it
    local name="$1" port pid ready=0
    shift
    port="$(free_port)"
    "$@" serve --listen "127.0.0.1:$port" --tls-cert-file "$work/tls/tls.crt" \
        --tls-private-key-file "$work/tls/tls.key" --namespace wasm-admission \
        --watch-runtime-classes off --log-format json >"$work/serve-$name.log" 2>&1 &
    pid=$!
    serve_pids+=("$pid")
    for _ in $(seq 300); do
        if curl -sf --cacert "$work/tls/ca.crt" --connect-to "$host:$port:127.0.0.1:$port" \
            -o /dev/null "https://$host:$port/readyz"; then
            ready=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || fail "serve ($name) exited (serve-$name.log below)"
        sleep 0.1
    done
    [[ "$ready" == 1 ]] || fail "serve ($name) was not ready within 30 s"
    curl -sSf --cacert "$work/tls/ca.crt" --connect-to "$host:$port:127.0.0.1:$port" \
        -H 'Content-Type: application/json' --data-binary @"$SRC/examples/review/deployment-create.json" \
        "https://$host:$port/mutate" | jq -S . >"$work/answer-$name.json" || fail "POST /mutate to serve ($name) failed"
    kill -TERM "$pid"
    wait "$pid" || fail "serve ($name) exited non-zero after SIGTERM (serve-$name.log below)"
}
serve_answer x86_64 "$X86"
serve_answer aarch64 qemu-aarch64-static "$ARM"
jq -e '.response.allowed == true and .response.patchType == "JSONPatch"' "$work/answer-aarch64.json" >/dev/null ||
    fail "serve (aarch64) did not answer with an allowed patch: $(head -c 300 "$work/answer-aarch64.json")"
cmp -s "$work/answer-x86_64.json" "$work/answer-aarch64.json" ||
    fail "serve answers differ between x86_64 and aarch64: $(diff "$work/answer-x86_64.json" "$work/answer-aarch64.json" | head -5)"
ok "the same patch from both, over TLS; both stop on SIGTERM with exit code 0"

echo "== release: cosign signatures (key, no transparency log)"
verify() { # WHAT REF: passes with the release key, fails with the other
    cosign verify --key "$DIST/cosign.pub" --insecure-ignore-tlog=true --allow-http-registry "$2" \
        >"$work/verify.json" 2>"$work/verify.log" || fail "cosign verify $1 with the release key failed"
    jq -e --arg d "${2##*@}" '.[0].critical.image."docker-manifest-digest" == $d' "$work/verify.json" >/dev/null ||
        fail "the signature of $1 is for another digest: $(head -c 300 "$work/verify.json")"
    if cosign verify --key "$work/other.pub" --insecure-ignore-tlog=true --allow-http-registry "$2" \
        >/dev/null 2>&1; then
        fail "cosign verify $1 passed with another key"
    fi
    ok "$1: verified with dist/cosign.pub; refused with another key"
}
verify "the image index" "$IMAGE"
verify "the chart" "${CHART#oci://}@$CHART_DIGEST"
cosign verify-blob --key "$DIST/cosign.pub" --insecure-ignore-tlog=true --signature "$DIST/SHA256SUMS.sig" \
    "$DIST/SHA256SUMS" >/dev/null 2>&1 || fail "cosign verify-blob SHA256SUMS failed"
if cosign verify-blob --key "$work/other.pub" --insecure-ignore-tlog=true --signature "$DIST/SHA256SUMS.sig" \
    "$DIST/SHA256SUMS" >/dev/null 2>&1; then
    fail "cosign verify-blob SHA256SUMS passed with another key"
fi
ok "SHA256SUMS: verified with dist/cosign.pub; refused with another key"

echo "== release: SBOMs"
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    sbom="$DIST/sbom/wasm-admission-$VERSION-$t.cdx.json"
    jq -e '.bomFormat == "CycloneDX"' "$sbom" >/dev/null || fail "$sbom is not CycloneDX"
    jq -r '.components[] | "\(.name) \(.version)"' "$sbom" | sort -u >"$work/sbom-crates"
    (cd "$SRC" && cargo tree --locked --quiet --target "$t" -e normal --prefix none -f '{p}' -p wasm-admission) |
        awk '{print $1, substr($2, 2)}' | grep -v '^wasm-admission ' | sort -u >"$work/tree-crates"
    diff -u "$work/tree-crates" "$work/sbom-crates" >"$work/sbom-diff.log" ||
        fail "$t: the SBOM's crates differ from cargo tree's (sbom-diff.log below)"
    # Each at the version and checksum Cargo.lock pins.
    python3 - "$SRC/Cargo.lock" "$sbom" <<'PY' || fail "$t: the SBOM names a crate that Cargo.lock does not pin"
import json, sys, tomllib
lock = {(p["name"], p["version"]): p.get("checksum") for p in tomllib.load(open(sys.argv[1], "rb"))["package"]}
for c in json.load(open(sys.argv[2]))["components"]:
    key = (c["name"], c["version"])
    if key not in lock:
        sys.exit(f"{key} is not in Cargo.lock")
    sha = [h["content"] for h in c.get("hashes", []) if h["alg"] == "SHA-256"]
    if lock[key] and sha and sha[0] != lock[key]:
        sys.exit(f"{key}: SBOM hash {sha[0]} is not Cargo.lock's {lock[key]}")
PY
    ok "$t: $(wc -l <"$work/sbom-crates") crates, exactly cargo tree's, at Cargo.lock's versions"
done
image_sbom="$DIST/sbom/wasm-admission-$VERSION-image.cdx.json"
for arch in amd64 arm64; do
    triple=x86_64-unknown-linux-musl
    [[ "$arch" == arm64 ]] && triple=aarch64-unknown-linux-musl
    jq -e --arg a "linux/$arch" --arg sha "$(sha256sum "$DIST/wasm-admission-$VERSION-$triple" | cut -d' ' -f1)" \
        --argjson n "$(jq '.components | length' "$DIST/sbom/wasm-admission-$VERSION-$triple.cdx.json")" \
        '.components[] | select(.name == $a) | .components[] | select(.name == "wasm-admission")
         | (.hashes[0].content == $sha) and ((.components | length) == $n)' "$image_sbom" >/dev/null ||
        fail "the image SBOM does not give linux/$arch's binary with its hash and crates"
done
jq -e --arg d "${INDEX_DIGEST#sha256:}" '.metadata.component.hashes[0].content == $d' "$image_sbom" >/dev/null ||
    fail "the image SBOM is not about index $INDEX_DIGEST"
ok "image: index $INDEX_DIGEST, linux/amd64 and linux/arm64 with their binaries' SHA-256 and crates, the CA bundle"

echo "== release: install.yaml and install-policies.yaml"
images="$(sed -n 's/^ *image: "\(.*\)"$/\1/p' "$DIST/install.yaml" | sort -u)"
[[ "$images" == "$REGISTRY/wasm-admission@$served" ]] || fail "install.yaml runs '$images', not the pushed digest"
! grep -q 'image: ' "$DIST/install-policies.yaml" || fail "install-policies.yaml names an image"
ok "install.yaml runs $images; install-policies.yaml (no workload) names none"

echo "== release: the chart from $CHART"
helm show chart --plain-http "$CHART" --version "$VERSION" >"$work/chart.yaml" 2>"$work/helm.log" ||
    fail "helm show chart $CHART failed"
grep -qx "version: $VERSION" "$work/chart.yaml" && grep -qx "appVersion: $VERSION" "$work/chart.yaml" ||
    fail "the chart in the registry is not version/appVersion $VERSION: $(cat "$work/chart.yaml")"
rendered="$(helm template wasm-admission "$CHART" --plain-http --version "$VERSION" --namespace wasm-admission \
    --kube-version 1.30.0 2>"$work/helm.log" | sed -n 's/^ *image: "\(.*\)"$/\1/p' | sort -u)"
[[ "$rendered" == "$IMAGE" ]] || fail "helm template of the released chart runs '$rendered', not $IMAGE"
ok "version and appVersion $VERSION; helm template runs $IMAGE with no --set"
cluster_out="$(bash scripts/cluster.sh up 2>"$work/cluster.log")" || fail "scripts/cluster.sh up failed (cluster.log below)"
export KUBECONFIG="$WASM_ADMISSION_CLUSTER_DIR/kubeconfig"
[[ "$(tail -1 <<<"$cluster_out")" == "export KUBECONFIG=$KUBECONFIG" ]] || fail "cluster.sh up said: $cluster_out"
helm install wasm-admission "$CHART" --plain-http --version "$VERSION" --namespace wasm-admission \
    --create-namespace >"$work/helm-install.log" 2>&1 || fail "helm install from $CHART failed (helm-install.log below)"
running="$(kubectl -n wasm-admission get deployment wasm-admission -o jsonpath='{.spec.template.spec.containers[0].image}')"
[[ "$running" == "$IMAGE" ]] || fail "the installed Deployment runs '$running', not $IMAGE"
status="$(helm list -n wasm-admission -o json | jq -r '.[] | select(.name == "wasm-admission") | .status + " " + .chart')"
[[ "$status" == "deployed wasm-admission-$VERSION" ]] || fail "helm list: '$status', not deployed wasm-admission-$VERSION"
ok "helm install into kube-apiserver $(kubectl version -o json 2>/dev/null | jq -r .serverVersion.gitVersion): deployed $VERSION, Deployment image $running"

echo "test-release: all passed in $((SECONDS - start)) s (release ${release_seconds} s, the first run with the registry down ${first_seconds} s)"
