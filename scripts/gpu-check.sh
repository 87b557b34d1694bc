#!/usr/bin/env bash
# The GPU check: run once on a fresh machine with an NVIDIA GPU (and network to PyPI and
# crates.io); prints one summary block. Build included, it is meant to finish in under 9
# minutes on 16 cores. Every step runs even when an earlier one fails; the exit status is
# non-zero if any failed.
#
#   scripts/gpu-check.sh            GPU_CHECK_AUTOCIRCUIT=0 skips the AutoCircuit ratio
#
# Steps: the CUDA libtorch and a build; the golden tests on cuda:0 (TF32 off, the CPU's
# tolerances); one unit twice for the same bits; the quickstart through the cluster on the
# GPU; prompts/s and peak GPU memory at K = 1, 4, 16, 64 on GPT-2-small shape; the GPU's
# scores against the CPU's; the NCCL collective with one rank; AutoCircuit's time on the
# same GPU, same settings, for the ratio.
set -uo pipefail
cd "$(dirname "$0")/.."
t_start=$(date +%s)
SUMMARY=$(mktemp)
LOG=target/gpu-check
mkdir -p "$LOG"
failed=0
note() { echo "$*" | tee -a "$SUMMARY"; }
step() { # step NAME COMMAND...: runs it with its output in $LOG/NAME.log, notes ok/FAILED
    local name=$1 t0=$SECONDS
    shift
    echo "== $name" >&2
    if "$@" > "$LOG/$name.log" 2>&1; then
        note "$(printf '%-22s ok (%ds)' "$name" $((SECONDS - t0)))"
    else
        failed=1
        note "$(printf '%-22s FAILED (%ds): see %s' "$name" $((SECONDS - t0)) "$LOG/$name.log")"
        tail -5 "$LOG/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    fi
}

command -v nvidia-smi > /dev/null || { echo "gpu-check: no nvidia-smi: this is not an NVIDIA GPU machine" >&2; exit 2; }
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0)
export CUBLAS_WORKSPACE_CONFIG=:4096:8 NVIDIA_TF32_OVERRIDE=0 # also set by attrib-worker itself
# Every script below calls scripts/setup.sh: with this they keep the CUDA libtorch.
export ATTRIB_CUDA=1

step setup scripts/setup.sh
step build cargo build --release --workspace --bins
step build-tests cargo test --release -p attrib-worker --no-run
BIN=target/release/attrib-worker
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)
# CUDA's libraries from torch's wheels; NCCL needs no entry: the worker finds it beside torch.
export LD_LIBRARY_PATH="$SITE/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"

# The golden tests, on the GPU, with the tolerances the CPU passes with.
step golden-on-cuda env ATTRIB_TEST_DEVICE=cuda:0 cargo test --release -p attrib-worker \
    --test golden_scores --test golden_model --test faithfulness --test invariants \
    --test golden_eap_ig --test golden_acdc --test method_invariants -- --nocapture
grep -hE "max\|diff\||err" "$LOG/golden-on-cuda.log" | head -12 | sed 's/^/    /' >> "$SUMMARY"

MODEL=$(scripts/gpt2-small-random.sh)
DATA=datasets/ioi/ioi_vanilla_template_prompts.json,datasets/ioi/ioi_ABBA_template_0_prompts.json
attr() { "$BIN" attribute --model "$MODEL" --dataset "$DATA" --test-size 16 "$@"; }

# Same unit, same GPU: the same bits (deterministic cuBLAS, no TF32).
same_bits() {
    attr --device cuda:0 --train-size 256 --batches-per-unit 16 --out "$LOG/run1.json" &&
        attr --device cuda:0 --train-size 256 --batches-per-unit 16 --out "$LOG/run2.json" &&
        cmp "$LOG/run1.json" "$LOG/run2.json"
}
step same-bits-twice same_bits

step quickstart-cluster env ATTRIB_DEVICE=cuda:0 scripts/quickstart.sh "$MODEL"

# prompts/s and peak GPU memory (nvidia-smi sampled every 50 ms, above the idle level) per K.
sweep() {
    local idle
    idle=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0)
    for k in 1 4 16 64; do
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 50 > "$LOG/mem-k$k.txt" &
        local sampler=$!
        attr --device cuda:0 --train-size 1024 --batches-per-unit "$k" --out "$LOG/k$k.json" 2> "$LOG/k$k.log" > /dev/null
        local rc=$?
        kill "$sampler" 2> /dev/null
        wait "$sampler" 2> /dev/null
        [[ $rc == 0 ]] || return 1
        local line peak
        line=$(grep '\[attrib\] attribution' "$LOG/k$k.log")
        peak=$(sort -n "$LOG/mem-k$k.txt" | tail -1)
        printf '    K=%-3s %s prompts/s  attribution %s s  peak GPU memory %s MiB above idle\n' "$k" \
            "$(sed -E 's/.*\(([0-9.]+) prompts\/s\).*/\1/' <<< "$line")" \
            "$(sed -E 's/.*attribution ([0-9.]+)s.*/\1/' <<< "$line")" $((peak - idle)) | tee -a "$SUMMARY"
    done
}
note "throughput, GPT-2-small shape, EAP quickstart settings (batch 16), 1024 train prompts:"
step k-sweep sweep

# The GPU's scores against the CPU's on the same settings: the golden tolerance (1e-5 of the
# largest |score|).
gpu_vs_cpu() {
    attr --device cpu --train-size 1024 --batches-per-unit 1 --out "$LOG/cpu-k1.json" > /dev/null 2>&1 &&
        python3 - "$LOG/k1.json" "$LOG/cpu-k1.json" << 'EOF'
import json, sys
a, b = ([e["score"] for e in json.load(open(p))["edges"]] for p in sys.argv[1:])
err = max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)
print(f"    GPU vs CPU: max|diff|/max|score| = {err:.2e} over {len(a)} edges (tolerance 1e-5)")
sys.exit(0 if err < 1e-5 else 1)
EOF
}
step gpu-vs-cpu gpu_vs_cpu
grep -h "GPU vs CPU" "$LOG/gpu-vs-cpu.log" >> "$SUMMARY"

step nccl-one-rank "$BIN" collective-check --devices cuda:0 --collective nccl
grep -h "collective-check" "$LOG/nccl-one-rank.log" | sed 's/^/    /' >> "$SUMMARY"

# Exact patching at GPT-2-small shape: units/s and the 1- and 8-GPU projection.
step exact-units env ATTRIB_BENCH_DEVICE=cuda:0 scripts/bench-exact.sh 20
grep -h -A3 "^exact patching" "$LOG/exact-units.log" | sed 's/^/    /' >> "$SUMMARY"

if [[ "${GPU_CHECK_AUTOCIRCUIT:-1}" == 1 ]]; then
    step autocircuit-ratio env ATTRIB_BENCH_DEVICE=cuda:0 scripts/bench.sh --with-autocircuit 1
    sed -n '/SUMMARY/,$p' "$LOG/autocircuit-ratio.log" | sed 's/^/    /' >> "$SUMMARY"
fi

echo
echo "===== attrib GPU check, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2> /dev/null)"
echo "GPU: $GPU; $(nproc) cores; $(($(date +%s) - t_start)) s in all"
cat "$SUMMARY"
echo "====="
exit $failed
