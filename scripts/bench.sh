#!/usr/bin/env bash
# Benchmark of `attrib-worker attribute` at GPT-2-small shape (random weights), AutoCircuit's
# quickstart settings (IOI vanilla, 128 train prompts, batch 16), without and with token
# positions. Prints every run and the medians: attribution seconds (model loading excluded,
# as in AutoCircuit's timing), prompts/s, whole-process wall seconds, peak RSS.
#
#   scripts/bench.sh [REPEATS] [EXTRA ATTRIBUTE FLAGS...]     (default 3 repeats)
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
shift || true
scripts/setup.sh
cargo build --release --quiet --workspace --bins
BIN=target/release/attrib-worker
MODEL=target/attrib-demo/gpt2-small-random
[[ -f "$MODEL/model.safetensors" ]] || "$BIN" init-model --layers 12 --heads 12 --d-model 768 --seed 0 --out "$MODEL"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in quickstart tokenwise; do
    flags=()
    [[ $mode == tokenwise ]] && flags=(--token-positions)
    : > "$OUT/$mode.tsv"
    for i in $(seq "$REPEATS"); do
        t0=$(date +%s.%N)
        "$BIN" attribute --model "$MODEL" --dataset datasets/ioi/ioi_vanilla_template_prompts.json \
            --out "$OUT/scores.json" --device cpu "${flags[@]}" "$@" > /dev/null 2> "$OUT/log"
        wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
        line=$(grep '\[attrib\] attribution' "$OUT/log")
        secs=$(sed -E 's/.*attribution ([0-9.]+)s.*/\1/' <<< "$line")
        pps=$(sed -E 's/.*\(([0-9.]+) prompts\/s\).*/\1/' <<< "$line")
        rss=$(sed -E 's/.*peak RSS ([0-9]+) MiB.*/\1/' <<< "$line")
        printf '%s\t%s\t%s\t%s\n' "$secs" "$pps" "$wall" "$rss" >> "$OUT/$mode.tsv"
        printf '%-10s run %d: attribution %6.2f s  %6.1f prompts/s  wall %6.2f s  peak RSS %5s MiB\n' "$mode" "$i" "$secs" "$pps" "$wall" "$rss"
    done
    col() { cut -f"$1" "$OUT/$mode.tsv" | median; }
    printf '%-10s MEDIAN of %d: attribution %6.2f s  %6.1f prompts/s  wall %6.2f s  peak RSS %5s MiB\n' "$mode" "$REPEATS" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)"
done
