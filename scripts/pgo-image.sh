#!/usr/bin/env bash
# Profile-guided build of the shipped binary alone, as `scripts/image.sh --pgo` builds the
# container image's (docs/image.md; docs/performance.md). scripts/pgo.sh does the same for the load benchmark's four
# servers and trains on the benchmarks themselves; this one needs only curl:
#
#   1. build `wasm-admission` instrumented (-Cprofile-generate) for TRIPLE;
#   2. train: `serve` with a fresh certificate and the production log format, sent the example
#      reviews (examples/review: a Wasm Deployment, a privileged one that is denied, a Pod) over
#      HTTPS keep-alive by curl, to /mutate and /validate, several connections at once; then
#      SIGTERM, so that the profile is written;
#   3. merge the profile and build again with -Cprofile-use; copy the binary to OUT.
#
#   bash scripts/pgo-image.sh x86_64-unknown-linux-musl /out/wasm-admission
#
# llvm-profdata must be the one of rustc's own LLVM: scripts/llvm-profdata.sh finds it
# ($LLVM_PROFDATA, rustup's llvm-tools component, or llvm-profdata-<LLVM major>).
# Folders: $CARGO_TARGET_DIR (default target)/pgo-image/{gen,raw,use}.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: bash scripts/pgo-image.sh TARGET-TRIPLE OUT-BINARY" >&2
    exit 2
fi
triple="$1"
out="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

profdata="$(bash "$root/scripts/llvm-profdata.sh")"
command -v curl >/dev/null || { echo "pgo-image: curl is needed for the training" >&2; exit 1; }

dir="${CARGO_TARGET_DIR:-$root/target}/pgo-image"
raw="$dir/raw"
work="$dir/train"
rm -rf "$raw" "$work"
mkdir -p "$raw" "$work"

build() { # build FLAGS TARGET-DIR
    # --target: RUSTFLAGS then reach only the target's code, not build scripts and proc macros.
    env RUSTFLAGS="$1" CARGO_TARGET_DIR="$2" \
        cargo build --release --locked --target "$triple" --bin wasm-admission >&2
}

echo "== pgo-image 1/3: instrumented build" >&2
build "-Cprofile-generate=$raw" "$dir/gen"
gen="$dir/gen/$triple/release/wasm-admission"

echo "== pgo-image 2/3: training" >&2
"$gen" certs --out-dir "$work" >/dev/null 2>&1
port=18443
name=wasm-admission.wasm-admission.svc
"$gen" serve --listen "127.0.0.1:$port" --tls-cert-file "$work/tls.crt" \
    --tls-private-key-file "$work/tls.key" --log-format json --namespace wasm-admission \
    --watch-runtime-classes off 2>"$work/serve.log" &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
tls=(--cacert "$work/ca.crt" --connect-to "$name:$port:127.0.0.1:$port")
for _ in $(seq 200); do
    curl -sf "${tls[@]}" -o /dev/null "https://$name:$port/readyz" && break
    sleep 0.05
done
curl -sSf "${tls[@]}" -o /dev/null "https://$name:$port/readyz"
# Each curl sends its review `per` times over one keep-alive connection (URL globbing); the six
# run at once, so the server's workers see concurrent connections as in production.
per=2000
pids=()
for review in examples/review/*.json; do
    for endpoint in mutate validate; do
        curl -sS "${tls[@]}" -H 'Content-Type: application/json' --data-binary "@$review" \
            -o /dev/null -w '%{http_code}\n' \
            "https://$name:$port/$endpoint?timeout=10s&n=[1-$per]" >"$work/$(basename "$review").$endpoint" &
        pids+=($!)
    done
done
for pid in "${pids[@]}"; do wait "$pid"; done
kill -TERM "$serve_pid"
wait "$serve_pid"
trap - EXIT
answered="$(cat "$work"/*.json.* | grep -c '^200$' || true)"
expected=$((${#pids[@]} * per))
if [[ "$answered" -ne "$expected" ]]; then
    echo "pgo-image: training answered $answered of $expected reviews with 200; see $work" >&2
    exit 1
fi
echo "pgo-image: trained on $answered reviews" >&2

echo "== pgo-image 3/3: merge and optimised build" >&2
"$profdata" merge -o "$dir/merged.profdata" "$raw"/*.profraw
build "-Cprofile-use=$dir/merged.profdata" "$dir/use"
mkdir -p "$(dirname "$out")"
cp "$dir/use/$triple/release/wasm-admission" "$out"
echo "pgo-image: wrote $out" >&2
