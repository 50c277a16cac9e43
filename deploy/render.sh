#!/usr/bin/env bash
# Regenerates what is generated from the chart and the code:
#   deploy/helm/wasm-admission/files/policies.yaml: `wasm-admission policies` for the chart's
#     default configuration (the chart's modes policies and both render it);
#   deploy/helm/wasm-admission/files/match-conditions.yaml: `wasm-admission policies
#     --match-conditions` for the chart's default configuration (both webhooks' matchConditions);
#   deploy/install.yaml: the Helm chart rendered with its default values, except that the serving
#     certificate comes from cert-manager, so the file holds no key material and renders the same
#     every time (the chart's own generated certificate would differ on each render). It is for
#     `kubectl apply -f deploy/install.yaml` in a cluster that runs cert-manager; see
#     docs/walkthrough.md for a cluster without it;
#   deploy/install-policies.yaml: the same chart in mode policies (native admission policies
#     only, Kubernetes 1.36+);
#   the configuration reference, from src/core/config_reference.rs through `wasm-admission
#     config`: docs/config.md (--reference), docs/config.example.yaml (--example) and the
#     `config:` block of the chart's values.yaml (--chart-values; the rest of the file is kept).
#
#   deploy/render.sh            # rewrites the seven files
#   deploy/render.sh DIR        # writes DIR/install.yaml, DIR/install-policies.yaml,
#                               # DIR/policies.yaml, DIR/match-conditions.yaml, DIR/config.md,
#                               # DIR/config.example.yaml and DIR/values.yaml instead
#                               # (scripts/test-deploy.sh diffs them)
# Needs the wasm-admission binary: $WASM_ADMISSION, else a debug build made here.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../scripts/deploy-tools.sh
source "$ROOT/scripts/deploy-tools.sh"
ensure_deploy_tools

CHART="$ROOT/deploy/helm/wasm-admission"
if [[ $# -ge 1 ]]; then
    mkdir -p "$1"
    OUT_INSTALL="$1/install.yaml"
    OUT_POLICIES_INSTALL="$1/install-policies.yaml"
    OUT_POLICIES="$1/policies.yaml"
    OUT_MATCH="$1/match-conditions.yaml"
    OUT_CONFIG_MD="$1/config.md"
    OUT_CONFIG_EXAMPLE="$1/config.example.yaml"
    OUT_VALUES="$1/values.yaml"
else
    OUT_INSTALL="$ROOT/deploy/install.yaml"
    OUT_POLICIES_INSTALL="$ROOT/deploy/install-policies.yaml"
    OUT_POLICIES="$CHART/files/policies.yaml"
    OUT_MATCH="$CHART/files/match-conditions.yaml"
    OUT_CONFIG_MD="$ROOT/docs/config.md"
    OUT_CONFIG_EXAMPLE="$ROOT/docs/config.example.yaml"
    OUT_VALUES="$CHART/values.yaml"
fi
if [[ -z "${WASM_ADMISSION:-}" ]]; then
    (cd "$ROOT" && cargo build --locked --quiet --bin wasm-admission)
    WASM_ADMISSION="${CARGO_TARGET_DIR:-$ROOT/target}/debug/wasm-admission"
fi
NAMESPACE=wasm-admission
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The configuration reference, one source (src/core/config_reference.rs), three files.
"$WASM_ADMISSION" config --reference >"$work/config.md"
"$WASM_ADMISSION" config --example >"$work/config.example.yaml"
"$WASM_ADMISSION" config --chart-values >"$work/config-block.yaml"
"$TOOLS_PY" - "$CHART/values.yaml" "$work/config-block.yaml" "$work/values.yaml" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
start = lines.index("config:")
end = start + 1
# The block: `config:` and every indented line after it (blank lines inside it included).
while end < len(lines) and (
    lines[end].startswith(" ")
    or (lines[end] == "" and end + 1 < len(lines) and lines[end + 1].startswith(" "))
):
    end += 1
block = open(sys.argv[2]).read().rstrip("\n").split("\n")
open(sys.argv[3], "w").write("\n".join(lines[:start] + block + lines[end:]))
PY
mkdir -p "$(dirname "$OUT_CONFIG_MD")" "$(dirname "$OUT_VALUES")"
cp "$work/config.md" "$OUT_CONFIG_MD"
cp "$work/config.example.yaml" "$OUT_CONFIG_EXAMPLE"
cp "$work/values.yaml" "$OUT_VALUES"

# The chart's default configuration as the ConfigMap carries it, and its checksum (without the
# match conditions, which may be missing or stale now).
(cd "$ROOT/deploy/helm" && "$HELM" template wasm-admission ./wasm-admission \
    --namespace "$NAMESPACE" --kube-version 1.30.0 --show-only templates/configmap.yaml \
    --set webhook.matchConditions.enabled=false) \
    >"$work/configmap.yaml"
"$TOOLS_PY" - "$work/configmap.yaml" "$work/config.yaml" "$work/sha" <<'PY'
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(cm["data"]["config.yaml"])
open(sys.argv[3], "w").write(cm["metadata"]["annotations"]["wasm-admission.io/config-sha256"])
cfg = yaml.safe_load(cm["data"]["config.yaml"]) or {}
detection = cfg.get("detection") or {}
# The conditions depend on detection.imagePatterns and detection.registry.enabled only: without
# patterns, the file serves every configuration without patterns (the chart checks this mark).
open(sys.argv[3] + ".any", "w").write("" if detection.get("imagePatterns") else "true")
PY
{
    cat <<HEADER
# GENERATED by deploy/render.sh: \`wasm-admission policies\` for the chart's default configuration,
# rendered by the chart in modes policies and both. Do not edit; CI fails when it is stale.
# config-sha256: $(cat "$work/sha")
HEADER
    # The chart puts its release namespace and failurePolicy in place of these.
    "$WASM_ADMISSION" policies --config "$work/config.yaml" \
        --namespace wasm-admission-release-namespace --failure-policy fail 2>/dev/null
} >"$work/policies.yaml"
mkdir -p "$(dirname "$OUT_POLICIES")"
cp "$work/policies.yaml" "$OUT_POLICIES"
{
    cat <<HEADER
# GENERATED by deploy/render.sh: \`wasm-admission policies --match-conditions\` for the chart's
# default configuration: the matchConditions of both webhook configurations
# (templates/_matchconditions.tpl). Do not edit; CI fails when it is stale.
# config-sha256: $(cat "$work/sha")
HEADER
    if [[ "$(cat "$work/sha.any")" == true ]]; then
        echo "# serves-every-configuration-without-imagePatterns: true"
    fi
    "$WASM_ADMISSION" policies --match-conditions --config "$work/config.yaml" 2>/dev/null
} >"$work/match-conditions.yaml"
mkdir -p "$(dirname "$OUT_MATCH")"
cp "$work/match-conditions.yaml" "$OUT_MATCH"

render() {
    local header="$1"
    shift
    cat <<HEADER
# wasm-admission: $header
# GENERATED by deploy/render.sh from deploy/helm/wasm-admission. Do not edit: change the chart and
# run deploy/render.sh; CI fails when this file is stale.
#
# The Deployment's image, wasm-admission:<appVersion>, is NOT served by any registry: no public
# image is published. Build it (bash scripts/image.sh, docs/image.md), then either load it into
# the cluster's nodes (kind load docker-image, k3d image import) or push it to your registry and
# change the image below, e.g. kubectl -n wasm-admission set image deployment/wasm-admission
# webhook=REGISTRY/wasm-admission:<appVersion> after applying. Until then the pods stay in
# ImagePullBackOff.
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    # The webhook's pods meet the "restricted" Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
    # Never label this namespace wasm-admission.io/inject=enabled: the webhook excludes its own
    # namespace anyway, so that it can always start even when it is down.
HEADER
    (cd "$ROOT/deploy/helm" && "$HELM" template wasm-admission ./wasm-admission \
        --namespace "$NAMESPACE" "$@")
}
# The chart reads files/policies.yaml as committed: render from a copy holding the new one.
cp -r "$CHART" "$work/chart"
cp "$work/policies.yaml" "$work/chart/files/policies.yaml"
cp "$work/match-conditions.yaml" "$work/chart/files/match-conditions.yaml"
render "everything needed to run the webhook, for kubectl apply -f (default values and
# certManager.enabled=true: needs cert-manager in the cluster)." \
    --kube-version 1.30.0 --set certManager.enabled=true >"$work/install.yaml"
(
    cd "$ROOT/deploy/helm"
    cat <<HEADER
# wasm-admission: native admission policies only (mode policies: no webhook, no certificates),
# for kubectl apply -f on Kubernetes 1.36 or later.
# GENERATED by deploy/render.sh from deploy/helm/wasm-admission. Do not edit: change the chart and
# run deploy/render.sh; CI fails when this file is stale.
HEADER
    "$HELM" template wasm-admission "$work/chart" --namespace "$NAMESPACE" \
        --kube-version 1.36.0 --set mode=policies
) >"$work/install-policies.yaml"
mv "$work/install.yaml" "$OUT_INSTALL"
mv "$work/install-policies.yaml" "$OUT_POLICIES_INSTALL"
echo "wrote ${OUT_INSTALL#"$ROOT"/}, ${OUT_POLICIES_INSTALL#"$ROOT"/}, ${OUT_POLICIES#"$ROOT"/}, ${OUT_MATCH#"$ROOT"/}, ${OUT_CONFIG_MD#"$ROOT"/}, ${OUT_CONFIG_EXAMPLE#"$ROOT"/} and ${OUT_VALUES#"$ROOT"/}" >&2
