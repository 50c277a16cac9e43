#!/usr/bin/env bash
# Runs every test of wasm-admission. Installs what the tests need first, so it works on a fresh
# machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets
# Doc tests are not part of --all-targets.
cargo test --locked --doc
# The cluster install (chart, install.yaml, RuntimeClasses, Dockerfile); installs its own tools.
bash scripts/test-deploy.sh
