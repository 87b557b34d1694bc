#!/usr/bin/env bash
# Runs the whole test suite: installs libtorch into the project venv if missing, then
# `cargo test` over every crate (release profile: one build of the heavy stack).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Only the worker may depend on tch: every other crate must build without libtorch.
for crate in attrib-proto attrib-datasets attrib-render attrib-coordinator attrib-client attrib-sim attrib-fuzz; do
    if cargo tree -p "$crate" -e normal --prefix none | grep -qE '^(tch|torch-sys) '; then
        echo "test.sh: $crate depends on tch; only attrib-worker may" >&2
        exit 1
    fi
done
# The client is thin: of attrib's crates it uses attrib-proto and attrib-render only.
if cargo tree -p attrib-client -e normal --prefix none | grep -qE '^attrib-(datasets|worker|coordinator) '; then
    echo "test.sh: attrib-client may depend on attrib-proto and attrib-render only" >&2
    exit 1
fi
# No crate's modules import each other in a circle; no file or function outgrows a reader.
scripts/import-cycles.py
scripts/check-sizes.py
# The wire contract lints clean (buf's default rules; each exception justified in buf.yaml).
scripts/buf-lint.sh
# The end-to-end tests run the real binaries, so build them first (same profile, no rebuild).
cargo build --release --workspace --bins
# The Kubernetes manifests, rendered and validated offline (kubernetes-validate from PyPI).
deploy/k8s/validate.sh > target/k8s-validate.log 2>&1 || { cat target/k8s-validate.log; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# A client in Python that knows attrib only by gRPC reflection (pytest, pinned, target/pyvenv).
scripts/test-python.sh 2>&1 | tee -a "$log"; [[ ${PIPESTATUS[0]} == 0 ]] || status=1
set -e
# One closing line for the whole suite (cargo prints one per test binary, the last for doc tests;
# pytest one).
awk '/^test result:|^=+ .* in [0-9.]+s =+$/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|error)/) f += $i } }
     END { printf "suite: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
