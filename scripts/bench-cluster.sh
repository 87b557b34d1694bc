#!/usr/bin/env bash
# Throughput of the cluster path on this machine: the IOI quickstart job (GPT-2-small shape,
# random weights) through a coordinator with 1, 2 and 4 local CPU workers, against
# `attrib-worker attribute` in one process. Prints seconds and prompts/s per run.
#
#   scripts/bench-cluster.sh [WORKER COUNTS...]     (default: 1 2 4)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/binaries.sh # ATTRIB_BIN=DIR: prebuilt binaries
MODEL=$(scripts/gpt2-small-random.sh)
DATASET=datasets/ioi/ioi_vanilla_template_prompts.json
PROMPTS=128
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(1 2 4)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

t0=$(date +%s.%N)
"$BIN/attrib-worker" attribute --model "$MODEL" --dataset "$DATASET" --device cpu --out "$work/inproc.json" 2> "$work/inproc.log" > /dev/null
t1=$(date +%s.%N)
inproc=$(grep -o 'attribution [0-9.]*s' "$work/inproc.log" | grep -o '[0-9.]*')
printf 'in-process attribute: attribution %.1f s (%.2f prompts/s), wall incl. model load %.1f s\n' \
    "$inproc" "$(awk "BEGIN{print $PROMPTS/$inproc}")" "$(awk "BEGIN{print $t1-$t0}")"

for n in "${counts[@]}"; do
    db="$work/bench-$n.db"
    ready="$work/ready-$n"
    "$BIN/attrib-coordinator" --model "$MODEL" --listen 127.0.0.1:0 --db "$db" --ready-file "$ready" \
        --spawn-workers "$n" --worker-devices cpu 2> "$work/coord-$n.log" &
    coord=$!
    until [[ -s "$ready" ]]; do sleep 0.2; done
    url=$(cat "$ready")
    # Wait for every worker to have loaded the model, so the timing is the job alone.
    until [[ $("$BIN/attrib" --coordinator "$url" --json workers | grep -o '"worker_id"' | wc -l) -ge $n ]]; do sleep 0.5; done
    t0=$(date +%s.%N)
    "$BIN/attrib" --coordinator "$url" --json submit --dataset "$DATASET" --wait > "$work/status-$n.json" 2> /dev/null
    t1=$(date +%s.%N)
    secs=$(awk "BEGIN{print $t1-$t0}")
    printf '%d worker(s): submit to done %.1f s (%.2f prompts/s), %.0f%% of in-process time\n' \
        "$n" "$secs" "$(awk "BEGIN{print $PROMPTS/$secs}")" "$(awk "BEGIN{print 100*$secs/$inproc}")"
    kill "$coord"
    wait "$coord" 2> /dev/null || true
done
