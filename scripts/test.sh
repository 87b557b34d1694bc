#!/usr/bin/env bash
# Runs the whole test suite: installs libtorch into the project venv if missing, then
# `cargo test` over every crate (release profile: one build of the heavy stack).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Only the worker may depend on tch: the shared crates must build without libtorch.
for crate in attrib-proto attrib-datasets; do
    if cargo tree -p "$crate" -e normal --prefix none | grep -qE '^(tch|torch-sys) '; then
        echo "test.sh: $crate depends on tch; only attrib-worker may" >&2
        exit 1
    fi
done
cargo test --release --workspace "$@"
