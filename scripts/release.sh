#!/usr/bin/env bash
# Builds a release of wasm-admission into dist/ and, with --registry, pushes it (docs/releasing.md):
#
#   dist/wasm-admission-VERSION-x86_64-unknown-linux-musl    static binaries (stripped)
#   dist/wasm-admission-VERSION-aarch64-unknown-linux-musl
#   dist/image/                                              the image index (OCI layout): linux/amd64
#                                                            and linux/arm64, FROM scratch, the labels
#                                                            of scripts/image.sh
#   dist/wasm-admission-VERSION.tgz                          the chart, version/appVersion VERSION,
#                                                            its default image the index by digest
#   dist/install.yaml, dist/install-policies.yaml            deploy/render.sh's output, the image
#                                                            named by digest
#   dist/sbom/*.cdx.json                                     CycloneDX SBOMs: the crates of each
#                                                            binary, the image's
#                                                            (scripts/release-sbom.py)
#   dist/SHA256SUMS                                          checksums of all the files above
#   dist/SHA256SUMS.sig, dist/cosign.pub                     with --key: cosign's signature of
#                                                            SHA256SUMS, and the public key
#   dist/digests.env                                         the pushed references and digests
#
# With --registry R it pushes the index to R/wasm-admission:VERSION (same digest as dist/image),
# the chart to oci://R/charts/wasm-admission:VERSION, and with --key signs both with cosign. The
# signatures are made offline with the key and uploaded to no transparency log (Rekor): verify
# with `cosign verify --key cosign.pub --insecure-ignore-tlog=true`.
#
#   bash scripts/release.sh 0.1.0
#   COSIGN_PASSWORD=... bash scripts/release.sh 0.1.0 --registry ghcr.io/example --key cosign.key
#
# Options:
#   --registry R    push to R (HOST[:PORT][/PATH]); the image is R/wasm-admission, the chart
#                   oci://R/charts/wasm-admission. Without it, install.yaml and the chart name the
#                   image wasm-admission@sha256:... and nothing is pushed or signed in a registry
#   --key FILE      cosign private key (password in COSIGN_PASSWORD); checked before building
#   --plain-http    the registry speaks plain HTTP (a local test registry)
#   --source URL    org.opencontainers.image.source (default: the git remote `origin`)
#   --out DIR       instead of dist/ (emptied first)
#
# It stops before building, naming what is missing, when: VERSION differs from Cargo.toml's or the
# chart's version/appVersion; the work tree has uncommitted changes; a tool is missing (podman,
# skopeo, helm, python3, jq, musl-gcc, aarch64-linux-gnu-gcc, the rustup targets, and
# cosign with --key; `bash scripts/release-tools.sh` installs them); the key is missing, unreadable
# or its password wrong. A push that fails leaves dist/ complete, and the script ends non-zero
# naming each part that did not reach the registry.
#
# The cargo target folder is $WASM_ADMISSION_IMAGE_TARGET_DIR, default
# ~/.cache/wasm-admission/image-target, shared with scripts/image.sh (the x86_64 build that
# scripts/test-image.sh made is reused as is).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

fail() {
    echo "release.sh: $*" >&2
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

VERSION=""
REGISTRY=""
KEY=""
PLAIN_HTTP=0
SOURCE=""
OUT="$ROOT/dist"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --registry)
            [[ $# -ge 2 ]] || usage 2
            REGISTRY="${2%/}"
            shift 2
            ;;
        --key)
            [[ $# -ge 2 ]] || usage 2
            KEY="$2"
            shift 2
            ;;
        --plain-http) PLAIN_HTTP=1; shift ;;
        --source)
            [[ $# -ge 2 ]] || usage 2
            SOURCE="$2"
            shift 2
            ;;
        --out)
            [[ $# -ge 2 ]] || usage 2
            OUT="$2"
            shift 2
            ;;
        -h | --help) usage 0 ;;
        -*) echo "release.sh: unknown option $1" >&2; usage 2 ;;
        *)
            [[ -z "$VERSION" ]] || { echo "release.sh: a second VERSION: $1" >&2; usage 2; }
            VERSION="$1"
            shift
            ;;
    esac
done
[[ -n "$VERSION" ]] || { echo "release.sh: VERSION is missing" >&2; usage 2; }
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
    fail "VERSION '$VERSION' is not a semantic version (such as 0.1.0 or 0.2.0-rc.1)"

TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
declare -A ARCH=([x86_64-unknown-linux-musl]=amd64 [aarch64-unknown-linux-musl]=arm64)
CHART_SRC="$ROOT/deploy/helm/wasm-admission"

# --- 1. checks, before anything is built ------------------------------------------------------
cargo_version="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
chart_version="$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART_SRC/Chart.yaml")"
chart_app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART_SRC/Chart.yaml")"
mismatch=()
[[ "$cargo_version" == "$VERSION" ]] || mismatch+=("Cargo.toml version is $cargo_version")
[[ "$chart_version" == "$VERSION" ]] || mismatch+=("deploy/helm/wasm-admission/Chart.yaml version is $chart_version")
[[ "$chart_app_version" == "$VERSION" ]] || mismatch+=("deploy/helm/wasm-admission/Chart.yaml appVersion is $chart_app_version")
if [[ ${#mismatch[@]} -gt 0 ]]; then
    fail "VERSION $VERSION does not match: $(printf '%s; ' "${mismatch[@]}")set all three to $VERSION (docs/releasing.md) and commit"
fi

command -v git >/dev/null || fail "git is missing"
git rev-parse --git-dir >/dev/null 2>&1 || fail "$ROOT is not a git checkout: a release is built from a commit"
dirty="$(git status --porcelain --untracked-files=normal)"
if [[ -n "$dirty" ]]; then
    fail "the work tree has uncommitted changes; commit or stash them first:
$(echo "$dirty" | head -10)"
fi
COMMIT="$(git rev-parse HEAD)"

# The tools that scripts/release-tools.sh and scripts/deploy-tools.sh install, where they put them.
if [[ -z "${WASM_ADMISSION_RELEASE_TOOLS:-}" ]]; then
    WASM_ADMISSION_RELEASE_TOOLS="$(bash "$ROOT/scripts/release-tools.sh" --print-bin)"
fi
export PATH="$PATH:$WASM_ADMISSION_RELEASE_TOOLS:${WASM_ADMISSION_TOOLS_DIR:-$ROOT/.cache/tools}/bin"
missing=()
need() { # COMMAND WHAT-TO-DO
    command -v "$1" >/dev/null || missing+=("$1 ($2)")
}
need cargo "https://rustup.rs"
need rustup "https://rustup.rs"
need jq "apt-get install jq"
need sha256sum "apt-get install coreutils"
need podman "apt-get install podman"
need skopeo "apt-get install skopeo"
need musl-gcc "apt-get install musl-tools: the C code of ring and mimalloc for x86_64"
need aarch64-linux-gnu-gcc "apt-get install gcc-aarch64-linux-gnu: the C code of ring and mimalloc for aarch64"
need aarch64-linux-gnu-strip "apt-get install binutils-aarch64-linux-gnu"
need strip "apt-get install binutils"
need helm "bash scripts/release-tools.sh"
need python3 "apt-get install python3"
[[ -z "$KEY" ]] || need cosign "bash scripts/release-tools.sh"
if command -v rustup >/dev/null; then
    installed="$(rustup target list --installed 2>/dev/null || true)"
    for t in "${TARGETS[@]}"; do
        grep -qx "$t" <<<"$installed" || missing+=("the $t target (rustup target add $t)")
    done
fi
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=("/etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)")
if [[ ${#missing[@]} -gt 0 ]]; then
    fail "missing, nothing was built: $(printf '\n  - %s' "${missing[@]}")
  (bash scripts/release-tools.sh installs all of them on Debian as root)"
fi

# The key: readable and unlocked by COSIGN_PASSWORD now, not after an hour of building.
if [[ -n "$KEY" ]]; then
    [[ -f "$KEY" ]] || fail "--key $KEY: no such file; nothing was built or signed"
    [[ -r "$KEY" ]] || fail "--key $KEY: not readable; nothing was built or signed"
    export COSIGN_PASSWORD="${COSIGN_PASSWORD-}"
    pub="$(cosign public-key --key "$KEY" 2>&1)" ||
        fail "--key $KEY: cosign cannot read it (a wrong COSIGN_PASSWORD, or not a cosign private key): $pub"
else
    echo "release.sh: no --key: nothing is signed" >&2
fi

if [[ -z "$SOURCE" ]]; then
    SOURCE="$(git config --get remote.origin.url 2>/dev/null || true)"
    if [[ "$SOURCE" =~ ^git@([^:]+):(.+)$ ]]; then
        SOURCE="https://${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
    fi
    SOURCE="${SOURCE%.git}"
    [[ "$SOURCE" == *://* ]] || SOURCE=""
fi
CREATED="$(git log -1 --format=%ct)"
if [[ -n "$REGISTRY" ]]; then
    IMAGE_REPO="$REGISTRY/wasm-admission"
    CHART_REPO="oci://$REGISTRY/charts"
else
    IMAGE_REPO="wasm-admission"
    CHART_REPO=""
fi

rm -rf "$OUT"
mkdir -p "$OUT/sbom"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d)"
LIST="localhost/wasm-admission-release:$VERSION-$$"
PODMAN=(podman --storage-driver "${WASM_ADMISSION_STORAGE_DRIVER:-vfs}")
cleanup() {
    "${PODMAN[@]}" manifest rm "$LIST" >/dev/null 2>&1 || true
    for t in "${TARGETS[@]}"; do
        "${PODMAN[@]}" rmi -f "$LIST-${ARCH[$t]}" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
start=$SECONDS
step() { echo "== release $VERSION: $* ($((SECONDS - start)) s)" >&2; }
[[ -n "$KEY" ]] && echo "$pub" >"$OUT/cosign.pub"

# --- 2. static binaries -----------------------------------------------------------------------
export CARGO_TARGET_DIR="${WASM_ADMISSION_IMAGE_TARGET_DIR:-$HOME/.cache/wasm-admission/image-target}"
mkdir -p "$CARGO_TARGET_DIR"
# As scripts/image.sh: cargo judges freshness by file times, and names this crate's outputs alike
# in every checkout, so this crate (not its dependencies) is rebuilt when the checkout differs from
# the last one built here. build.rs reruns when HEAD moves, so a new commit is rebuilt too.
# One stamp per target: x86_64's is scripts/image.sh's own (so the build that test-image.sh just
# made is kept), aarch64's is this script's.
for t in "${TARGETS[@]}"; do
    stamp="$CARGO_TARGET_DIR/release-sh-checkout-$t"
    [[ "$t" == x86_64-unknown-linux-musl ]] && stamp="$CARGO_TARGET_DIR/image-sh-checkout"
    if [[ -f "$stamp" && "$(cat "$stamp")" != "$ROOT" ]]; then
        echo "release.sh: $t in $CARGO_TARGET_DIR was last built from $(cat "$stamp"): rebuilding wasm-admission itself" >&2
        cargo clean --quiet --release --target "$t" -p wasm-admission >&2 ||
            fail "cargo clean -p wasm-admission --target $t failed"
    fi
    echo "$ROOT" >"$stamp"
done
# aarch64: Debian's cross gcc compiles the C code of ring and mimalloc; rust-lld links against
# the musl libc that the Rust target ships (self-contained), as for x86_64.
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
declare -A BIN
for t in "${TARGETS[@]}"; do
    step "binary $t (cargo build --release)"
    cargo build --release --locked --target "$t" --bin wasm-admission || fail "cargo build --target $t failed (above)"
    BIN[$t]="$OUT/wasm-admission-$VERSION-$t"
    cp "$CARGO_TARGET_DIR/$t/release/wasm-admission" "${BIN[$t]}"
    case "$t" in
        aarch64-*) aarch64-linux-gnu-strip "${BIN[$t]}" ;;
        *) strip "${BIN[$t]}" ;;
    esac
    chmod 0755 "${BIN[$t]}"
    if command -v readelf >/dev/null && readelf -l "${BIN[$t]}" | grep -q INTERP; then
        fail "${BIN[$t]} is dynamically linked: the image is FROM scratch"
    fi
done
# The x86_64 binary runs here: it names this commit, and renders the manifests below.
host_version="$("${BIN[x86_64-unknown-linux-musl]}" --version)" || fail "the x86_64 binary does not run"
[[ "$host_version" == "wasm-admission $VERSION (commit $COMMIT, target x86_64-unknown-linux-musl)" ]] ||
    fail "the x86_64 binary says '$host_version', not version $VERSION at commit $COMMIT"

# --- 3. the image index ------------------------------------------------------------------------
step "image index linux/amd64 + linux/arm64 (deploy/image/Containerfile, FROM scratch)"
labels=(--label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.revision=$COMMIT")
[[ -n "$SOURCE" ]] && labels+=(--label "org.opencontainers.image.source=$SOURCE")
"${PODMAN[@]}" manifest create "$LIST" >/dev/null || fail "podman manifest create failed"
for t in "${TARGETS[@]}"; do
    ctx="$work/context-${ARCH[$t]}"
    mkdir -p "$ctx/usr/local/bin" "$ctx/etc/ssl/certs"
    install -m 0755 "${BIN[$t]}" "$ctx/usr/local/bin/wasm-admission"
    install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/ca-certificates.crt"
    # FROM scratch with COPY only: no instruction runs, so the arm64 image needs no emulator.
    "${PODMAN[@]}" build --quiet --pull=never --layers=false --format oci --timestamp "$CREATED" \
        --identity-label=false --platform "linux/${ARCH[$t]}" "${labels[@]}" \
        -f deploy/image/Containerfile -t "$LIST-${ARCH[$t]}" "$ctx" >/dev/null ||
        fail "podman build linux/${ARCH[$t]} failed (above)"
    "${PODMAN[@]}" manifest add "$LIST" "containers-storage:$LIST-${ARCH[$t]}" >/dev/null ||
        fail "podman manifest add linux/${ARCH[$t]} failed"
done
"${PODMAN[@]}" manifest push --quiet --all --format oci "$LIST" "oci:$OUT/image:$VERSION" >&2 ||
    fail "podman manifest push to $OUT/image failed"
INDEX_DIGEST="$(skopeo inspect --raw "oci:$OUT/image:$VERSION" | sha256sum | cut -d' ' -f1)"
INDEX_DIGEST="sha256:$INDEX_DIGEST"
IMAGE_REF="$IMAGE_REPO@$INDEX_DIGEST"
echo "   $IMAGE_REF" >&2

# --- 4. the chart, install.yaml ----------------------------------------------------------------
step "chart $VERSION (default image $IMAGE_REF)"
mkdir -p "$work/chart"
cp -r "$CHART_SRC" "$work/chart/"
chart="$work/chart/wasm-admission"
# The released chart runs the released image by digest with no --set.
python3 - "$chart/values.yaml" "$IMAGE_REPO" "$INDEX_DIGEST" <<'PY' || fail "could not set the image in the chart's values.yaml"
import re, sys
path, repo, digest = sys.argv[1:]
text = open(path).read()
block = re.search(r"^image:\n((?:[ #].*\n|\n)*)", text, re.M)
assert block, "no image: block"
body = block.group(1)
new, n1 = re.subn(r"^  repository: .*$", f"  repository: {repo}", body, count=1, flags=re.M)
new, n2 = re.subn(r'^  digest: .*$', f'  digest: "{digest}"', new, count=1, flags=re.M)
assert n1 == 1 and n2 == 1, "image.repository or image.digest not found"
open(path, "w").write(text[: block.start(1)] + new + text[block.end(1):])
PY
helm package "$chart" --destination "$OUT" >/dev/null || fail "helm package failed"
CHART_TGZ="$OUT/wasm-admission-$VERSION.tgz"
[[ -f "$CHART_TGZ" ]] || fail "helm package did not write $CHART_TGZ"
rendered="$(helm template wasm-admission "$CHART_TGZ" --namespace wasm-admission --kube-version 1.30.0 |
    sed -n 's/^ *image: "\(.*\)"$/\1/p' | sort -u)"
[[ "$rendered" == "$IMAGE_REF" ]] || fail "the packaged chart renders the image '$rendered', not $IMAGE_REF"

step "install.yaml, install-policies.yaml (deploy/render.sh, image by digest)"
WASM_ADMISSION="${BIN[x86_64-unknown-linux-musl]}" bash deploy/render.sh "$work/render" >/dev/null 2>"$work/render.log" ||
    { cat "$work/render.log" >&2; fail "deploy/render.sh failed (above)"; }
for f in install.yaml install-policies.yaml; do
    sed "s|image: \"wasm-admission:$VERSION\"|image: \"$IMAGE_REF\"|" "$work/render/$f" >"$OUT/$f"
    ! grep -q "wasm-admission:$VERSION\"" "$OUT/$f" || fail "$f still names wasm-admission:$VERSION"
done
grep -q "image: \"$IMAGE_REF\"" "$OUT/install.yaml" || fail "install.yaml does not name $IMAGE_REF"

# --- 5. SBOMs ------------------------------------------------------------------------------------
step "SBOMs (CycloneDX 1.5: the crates of each binary, the image; scripts/release-sbom.py)"
platforms=()
for t in "${TARGETS[@]}"; do
    sbom="$OUT/sbom/wasm-admission-$VERSION-$t.cdx.json"
    python3 scripts/release-sbom.py crates "$t" "${BIN[$t]}" "$VERSION" "$COMMIT" "$CREATED" >"$sbom" ||
        fail "the crate SBOM for $t could not be written (above)"
    manifest="$(skopeo inspect --raw "oci:$OUT/image:$VERSION" |
        jq -r --arg a "${ARCH[$t]}" '.manifests[] | select(.platform.architecture == $a) | .digest')"
    platforms+=("${ARCH[$t]}=$manifest=${BIN[$t]}=$sbom")
done
# The image's: no image scanner. Each image holds exactly two files (scripts/test-image.sh checks
# the layer): the binary, whose crates are the SBOM above, and Debian's CA bundle.
python3 scripts/release-sbom.py image "$INDEX_DIGEST" "$IMAGE_REPO" "$VERSION" "$COMMIT" "$CREATED" \
    /etc/ssl/certs/ca-certificates.crt "$(dpkg-query -W -f '${Version}' ca-certificates 2>/dev/null || echo unknown)" \
    "${platforms[@]}" >"$OUT/sbom/wasm-admission-$VERSION-image.cdx.json" ||
    fail "the image SBOM could not be written (above)"

# --- 6. checksums ------------------------------------------------------------------------------
step "SHA256SUMS"
(
    cd "$OUT"
    sha256sum -- wasm-admission-"$VERSION"-* "wasm-admission-$VERSION.tgz" install.yaml \
        install-policies.yaml sbom/*.cdx.json >SHA256SUMS
) || fail "sha256sum failed"
if [[ -n "$KEY" ]]; then
    cosign sign-blob --yes --key "$KEY" --tlog-upload=false --output-signature "$OUT/SHA256SUMS.sig" \
        "$OUT/SHA256SUMS" >/dev/null 2>"$work/sign.log" ||
        { cat "$work/sign.log" >&2; fail "cosign sign-blob SHA256SUMS failed"; }
fi

# --- 7. push and sign -----------------------------------------------------------------------------
not_pushed=()
{
    echo "VERSION=$VERSION"
    echo "COMMIT=$COMMIT"
    echo "IMAGE=$IMAGE_REF"
    echo "INDEX_DIGEST=$INDEX_DIGEST"
} >"$OUT/digests.env"
if [[ -n "$REGISTRY" ]]; then
    skopeo_tls=()
    helm_tls=()
    cosign_tls=()
    if [[ "$PLAIN_HTTP" == 1 ]]; then
        skopeo_tls=(--dest-tls-verify=false)
        helm_tls=(--plain-http)
        cosign_tls=(--allow-http-registry)
    fi
    step "push the image index to $IMAGE_REPO:$VERSION"
    if skopeo copy --quiet --all --preserve-digests "${skopeo_tls[@]}" \
        "oci:$OUT/image:$VERSION" "docker://$IMAGE_REPO:$VERSION" >"$work/push-image.log" 2>&1; then
        src_tls=()
        [[ "$PLAIN_HTTP" == 1 ]] && src_tls=(--tls-verify=false)
        pushed="sha256:$(skopeo inspect --raw "${src_tls[@]}" "docker://$IMAGE_REPO:$VERSION" | sha256sum | cut -d' ' -f1)"
        if [[ "$pushed" != "$INDEX_DIGEST" ]]; then
            not_pushed+=("the image index: the registry serves $pushed for $IMAGE_REPO:$VERSION, not $INDEX_DIGEST")
        elif [[ -n "$KEY" ]]; then
            step "sign $IMAGE_REF (cosign, key, no transparency log)"
            cosign sign --yes --key "$KEY" --tlog-upload=false "${cosign_tls[@]}" "$IMAGE_REF" \
                >/dev/null 2>"$work/sign-image.log" ||
                not_pushed+=("the image signature (cosign sign: $(tail -1 "$work/sign-image.log"))")
        fi
    else
        not_pushed+=("the image index $IMAGE_REPO:$VERSION (skopeo copy: $(tail -1 "$work/push-image.log"))")
        [[ -z "$KEY" ]] || not_pushed+=("the image signature (the image is not there to sign)")
    fi

    step "push the chart to $CHART_REPO/wasm-admission:$VERSION"
    if helm push "$CHART_TGZ" "$CHART_REPO" "${helm_tls[@]}" >"$work/push-chart.log" 2>&1; then
        chart_digest="$(sed -n 's/^Digest: *//p' "$work/push-chart.log" | head -1)"
        CHART_REF="${CHART_REPO#oci://}/wasm-admission@$chart_digest"
        echo "CHART=$CHART_REPO/wasm-admission" >>"$OUT/digests.env"
        echo "CHART_DIGEST=$chart_digest" >>"$OUT/digests.env"
        if [[ -z "$chart_digest" ]]; then
            not_pushed+=("the chart's digest (helm push printed none: $(tail -1 "$work/push-chart.log"))")
        elif [[ -n "$KEY" ]]; then
            step "sign $CHART_REF (cosign, key, no transparency log)"
            cosign sign --yes --key "$KEY" --tlog-upload=false "${cosign_tls[@]}" "$CHART_REF" \
                >/dev/null 2>"$work/sign-chart.log" ||
                not_pushed+=("the chart signature (cosign sign: $(tail -1 "$work/sign-chart.log"))")
        fi
    else
        not_pushed+=("the chart $CHART_REPO/wasm-admission:$VERSION (helm push: $(tail -1 "$work/push-chart.log"))")
        [[ -z "$KEY" ]] || not_pushed+=("the chart signature (the chart is not there to sign)")
    fi
fi

# --- 8. summary ---------------------------------------------------------------------------------
step "done"
{
    echo "release.sh: wasm-admission $VERSION (commit $COMMIT) in ${OUT#"$ROOT"/}/:"
    (cd "$OUT" && sed 's/^/  /' SHA256SUMS)
    echo "  image index: $IMAGE_REF (linux/amd64, linux/arm64)"
    [[ -z "$KEY" ]] || echo "  signed with $KEY (offline, no transparency log); public key ${OUT#"$ROOT"/}/cosign.pub"
} >&2
if [[ ${#not_pushed[@]} -gt 0 ]]; then
    fail "dist/ is complete, but these did not reach $REGISTRY: $(printf '\n  - %s' "${not_pushed[@]}")
  (push again with: bash scripts/release.sh $VERSION --registry $REGISTRY ...; docs/releasing.md)"
fi
[[ -z "$REGISTRY" ]] || echo "release.sh: pushed $IMAGE_REF and $CHART_REPO/wasm-admission:$VERSION" >&2
