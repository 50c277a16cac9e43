#!/usr/bin/env bash
# Runs every test of wasm-admission. Installs what the tests need first, so it works on a fresh
# machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# The registry tests (tests/registry.rs) run a real OCI registry: Debian's docker-registry
# (CNCF distribution). They start it themselves; under CI a missing binary fails them.
if ! command -v docker-registry >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry
    else
        sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry
    fi
fi

# The end-to-end suite (tests/e2e/) runs against a real kube-apiserver and kube-controller-manager
# built from Kubernetes' own source: built once into ~/.cache/wasm-admission/controlplane (keyed by
# the pin in e2e/controlplane/go.mod), here, so that its build time is not counted in a test's.
# Needs Go 1.26 (cluster.sh says so when it is missing).
bash scripts/cluster.sh build >/dev/null

# The node cases (tests/e2e/node.rs) and tests/cluster_script.rs run `cluster.sh up --node`: runc,
# the bridge CNI plugins and iptables from Debian, and for the Wasm shim's build protoc and
# libseccomp. containerd 2 and the shim are built here, once (cached under ~/.cache/wasm-admission,
# keyed by their lock files and toolchains), so their build time is not counted in a test's.
node_packages=()
command -v runc >/dev/null || node_packages+=(runc)
[ -x /usr/lib/cni/bridge ] || node_packages+=(containernetworking-plugins)
command -v iptables >/dev/null || node_packages+=(iptables)
command -v ip >/dev/null || node_packages+=(iproute2)
command -v curl >/dev/null || node_packages+=(curl)
command -v protoc >/dev/null || node_packages+=(protobuf-compiler)
[ -e /usr/include/seccomp.h ] || node_packages+=(libseccomp-dev)
if [ "${#node_packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${node_packages[@]}"
    else
        sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${node_packages[@]}"
    fi
fi
bash scripts/cluster.sh build-node >/dev/null

cargo test --locked --all-targets
# Doc tests are not part of --all-targets.
cargo test --locked --doc
# The cluster install (chart, install.yaml, RuntimeClasses, the image's Containerfile); installs
# its own tools.
bash scripts/test-deploy.sh
# The container image: built by scripts/image.sh, pushed to a local registry and inspected there,
# run with podman (--version, serve over TLS, SIGTERM). Installs podman, runc and jq when root.
bash scripts/test-image.sh
bash scripts/test-release.sh  # the release in a local registry: both architectures, cosign, SBOMs, the chart into the control plane
