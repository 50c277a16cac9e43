#!/usr/bin/env bash
# Profile-guided optimisation (PGO) of `serve` and of the load benchmark's floors
# (docs/performance.md). Three steps, each in its own target folder under target/pgo:
#
#   1. build `wasm-admission` and the two benchmarks instrumented (-Cprofile-generate);
#   2. train: `cargo bench --bench load -- --quick` (serve and the three floors, each on its own
#      workload; they exit on SIGTERM so that their profiles are written) and the engine
#      benchmark's five reviews (small Pod, Deployment, 30-container Pod, denied Pod, non-Wasm Pod);
#   3. merge the profiles with the llvm-profdata of rustc's own LLVM version and build again
#      with -Cprofile-use.
#
# Every server the load benchmark compares is built the same way, so its ratios stay those of the
# same stack. Needs the llvm-profdata of rustc's own LLVM (scripts/llvm-profdata.sh says where it
# looks: `apt-get install llvm-22` for rustc 1.95 on Debian). About 15 minutes here (two fat-LTO
# builds).
#
#   bash scripts/pgo.sh                  # builds; prints how to run serve and the benchmark
#   bash scripts/pgo.sh --rounds 3       # and then runs the load benchmark with these arguments
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
triple="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$(bash "$root/scripts/llvm-profdata.sh")"

dir="$root/target/pgo"
raw="$dir/raw"
rm -rf "$raw"
mkdir -p "$raw"

# --target: RUSTFLAGS then reach only the target's code, not build scripts and proc macros.
gen=(env RUSTFLAGS="-Cprofile-generate=$raw" CARGO_TARGET_DIR="$dir/gen"
    cargo bench --locked --target "$triple")
use=(env RUSTFLAGS="-Cprofile-use=$dir/merged.profdata" CARGO_TARGET_DIR="$dir/use"
    cargo bench --locked --target "$triple")

echo "== pgo 1/3: instrumented build" >&2
"${gen[@]}" --bench load --bench engine --no-run >&2

echo "== pgo 2/3: training" >&2
"${gen[@]}" --bench load -- --quick >&2
"${gen[@]}" --bench engine -- --warm-up-time 1 --measurement-time 2 >&2

echo "== pgo 3/3: merge and optimised build" >&2
"$profdata" merge -o "$dir/merged.profdata" "$raw"/*.profraw
"${use[@]}" --bench load --no-run >&2

serve="$dir/use/$triple/release/wasm-admission"
echo "pgo: serve is $serve" >&2
if [[ $# -gt 0 ]]; then
    "${use[@]}" --bench load -- "$@"
else
    echo "pgo: run the load benchmark on the PGO builds with: bash scripts/pgo.sh --rounds 3" >&2
fi
