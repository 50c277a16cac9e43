#!/usr/bin/env bash
# Builds the wasm-admission container image (docs/image.md):
#
#   1. the static binary, on the host: `cargo build --release` for x86_64-unknown-linux-musl
#      (or profile-guided with --pgo: scripts/pgo-image.sh), then stripped of its symbols;
#   2. a build context holding only that binary and the CA roots (registry inspection over HTTPS
#      verifies certificates against the system roots, read from /etc/ssl/certs), packaged by
#      deploy/image/Containerfile FROM scratch: user 65532:65532, entrypoint the binary, OCI labels;
#   3. with --push, pushed to a registry.
#
#   bash scripts/image.sh                                   # wasm-admission:<version in Cargo.toml>
#   bash scripts/image.sh --tag registry.example.com/wasm-admission:0.1.0 --push
#   bash scripts/image.sh --push registry.example.com      # registry.example.com/wasm-admission:<version>
#
# Options:
#   --tag TAG          image name and tag (default wasm-admission:<version>, the chart's default)
#   --push [REGISTRY]  push TAG as named, or to REGISTRY/<name:tag of TAG>
#   --insecure         push over plain HTTP / without TLS verification (a local test registry)
#   --pgo              profile-guided build (about twice the build time; docs/image.md)
#   --source URL       org.opencontainers.image.source (default: the git remote `origin`)
#
# Needs podman (Debian: apt-get install podman; installed here when run as root), the musl target
# (rustup target add x86_64-unknown-linux-musl) and musl-gcc (apt-get install musl-tools).
# The cargo target folder is $WASM_ADMISSION_IMAGE_TARGET_DIR, default
# ~/.cache/wasm-admission/image-target, kept between runs. Podman runs with
# --storage-driver ${WASM_ADMISSION_STORAGE_DRIVER:-vfs} (vfs needs no kernel overlay support).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TRIPLE=x86_64-unknown-linux-musl
fail() {
    echo "image.sh: $*" >&2
    exit 1
}
usage() { # EXIT-CODE: the header above, to stdout for --help, to stderr otherwise
    if [[ "$1" == 0 ]]; then
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    else
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    fi
    exit "$1"
}

VERSION="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
[[ -n "$VERSION" ]] || fail "no version found in Cargo.toml's [package]"
TAG="wasm-admission:$VERSION"
PUSH=0
PUSH_REGISTRY=""
INSECURE=0
PGO=0
SOURCE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag)
            [[ $# -ge 2 ]] || usage 2
            TAG="$2"
            shift 2
            ;;
        --push)
            PUSH=1
            if [[ $# -ge 2 && "$2" != -* ]]; then
                PUSH_REGISTRY="${2%/}"
                shift
            fi
            shift
            ;;
        --insecure) INSECURE=1; shift ;;
        --pgo) PGO=1; shift ;;
        --source)
            [[ $# -ge 2 ]] || usage 2
            SOURCE="$2"
            shift 2
            ;;
        -h | --help) usage 0 ;;
        *) echo "image.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done

# --- tools -----------------------------------------------------------------------------------
apt_install() { # PACKAGE...: as root only; otherwise say what to install
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "image.sh: installing $* (apt-get)" >&2
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "$@"; } >&2 || fail "apt-get install $* failed"
    else
        fail "$1 is missing: install it (Debian/Ubuntu: sudo apt-get install $*)"
    fi
}
command -v podman >/dev/null || apt_install podman
command -v musl-gcc >/dev/null || apt_install musl-tools
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || apt_install ca-certificates
command -v cargo >/dev/null || fail "cargo is missing: install Rust (https://rustup.rs)"
if [[ ! -d "$(rustc --print target-libdir --target "$TRIPLE" 2>/dev/null)" ]]; then
    echo "image.sh: adding the $TRIPLE standard library (rustup target add; up to 5 minutes)" >&2
    timeout 300 rustup target add "$TRIPLE" >&2 ||
        fail "rustup target add $TRIPLE failed or timed out: run it by hand, then retry"
fi

PODMAN=(podman --storage-driver "${WASM_ADMISSION_STORAGE_DRIVER:-vfs}")

if [[ -z "$SOURCE" ]]; then
    SOURCE="$(git config --get remote.origin.url 2>/dev/null || true)"
    # git@host:org/repo.git -> https://host/org/repo
    if [[ "$SOURCE" =~ ^git@([^:]+):(.+)$ ]]; then
        SOURCE="https://${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
    fi
    SOURCE="${SOURCE%.git}"
    # A clone of a local folder has a path for its origin, not a URL.
    [[ "$SOURCE" == *://* ]] || SOURCE=""
fi
REVISION="$(git rev-parse HEAD 2>/dev/null || true)"
# The image's creation time: the last commit's (the same sources give the same image config),
# or the epoch outside git.
CREATED="$(git log -1 --format=%ct 2>/dev/null || echo 0)"

# --- 1. the static binary --------------------------------------------------------------------
export CARGO_TARGET_DIR="${WASM_ADMISSION_IMAGE_TARGET_DIR:-$HOME/.cache/wasm-admission/image-target}"
# cargo decides freshness by file times and names this crate's outputs alike in every checkout
# (worktrees, clones): after another checkout built here, one whose files are older would look
# fresh and get the other's binary. So this crate (not its dependencies) is rebuilt whenever the
# checkout differs from the last one built here.
stamp="$CARGO_TARGET_DIR/image-sh-checkout"
if [[ -f "$stamp" && "$(cat "$stamp")" != "$ROOT" ]]; then
    echo "image.sh: $CARGO_TARGET_DIR was last used by $(cat "$stamp"): rebuilding wasm-admission itself" >&2
    for dir in "$CARGO_TARGET_DIR" "$CARGO_TARGET_DIR/pgo-image/gen"; do
        if [[ -d "$dir" ]]; then
            CARGO_TARGET_DIR="$dir" cargo clean --quiet --release --target "$TRIPLE" -p wasm-admission >&2 ||
                fail "cargo clean -p wasm-admission in $dir failed"
        fi
    done
fi
mkdir -p "$CARGO_TARGET_DIR"
echo "$ROOT" >"$stamp"
start=$SECONDS
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/usr/local/bin" "$context/etc/ssl/certs"
binary="$context/usr/local/bin/wasm-admission"
if [[ "$PGO" == 1 ]]; then
    echo "== image 1/3: profile-guided static binary ($TRIPLE; scripts/pgo-image.sh)" >&2
    bash scripts/pgo-image.sh "$TRIPLE" "$binary" || fail "the profile-guided build failed (above)"
else
    echo "== image 1/3: static binary (cargo build --release --target $TRIPLE)" >&2
    cargo build --release --locked --target "$TRIPLE" --bin wasm-admission ||
        fail "cargo build failed (above)"
    cp "$CARGO_TARGET_DIR/$TRIPLE/release/wasm-admission" "$binary"
fi
# Symbols are not needed in the image (panic messages keep their source locations). Stripped
# here rather than by the profile, so that the build stays the plain release build.
if command -v strip >/dev/null; then
    strip "$binary"
else
    echo "image.sh: strip (binutils) is missing: the binary keeps its symbols" >&2
fi
# FROM scratch has no dynamic loader: the binary must be static.
if command -v readelf >/dev/null && readelf -l "$binary" | grep -q INTERP; then
    fail "the binary is dynamically linked (it asks for $(readelf -l "$binary" | grep -o '/[^]]*ld[^]]*'))"
fi
"$binary" --version >/dev/null || fail "the built binary does not run (--version)"
echo "   $(du -k "$binary" | cut -f1) KiB, built in $((SECONDS - start)) s" >&2

# --- 2. the image ----------------------------------------------------------------------------
echo "== image 2/3: $TAG (deploy/image/Containerfile, FROM scratch)" >&2
cp /etc/ssl/certs/ca-certificates.crt "$context/etc/ssl/certs/ca-certificates.crt"
chmod 0755 "$binary"
chmod 0644 "$context/etc/ssl/certs/ca-certificates.crt"
labels=(--label "org.opencontainers.image.version=$VERSION")
[[ -n "$SOURCE" ]] && labels+=(--label "org.opencontainers.image.source=$SOURCE")
[[ -n "$SOURCE" ]] || echo "image.sh: no --source and no URL as git remote origin: org.opencontainers.image.source is not set" >&2
[[ -n "$REVISION" ]] && labels+=(--label "org.opencontainers.image.revision=$REVISION")
"${PODMAN[@]}" build --quiet --pull=never --layers=false --format oci --timestamp "$CREATED" \
    --identity-label=false "${labels[@]}" \
    -f deploy/image/Containerfile -t "$TAG" "$context" >/dev/null ||
    fail "podman build failed (above)"
size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$TAG")"
echo "   $TAG: $((size / 1024)) KiB uncompressed" >&2

# --- 3. push ---------------------------------------------------------------------------------
if [[ "$PUSH" == 1 ]]; then
    dest="$TAG"
    [[ -n "$PUSH_REGISTRY" ]] && dest="$PUSH_REGISTRY/${TAG##*/}"
    echo "== image 3/3: push $dest" >&2
    tls=()
    [[ "$INSECURE" == 1 ]] && tls=(--tls-verify=false)
    "${PODMAN[@]}" push --quiet "${tls[@]}" "$TAG" "docker://$dest" >&2 ||
        fail "podman push to $dest failed (above; podman login first for a registry that needs it)"
    echo "   pushed $dest" >&2
fi
echo "image.sh: $TAG built in $((SECONDS - start)) s" >&2
echo "$TAG"
