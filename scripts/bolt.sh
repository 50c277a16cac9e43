#!/usr/bin/env bash
# BOLT (LLVM's post-link optimiser) of `serve` and of the load benchmark's floors (docs/performance.md).
# It lays out the machine code of an already linked binary by a profile of its
# execution: hot paths together and straight, cold code apart. Four steps, under target/bolt:
#
#   1. build `wasm-admission` and the load benchmark with their relocations kept
#      (-Wl,--emit-relocs), which BOLT needs to move functions;
#   2. instrument both with `llvm-bolt -instrument`;
#   3. train: the load benchmark with --quick on the instrumented binaries (serve, and the floors,
#      which run as copies of the benchmark binary); each process writes its profile on exit;
#   4. merge each binary's profiles (`merge-fdata`) and rewrite the binary with them.
#
# Every server the load benchmark compares is optimised the same way, so its ratios stay those of
# the same stack. Needs llvm-bolt and merge-fdata (`apt-get install bolt-22`; LLVM_BOLT and
# MERGE_FDATA name others). About 5 minutes here (one fat-LTO build).
#
#   bash scripts/bolt.sh                  # builds; prints where serve is
#   bash scripts/bolt.sh --rounds 3       # and then runs the load benchmark with these arguments
#   BOLT_ON_PGO=1 bash scripts/bolt.sh --rounds 3
#                                         # BOLT on top of the profile-guided build: step 1 also
#                                         # uses scripts/pgo.sh's merged profile (run it first)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bolt="${LLVM_BOLT:-llvm-bolt-22}"
merge="${MERGE_FDATA:-merge-fdata-22}"
for tool in "$bolt" "$merge"; do
    if ! command -v "$tool" >/dev/null; then
        echo "bolt: $tool not found; install it with: apt-get install bolt-22" >&2
        exit 1
    fi
done

dir="$root/target/bolt"
rm -rf "${dir:?}/inst" "${dir:?}/fdata" "${dir:?}/bin"
mkdir -p "$dir/inst" "$dir/fdata" "$dir/bin"

rustflags="-Clink-arg=-Wl,--emit-relocs"
build="$dir/build"
if [[ "${BOLT_ON_PGO:-0}" == 1 ]]; then
    profile="$root/target/pgo/merged.profdata"
    if [[ ! -f "$profile" ]]; then
        echo "bolt: BOLT_ON_PGO=1 needs $profile; run scripts/pgo.sh first" >&2
        exit 1
    fi
    rustflags+=" -Cprofile-use=$profile"
    build="$dir/build-pgo"
fi

echo "== bolt 1/4: build with relocations${BOLT_ON_PGO:+ (BOLT_ON_PGO=$BOLT_ON_PGO)}" >&2
# --target: RUSTFLAGS then reach only the target's code, not build scripts and proc macros.
env RUSTFLAGS="$rustflags" CARGO_TARGET_DIR="$build" \
    cargo bench --locked --target "$triple" --bench load --no-run >&2
release="$build/$triple/release"
# The newest build of the benchmark (cargo names it load-<hash>).
bench="$(find "$release/deps" -maxdepth 1 -type f -executable -name 'load-*' -printf '%T@ %p\n' \
    | sort -rn | head -1 | cut -d' ' -f2-)"

# The two binaries BOLT rewrites, by the name their profiles and outputs take.
declare -A input=([wasm-admission]="$release/wasm-admission" [load]="$bench")

echo "== bolt 2/4: instrument" >&2
for name in "${!input[@]}"; do
    "$bolt" "${input[$name]}" -instrument -o "$dir/inst/$name" \
        -instrumentation-file="$dir/fdata/$name" -instrumentation-file-append-pid >/dev/null
done

echo "== bolt 3/4: training" >&2
"$dir/inst/load" --bench --quick --serve-bin "$dir/inst/wasm-admission" >&2

echo "== bolt 4/4: merge and optimise" >&2
for name in "${!input[@]}"; do
    "$merge" "$dir/fdata/$name".*.fdata >"$dir/fdata/$name.fdata"
    "$bolt" "${input[$name]}" -o "$dir/bin/$name" -data="$dir/fdata/$name.fdata" \
        -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold \
        -split-eh >/dev/null
done

serve="$dir/bin/wasm-admission"
echo "bolt: serve is $serve" >&2
if [[ $# -gt 0 ]]; then
    "$dir/bin/load" --bench --serve-bin "$serve" "$@"
else
    echo "bolt: run the load benchmark on the BOLT builds with: bash scripts/bolt.sh --rounds 3" >&2
fi
