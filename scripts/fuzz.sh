#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for a bounded time each, with libFuzzer through
# cargo-fuzz, and fails on the first crash, hang or invariant broken.
#
#   bash scripts/fuzz.sh SECONDS [TARGET...]     # e.g. bash scripts/fuzz.sh 25
#
# Only stable Rust is needed: cargo-fuzz passes nightly-only flags (-Zsanitizer=address), which
# RUSTC_BOOTSTRAP=1 allows on a stable compiler. cargo-fuzz is installed from crates.io when
# missing. Each target starts from its committed seeds (fuzz/seeds/TARGET, read-only) and the
# working corpus fuzz/corpus/TARGET (git-ignored, grows between runs); a crash is written to
# fuzz/artifacts/TARGET/ and printed with the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}"
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(review manifest quantity config)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# Where the instrumented build goes: fuzz/target, unless FUZZ_TARGET_DIR names a folder kept
# between runs (CI keeps one, so it rebuilds only what changed).
target_dir="${FUZZ_TARGET_DIR:-fuzz/target}"
# -timeout: one input taking longer than this is a hang. -rss_limit_mb: bounded memory.
# -max_len: large enough for the biggest seed review, small enough to stay fast.
libfuzzer_args=(
    "-max_total_time=${seconds}"
    -timeout=10
    -rss_limit_mb=2048
    -max_len=65536
    -print_final_stats=1
)

echo "== cargo fuzz build (release, address sanitizer)"
cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir"

for target in "${targets[@]}"; do
    echo "== fuzz ${target} for ${seconds}s"
    mkdir -p "fuzz/corpus/${target}" fuzz/artifacts
    log="fuzz/artifacts/${target}.log"
    set +e
    cargo fuzz run --fuzz-dir fuzz --target-dir "$target_dir" "${target}" \
        "fuzz/corpus/${target}" "fuzz/seeds/${target}" \
        -- "${libfuzzer_args[@]}" >"$log" 2>&1
    status=$?
    set -e
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz target ${target} failed (exit ${status}); the full log is ${log}"
        # The input's bytes are printed in full by cargo-fuzz; show the panic and the reproducer.
        grep -E -A3 'panicked|ERROR: libFuzzer|SUMMARY|deadly signal|timeout after' "$log" | cut -c1-400 | head -n 40
        grep -E -A2 '^Reproduce with' "$log" || true
        exit "$status"
    fi
done
echo "== fuzz: every target ran ${seconds}s without a crash"
echo "fuzz: ${#targets[@]} passed, 0 failed"
