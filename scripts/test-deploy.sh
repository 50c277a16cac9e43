#!/usr/bin/env bash
# Checks everything under deploy/ (and the examples) without a cluster:
#   1. helm lint of the chart;
#   2. helm template in every certificate mode (chart-generated, cert-manager, existing Secret),
#      with the RuntimeClasses and metrics on, and with the ServiceMonitor, PrometheusRule and
#      audit (PolicyReport CRDs) on; every rendered document validated strictly against
#      the Kubernetes 1.30 schemas (the chart's oldest kubeVersion) and 1.37 (the newest that
#      kubernetes-validate ships) (cert-manager's Issuer/Certificate have no core schema: they are
#      set aside here and checked by structure in deploy/tests/);
#   3. deploy/runtimeclasses/ (files and kustomize output) and examples/**/*.yaml, the same way;
#   4. deploy/install.yaml is what deploy/render.sh renders now (not stale);
#   5. deploy/tests/ (pytest): the invariants of the rendered objects, including
#      `wasm-admission check --config <rendered config>` and `check -o json` over the manifests;
#   6. hadolint on the image's Containerfile (deploy/image/; scripts/image.sh builds with it).
# Installs its tools on first use under .cache/tools (scripts/deploy-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
start=$SECONDS

# shellcheck source=deploy-tools.sh
source scripts/deploy-tools.sh
ensure_deploy_tools
VENV_BIN="$(dirname "$TOOLS_PY")"
K8S_VERSION=1.30.0
# Validated against each; the first is also the version helm renders for.
K8S_SCHEMA_VERSIONS=(1.30.0 1.37.0)

echo "== wasm-admission binary (for check and config)"
cargo build --locked --quiet --bin wasm-admission
export WASM_ADMISSION="${CARGO_TARGET_DIR:-$ROOT/target}/debug/wasm-admission"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

CHART=deploy/helm/wasm-admission
CA_BUNDLE="$(printf 'test CA bundle\n' | base64)"
MODES=(
    "generated:"
    "cert-manager:--set certManager.enabled=true"
    "existing-secret:--set certificates.existingSecret=wasm-admission-tls --set certificates.caBundle=$CA_BUNDLE"
    "runtimeclasses:--set runtimeClasses.enabled=true --set metrics.enabled=true --set podAntiAffinity=hard --set priorityClassName=system-cluster-critical"
    "monitoring-audit:--set metrics.enabled=true --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true --set audit.enabled=true"
)

echo "== helm lint"
for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2086 # the flags are meant to split
    if ! out="$("$HELM" lint --strict --namespace wasm-admission $CHART ${mode#*:} 2>&1)"; then
        echo "$out"
        echo "FAILED: helm lint (${mode%%:*})" >&2
        exit 1
    fi
    echo "   ${mode%%:*}: $(echo "$out" | tail -1)"
done

echo "== helm template (${#MODES[@]} modes)"
for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2086
    "$HELM" template wasm-admission $CHART --namespace wasm-admission --kube-version $K8S_VERSION \
        ${mode#*:} >"$work/${mode%%:*}.yaml"
done
cp deploy/install.yaml "$work/install.yaml"
kubectl_out="$work/runtimeclasses-kustomize.yaml"
"$KUBECTL" kustomize deploy/runtimeclasses >"$kubectl_out"

# Core objects to one file each for kubernetes-validate; cert-manager's to the side.
"$TOOLS_PY" - "$work" <<'PY'
import glob, os, sys, yaml
work = sys.argv[1]
for path in sorted(glob.glob(os.path.join(work, "*.yaml"))):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    # cert-manager's and the Prometheus Operator's (ServiceMonitor, PrometheusRule) kinds have no
    # core schema: checked by structure in deploy/tests.
    aside = ("cert-manager.io/", "monitoring.coreos.com/")
    core = [d for d in docs if not d["apiVersion"].startswith(aside)]
    crs = [d for d in docs if d["apiVersion"].startswith(aside)]
    os.makedirs(os.path.join(work, "core"), exist_ok=True)
    with open(os.path.join(work, "core", os.path.basename(path)), "w") as f:
        yaml.safe_dump_all(core, f)
    print(f"   {os.path.basename(path)}: {len(core)} core documents"
          + (f", {len(crs)} cert-manager/monitoring documents (checked by structure in deploy/tests)" if crs else ""))
PY

shopt -s globstar nullglob
runtimeclass_files=()
for f in deploy/runtimeclasses/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] || runtimeclass_files+=("$f")
done
validate_files=("$work"/core/*.yaml "${runtimeclass_files[@]}" examples/**/*.yaml)
for version in "${K8S_SCHEMA_VERSIONS[@]}"; do
    echo "== kubernetes-validate --strict (Kubernetes $version)"
    if ! "$VENV_BIN/kubernetes-validate" --strict -k "$version" "${validate_files[@]}" >"$work/validate.log" 2>&1; then
        grep -v '^INFO' "$work/validate.log" || cat "$work/validate.log"
        echo "FAILED: kubernetes-validate (Kubernetes $version)" >&2
        exit 1
    fi
    if grep -v '^INFO' "$work/validate.log" | grep -q .; then
        # A document with no schema (a typo in apiVersion or kind) is only a warning for the tool.
        grep -v '^INFO' "$work/validate.log"
        echo "FAILED: kubernetes-validate warned (unknown kind or apiVersion?)" >&2
        exit 1
    fi
    validated="$(grep -c '^INFO.* passed for resource' "$work/validate.log")"
    echo "   $validated documents valid in ${#validate_files[@]} files"
done

echo "== deploy/install.yaml, deploy/install-policies.yaml, the chart's files/policies.yaml, files/match-conditions.yaml and values.yaml, docs/config.md and docs/config.example.yaml are up to date"
bash deploy/render.sh "$work/rendered" 2>/dev/null
for pair in install.yaml:deploy/install.yaml install-policies.yaml:deploy/install-policies.yaml \
    policies.yaml:$CHART/files/policies.yaml match-conditions.yaml:$CHART/files/match-conditions.yaml \
    config.md:docs/config.md config.example.yaml:docs/config.example.yaml values.yaml:$CHART/values.yaml; do
    if ! diff -u "${pair#*:}" "$work/rendered/${pair%%:*}" >"$work/render.diff"; then
        head -50 "$work/render.diff"
        echo "FAILED: ${pair#*:} is stale: run deploy/render.sh and commit the result" >&2
        exit 1
    fi
done
echo "   fresh"

echo "== check -o json over deploy/install.yaml: the webhook's own objects pass unchanged"
"$WASM_ADMISSION" check -o json --namespace wasm-admission deploy/install.yaml >"$work/check.json"
"$TOOLS_PY" - "$work/check.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
bad = [e for e in report if e["allowed"] is not True or e["patch"] != []]
deployments = [e for e in report if e["kind"] == "Deployment"]
assert not bad, bad
assert len(deployments) == 1, deployments
print(f"   {len(report)} documents allowed with patch [] (Deployment {deployments[0]['name']!r} included)")
PY

echo "== hadolint deploy/image/Containerfile"
"$VENV_BIN/hadolint" deploy/image/Containerfile
echo "   clean"

echo "== pytest deploy/tests"
"$TOOLS_PY" -m pytest -q -p no:cacheprovider deploy/tests

echo "test-deploy: helm lint, $validated documents validated (Kubernetes ${K8S_SCHEMA_VERSIONS[*]}), install.yaml fresh, check, hadolint and pytest all passed in $((SECONDS - start))s"
