#!/usr/bin/env bash
# Installs, once, the HTTP load generator that `cargo bench --bench load` drives: oha from
# crates.io (pinned), built with `cargo install --locked` into .cache/bench-tools/cargo
# (git-ignored). Prints the path of the oha binary on standard output; everything else goes to
# standard error. A second run finds the binary and returns at once.
#
# Not under .cache/tools: scripts/deploy-tools.sh wipes that folder whenever its own pins change.
#
#   bash scripts/bench-tools.sh            # -> /path/to/.cache/bench-tools/cargo/bin/oha
#   OHA=/usr/local/bin/oha cargo bench --bench load   # use another oha instead
set -euo pipefail

OHA_VERSION="1.16.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${WASM_ADMISSION_BENCH_TOOLS_DIR:-$root/.cache/bench-tools}/cargo"
oha="$dir/bin/oha"

if [[ -x "$oha" ]] && "$oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    echo "$oha"
    exit 0
fi

echo "== installing oha $OHA_VERSION into $dir (once; a few minutes)" >&2
mkdir -p "$dir"
# Its own target folder, so the project's target/ and its lock are not touched.
CARGO_TARGET_DIR="$dir/target" cargo install --locked --root "$dir" --version "$OHA_VERSION" oha >&2
rm -rf "$dir/target"
"$oha" --version >&2
echo "$oha"
