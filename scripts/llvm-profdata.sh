#!/usr/bin/env bash
# Prints the path of an llvm-profdata that reads this rustc's profiles (its own LLVM version), for
# scripts/pgo.sh and scripts/pgo-image.sh. In this order: $LLVM_PROFDATA (a name on the PATH or
# a path); rustup's llvm-tools component (`rustup component add llvm-tools`); llvm-profdata-<rustc's
# LLVM major> on the PATH (Debian: `apt-get install llvm-22` for rustc 1.95). Exits 1 with a message saying what to install when none is found.
set -euo pipefail

host="$(rustc -vV | sed -n 's/^host: //p')"
major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
if [[ -n "${LLVM_PROFDATA:-}" ]]; then
    profdata="$(command -v "$LLVM_PROFDATA" || true)"
else
    profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
    [[ -x "$profdata" ]] || profdata="$(command -v "llvm-profdata-$major" || true)"
fi
if [[ -z "$profdata" || ! -x "$profdata" ]]; then
    echo "llvm-profdata for LLVM $major not found (rustc's own version is needed to read its profiles):" >&2
    echo "    rustup component add llvm-tools, apt-get install llvm-$major, or set LLVM_PROFDATA" >&2
    exit 1
fi
echo "$profdata"
