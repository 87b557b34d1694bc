#!/usr/bin/env bash
# Runs the whole test suite: installs libtorch into the project venv if missing, then
# `cargo test` over every crate (release profile: one build of the heavy stack).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --workspace "$@"
