#!/usr/bin/env bash
# The full chaos soak: 5 minutes of worker kills and coordinator restarts under a stream of
# jobs, then every job checked against a clean run. Extra flags go to attrib-soak
# (e.g. --seconds 60 --workers 16 --seed 7).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p attrib-coordinator -p attrib-sim --bins
target/release/attrib-soak "$@"
