#!/usr/bin/env bash
# The coordinator under load: the real attrib-coordinator (its own process, GPT-2-small shape)
# fed by simulated workers that speak the real worker protocol over loopback and return
# synthetic unit sums of the job's real size (attrib-sim; never the production worker). Prints
# units/s and MB/s into the coordinator, its CPU share and peak RSS, the database's peak size,
# and whether the scores equal an in-process fold of the same results, bit for bit; exits
# non-zero if any run's scores differ.
#
#   scripts/bench-coordinator.sh                       every run: edge, tokenwise, sweep, chaos, db
#   scripts/bench-coordinator.sh --runs edge --workers 8 --rate 50   (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same build as scripts/test.sh, so switching scripts rebuilds nothing (neither the
# coordinator nor the simulated workers use libtorch; the workspace build does).
cargo build --release --workspace --bins
exec target/release/attrib-loadtest "$@"
