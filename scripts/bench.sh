#!/usr/bin/env bash
# Benchmark of `attrib-worker attribute` at GPT-2-small shape (random weights), AutoCircuit's
# quickstart settings (IOI vanilla, 128 train prompts, batch 16), without and with token
# positions. Prints every run and the medians: attribution seconds (model loading excluded,
# as in AutoCircuit's timing), prompts/s, whole-process wall seconds, peak RSS.
#
#   scripts/bench.sh [--with-autocircuit] [REPEATS] [EXTRA ATTRIBUTE FLAGS...]   (default 3 repeats)
#
# --with-autocircuit also times AutoCircuit itself in the same run, on the same model folder and
# prompt file (scripts/autocircuit/time_autocircuit.py in .venv-autocircuit, set up on first use:
# several GB; one process per run), and ends with one summary block: both medians and the
# AutoCircuit / attrib ratios. EXTRA FLAGS go to attrib only. Environment:
#   ATTRIB_BENCH_DEVICE=cpu|cuda   device of both tools (default cpu)
#   ATTRIB_BENCH_MODEL=DIR         another model folder (default: GPT-2-small shape, random)
#   ATTRIB_BIN=DIR                 prebuilt binaries (no setup, no cargo build: scripts/binaries.sh)
#   ATTRIB_AUTOCIRCUIT_PYTHON=CMD  the python that runs AutoCircuit (default: .venv-autocircuit's,
#                                  installed on first use); the GPU bundle's run.sh sets it
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_AC=0
if [[ ${1:-} == --with-autocircuit ]]; then WITH_AC=1; shift; fi
REPEATS=${1:-3}
shift || true
DEVICE=${ATTRIB_BENCH_DEVICE:-cpu}
source scripts/binaries.sh
# Before any timing, so the one-time install does not load the machine during attrib's runs.
[[ $WITH_AC == 0 || -n ${ATTRIB_AUTOCIRCUIT_PYTHON:-} ]] || scripts/autocircuit/setup.sh
read -r -a AC_PYTHON <<< "${ATTRIB_AUTOCIRCUIT_PYTHON:-.venv-autocircuit/bin/python}"
BIN=$BIN/attrib-worker
MODEL=${ATTRIB_BENCH_MODEL:-$(scripts/gpt2-small-random.sh)}
DATASET=datasets/ioi/ioi_vanilla_template_prompts.json
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { cut -f"$2" "$1" | median; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg); device $DEVICE"
for mode in quickstart tokenwise; do
    flags=()
    [[ $mode == tokenwise ]] && flags=(--token-positions)
    : > "$OUT/$mode.tsv"
    for i in $(seq "$REPEATS"); do
        t0=$(date +%s.%N)
        "$BIN" attribute --model "$MODEL" --dataset "$DATASET" \
            --out "$OUT/scores.json" --device "$DEVICE" "${flags[@]}" "$@" > /dev/null 2> "$OUT/log"
        wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
        line=$(grep '\[attrib\] attribution' "$OUT/log")
        secs=$(sed -E 's/.*attribution ([0-9.]+)s.*/\1/' <<< "$line")
        pps=$(sed -E 's/.*\(([0-9.]+) prompts\/s\).*/\1/' <<< "$line")
        rss=$(sed -E 's/.*peak RSS ([0-9]+) MiB.*/\1/' <<< "$line")
        printf '%s\t%s\t%s\t%s\n' "$secs" "$pps" "$wall" "$rss" >> "$OUT/$mode.tsv"
        printf '%-10s run %d: attribution %6.2f s  %6.1f prompts/s  wall %6.2f s  peak RSS %5s MiB\n' "$mode" "$i" "$secs" "$pps" "$wall" "$rss"
    done
    f=$OUT/$mode.tsv
    printf '%-10s MEDIAN of %d: attribution %6.2f s  %6.1f prompts/s  wall %6.2f s  peak RSS %5s MiB\n' "$mode" "$REPEATS" "$(col "$f" 1)" "$(col "$f" 2)" "$(col "$f" 3)" "$(col "$f" 4)"
done
[[ $WITH_AC == 1 ]] || exit 0

# AutoCircuit: a fresh process per run, as attrib has, so that its peak RSS holds no memory
# left over from an earlier run. Its progress bars and warnings go to a log shown on failure.
for mode in quickstart tokenwise; do
    : > "$OUT/ac-$mode.tsv"
    for i in $(seq "$REPEATS"); do
        "${AC_PYTHON[@]}" scripts/autocircuit/time_autocircuit.py --device "$DEVICE" \
            --repeats 1 --modes "$mode" --model "$MODEL" --dataset "$DATASET" \
            > "$OUT/ac.out" 2> "$OUT/ac.log" || { cat "$OUT/ac.out"; tail -n 40 "$OUT/ac.log" >&2; exit 1; }
        [[ $mode == quickstart && $i == 1 ]] && grep '^autocircuit:' "$OUT/ac.out"  # versions, threads
        line=$(grep "^autocircuit $mode run" "$OUT/ac.out")
        sed -E 's/.*algorithm ([0-9.]+) s  patchable_model ([0-9.]+) s  peak RSS ([0-9]+) MiB.*/\1\t\2\t\3/' <<< "$line" >> "$OUT/ac-$mode.tsv"
        echo "${line/ run 1:/ run $i:}"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1fx", a / b}'; }
echo
echo "SUMMARY on $DEVICE, medians of $REPEATS (ratio = AutoCircuit / attrib; model loading and patchable_model excluded from seconds)"
printf '%-10s  %18s  %19s  %7s  %15s  %20s  %7s  %27s\n' mode "attrib attribution" "AutoCircuit algo" ratio \
    "attrib peak RSS" "AutoCircuit peak RSS" ratio "AutoCircuit patchable_model"
for mode in quickstart tokenwise; do
    a=$OUT/$mode.tsv c=$OUT/ac-$mode.tsv
    as=$(col "$a" 1) ar=$(col "$a" 4) cs=$(col "$c" 1) cp=$(col "$c" 2) cr=$(col "$c" 3)
    printf '%-10s  %16.2f s  %17.2f s  %7s  %11s MiB  %16s MiB  %7s  %25.3f s\n' "$mode" "$as" "$cs" \
        "$(ratio "$cs" "$as")" "$ar" "$cr" "$(ratio "$cr" "$ar")" "$cp"
done
