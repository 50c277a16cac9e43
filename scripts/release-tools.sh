#!/usr/bin/env bash
# Installs what scripts/release.sh and scripts/test-release.sh need, once, and prints the folders
# to add to PATH (release.sh adds them itself):
#   - Debian packages (as root): podman, skopeo, jq, musl-tools (x86_64 C code), the aarch64 cross
#     gcc and binutils (aarch64 C code, strip), qemu-user-static (the release test runs the aarch64
#     binary), docker-registry (the release test's registry);
#   - the rustup targets x86_64-unknown-linux-musl and aarch64-unknown-linux-musl;
#   - cosign, built from the Go module proxy (CGO off) into
#     ~/.cache/wasm-admission/release-tools/cosign-<version>-<go version>/;
#   - helm: scripts/deploy-tools.sh (.cache/tools/bin).
# cosign's cache folder is named by its pinned version and the Go that built it, so a change of
# either builds anew; a build that did not finish leaves no binary behind.
#
#   bash scripts/release-tools.sh              # install what is missing, print the PATH folders
#   bash scripts/release-tools.sh --print-bin  # only print them
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

COSIGN_MODULE=github.com/sigstore/cosign/v2/cmd/cosign
COSIGN_VERSION=v2.6.5
CACHE="${WASM_ADMISSION_RELEASE_TOOLS_CACHE:-$HOME/.cache/wasm-admission/release-tools}"

go_version="$(go env GOVERSION 2>/dev/null || echo nogo)"
COSIGN_DIR="$CACHE/cosign-$COSIGN_VERSION-$go_version"
bins="$COSIGN_DIR/bin:${WASM_ADMISSION_TOOLS_DIR:-$ROOT/.cache/tools}/bin"
if [[ "${1:-}" == --print-bin ]]; then
    echo "$bins"
    exit 0
fi

fail() {
    echo "release-tools.sh: $*" >&2
    exit 1
}
packages=()
for pair in podman:podman skopeo:skopeo jq:jq musl-gcc:musl-tools \
    aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu aarch64-linux-gnu-strip:binutils-aarch64-linux-gnu \
    qemu-aarch64-static:qemu-user-static docker-registry:docker-registry readelf:binutils; do
    command -v "${pair%%:*}" >/dev/null || packages+=("${pair#*:}")
done
if [[ ${#packages[@]} -gt 0 ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "release-tools.sh: installing ${packages[*]} (apt-get)" >&2
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${packages[@]}"; } >&2 || fail "apt-get install ${packages[*]} failed"
    else
        fail "missing: ${packages[*]} (Debian/Ubuntu: sudo apt-get install ${packages[*]})"
    fi
fi

command -v rustup >/dev/null || fail "rustup is missing: install Rust (https://rustup.rs)"
installed="$(rustup target list --installed)"
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    if ! grep -qx "$t" <<<"$installed"; then
        echo "release-tools.sh: rustup target add $t (up to 5 minutes)" >&2
        timeout 300 rustup target add "$t" >&2 || fail "rustup target add $t failed or timed out"
    fi
done

if [[ ! -x "$COSIGN_DIR/bin/cosign" ]]; then
    command -v go >/dev/null || fail "go is missing (cosign is built with it): https://go.dev/doc/install"
    echo "release-tools.sh: building cosign $COSIGN_VERSION from the Go module proxy (several minutes, once)" >&2
    rm -rf "$COSIGN_DIR.partial"
    mkdir -p "$COSIGN_DIR.partial/bin"
    GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$COSIGN_DIR.partial/bin" \
        go install -trimpath -ldflags=-s "$COSIGN_MODULE@$COSIGN_VERSION" >&2 ||
        fail "go install $COSIGN_MODULE@$COSIGN_VERSION failed (above)"
    rm -rf "$COSIGN_DIR"
    mv "$COSIGN_DIR.partial" "$COSIGN_DIR"
fi

# shellcheck source=deploy-tools.sh
source "$ROOT/scripts/deploy-tools.sh"
ensure_deploy_tools
echo "$bins"
