#!/usr/bin/env bash
# Exact edge patching at GPT-2-small shape (random weights; 32,491 edges): units per second
# of a cluster worker, and the projected time of the whole job (every edge, 128 prompts) on 1
# and 8 workers of the kind measured. A unit is one batch of 16 prompts x 64 edges (the
# default --edges-per-unit): 1,024 edge-patched prompt forwards. The job is cancelled after
# the measured units.
#
#   scripts/bench-exact.sh [UNITS]      (default 6; ATTRIB_BENCH_DEVICE=cuda:0 on a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/binaries.sh # ATTRIB_BIN=DIR: prebuilt binaries
MODEL=$(scripts/gpt2-small-random.sh)
DATASET=datasets/ioi/ioi_vanilla_template_prompts.json
UNITS=${1:-6}
DEVICE=${ATTRIB_BENCH_DEVICE:-cpu}
work=$(mktemp -d)
coord=
trap '[[ -n "$coord" ]] && kill "$coord" 2>/dev/null; rm -rf "$work"' EXIT

"$BIN/attrib-coordinator" --model "$MODEL" --listen 127.0.0.1:0 --db "$work/bench.db" \
    --ready-file "$work/ready" --spawn-workers 1 --worker-devices "$DEVICE" 2> "$work/coord.log" &
coord=$!
until [[ -s "$work/ready" ]]; do sleep 0.2; done
attrib() { "$BIN/attrib" --coordinator "$(cat "$work/ready")" "$@"; }
until [[ $(attrib --json workers | grep -o '"worker_id"' | wc -l) -ge 1 ]]; do sleep 0.5; done
job=$(attrib submit --dataset "$DATASET" --method exact --train-size 16 --label bench-exact 2> /dev/null)
done_units() { attrib --json status "$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["units_done"])'; }
# The first unit pays for warm-up; the clock runs from its end to the end of UNITS more.
until [[ $(done_units) -ge 1 ]]; do sleep 0.2; done
t0=$(date +%s.%N)
until [[ $(done_units) -ge $((UNITS + 1)) ]]; do sleep 0.2; done
t1=$(date +%s.%N)
attrib cancel "$job" > /dev/null 2>&1 || true
python3 - "$UNITS" "$t0" "$t1" "$DEVICE" <<'PY'
import math, sys
units, t0, t1, device = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
secs = (t1 - t0) / units
edges, prompts, per_unit_edges, batch = 32491, 128, 64, 16
total = math.ceil(edges / per_unit_edges) * (prompts // batch)
print(f"exact patching, GPT-2-small shape, one {device} worker: {units} units in {t1 - t0:.1f} s")
print(f"  {1 / secs:.4f} units/s ({secs:.1f} s per unit of {per_unit_edges} edges x {batch} prompts), "
      f"{per_unit_edges * batch / secs:.1f} edge-patched prompt forwards/s")
for w in (1, 8):
    h = total * secs / w / 3600
    print(f"  all {edges} edges over {prompts} prompts ({total} units) on {w} such worker(s): {h:.1f} h"
          + (" (units are independent: W workers take 1/W of the time)" if w > 1 else ""))
PY
