#!/usr/bin/env bash
# The GPU check, from the offline bundle (scripts/gpu-bundle.sh; docs/gpu.md). Runs on a node
# with no network, cargo or Rust, against its own PyTorch (python3's torch, or ATTRIB_LIBTORCH),
# from target/gpu-bundle/ inside a checkout of the repository:
#
#   target/gpu-bundle/run.sh OUTDIR [--device cuda:0|cpu]
#
# The device defaults to cuda:0 when libtorch sees a GPU, else the CPU (a rehearsal: steps that
# need a GPU say "skipped: no GPU", and the sizes shrink to what a CPU does in minutes). Every
# step has its own time budget, runs even when an earlier one failed, and logs to OUTDIR/STEP.log;
# the run ends with one summary block, also in OUTDIR/summary.txt. Exit status 1 if a step failed.
set -uo pipefail
set -a # every variable is exported, for the steps' shells (step)
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
[[ $# -ge 1 && $1 != -* ]] || { echo "usage: $0 OUTDIR [--device cuda:0|cpu]" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
shift
DEVICE=
[[ ${1:-} == --device ]] && DEVICE=${2:?--device needs a value}
t_start=$(date +%s)

# The payload, unpacked once next to it.
if [[ ! -x $here/payload/bin/attrib-worker || $here/payload.tar.xz -nt $here/payload/BUILT_AGAINST ]]; then
    rm -rf "$here/payload" && tar -C "$here" -xJf "$here/payload.tar.xz" ||
        { echo "run.sh: cannot unpack $here/payload.tar.xz" >&2; exit 2; }
fi
export ATTRIB_BIN=$here/payload/bin
W=$ATTRIB_BIN/attrib-worker
REPO=${ATTRIB_REPO:-$(cd "$here/../.." && pwd)}
[[ -d $REPO/datasets/ioi && -d $REPO/scripts ]] ||
    { echo "run.sh: $REPO is not a checkout of attrib (set ATTRIB_REPO)" >&2; exit 2; }
cd "$REPO" || exit 2

SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
failed=0
note() { echo "$*" | tee -a "$SUMMARY"; }
# step NAME BUDGET_SECONDS COMMAND...: runs it under its budget with its output in OUTDIR/NAME.log.
# COMMAND may be a function of this script: timeout runs it in a new bash given every function
# (declare -f), and every variable reaches that bash (set -a below).
step() {
    local name=$1 budget=$2 t0=$SECONDS rc
    shift 2
    echo "== $name (budget ${budget}s)" >&2
    timeout --kill-after=10 "$budget" bash -c "$(declare -f)"$'\n''"$@"' "$name" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    if [[ $rc == 0 ]]; then
        note "$(printf '%-20s ok (%ds)' "$name" $((SECONDS - t0)))"
    else
        failed=1
        local why="see $name.log"
        [[ $rc == 124 || $rc == 137 ]] && why="over its ${budget}s budget; see $name.log"
        note "$(printf '%-20s FAILED (%ds, exit %d): %s' "$name" $((SECONDS - t0)) "$rc" "$why")"
        tail -5 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    fi
}
skip() { note "$(printf '%-20s skipped: %s' "$1" "$2")"; }
quote() { sed 's/^/    /' | tee -a "$SUMMARY"; } # a step's figures, into the summary

# 1. doctor: the libraries and devices this node gives attrib. It fails when the driver lists
# a GPU but libtorch sees none (auto would fall back to the CPU).
doctor() {
    "$W" doctor && "$W" doctor --json > "$OUT/doctor.json" && python3 - "$OUT/doctor.json" << 'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
unseen = [x["kind"] for x in d["devices"] if not x["libtorch_sees"]]
if unseen:
    sys.exit(f"the driver lists {', '.join(unseen)}, but libtorch does not see them: auto would pick {d['auto_device']}")
EOF
}
step doctor 60 doctor
grep -E '^(libtorch|libnccl|device|auto)' "$OUT/doctor.log" | quote
gpu=0
if [[ -z $DEVICE ]]; then
    DEVICE=cpu
    python3 -c '
import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(0 if any(x["kind"] == "cuda:0" and x["libtorch_sees"] for x in d["devices"]) else 1)' "$OUT/doctor.json" 2> /dev/null && DEVICE=cuda:0
fi
[[ $DEVICE == cuda* ]] && gpu=1
note "device for the checks: $DEVICE"

# Sizes: the GPU node's, or a CPU's few minutes.
if [[ $gpu == 1 ]]; then
    SWEEP_PROMPTS=1024 EXACT_UNITS=20 BENCH_MODEL=
else
    SWEEP_PROMPTS=64 EXACT_UNITS=1 BENCH_MODEL=assets/ioi-2l4h64
fi

# 2. TF32 canary: a 4096² fp32 matmul against fp64 (doctor measures it per GPU).
if [[ $gpu == 1 ]]; then
    tf32() {
        python3 - "$OUT/doctor.json" << 'EOF'
import json, sys
for device, err in json.load(open(sys.argv[1]))["settings"]["tf32_canary"]:
    print(f"{device}: rel err {err:.1e} (TF32 would give ~1e-3)")
    if err > 1e-4:
        sys.exit(f"{device}: TF32 is on")
EOF
    }
    step tf32-canary 30 tf32
    quote < "$OUT/tf32-canary.log"
else
    skip tf32-canary "no GPU"
fi

# 3. The golden checks on the device, with the CPU's tolerances, on the checkout's fixtures
# once they are checked to be the ones the bundle was built with.
step self-test 180 sh -c 'sha256sum --quiet -c "$1" && exec "$2" self-test --device "$3" --fixtures .' \
    self-test "$here/payload/FIXTURES.sha256" "$W" "$DEVICE"
grep -E '^self-test:' "$OUT/self-test.log" | quote

MODEL=$(scripts/gpt2-small-random.sh)
DATA=datasets/ioi/ioi_vanilla_template_prompts.json,datasets/ioi/ioi_ABBA_template_0_prompts.json
attr() { "$W" attribute --model "$MODEL" --dataset "$DATA" --test-size 16 --device "$DEVICE" "$@"; }

# 4. The same unit twice: the same bits (deterministic cuBLAS, no TF32).
same_bits() {
    attr --train-size 256 --batches-per-unit 16 --out "$OUT/run1.json" &&
        attr --train-size 256 --batches-per-unit 16 --out "$OUT/run2.json" &&
        cmp "$OUT/run1.json" "$OUT/run2.json"
}
step same-bits-twice 120 same_bits

# 5. AutoCircuit's quickstart through the cluster: coordinator, one spawned worker, client.
step quickstart-cluster 150 env ATTRIB_DEVICE="$DEVICE" scripts/quickstart.sh

# 6. prompts/s and peak GPU memory per K, each after a warm-up unit of its shape.
sweep() {
    local k line peak idle=0
    command -v nvidia-smi > /dev/null && [[ $gpu == 1 ]] &&
        idle=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0)
    for k in 1 4 16 64; do
        local sampler=
        if command -v nvidia-smi > /dev/null && [[ $gpu == 1 ]]; then
            nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 50 > "$OUT/mem-k$k.txt" &
            sampler=$!
        fi
        attr --train-size "$SWEEP_PROMPTS" --batches-per-unit "$k" --warm-up --out "$OUT/k$k.json" 2> "$OUT/k$k.log" > /dev/null
        local rc=$?
        [[ -n $sampler ]] && { kill "$sampler"; wait "$sampler"; } 2> /dev/null
        [[ $rc == 0 ]] || { cat "$OUT/k$k.log"; return 1; }
        line=$(grep '\[attrib\] attribution' "$OUT/k$k.log")
        peak=n/a
        [[ -n $sampler ]] && peak="$(($(sort -n "$OUT/mem-k$k.txt" | tail -1) - idle)) MiB above idle"
        printf 'K=%-3s %s prompts/s  attribution %s s  peak GPU memory %s\n' "$k" \
            "$(sed -E 's/.*\(([0-9.]+) prompts\/s\).*/\1/' <<< "$line")" \
            "$(sed -E 's/.*attribution ([0-9.]+)s.*/\1/' <<< "$line")" "$peak"
    done
}
note "throughput: GPT-2-small shape, quickstart settings (EAP, batch 16), $SWEEP_PROMPTS train prompts:"
step k-sweep 180 sweep
grep '^K=' "$OUT/k-sweep.log" | quote

# 7. The GPU's scores against the CPU's: within 1e-5 of the largest |score|.
if [[ $gpu == 1 ]]; then
    gpu_vs_cpu() {
        "$W" attribute --model "$MODEL" --dataset "$DATA" --test-size 16 --device cpu \
            --train-size "$SWEEP_PROMPTS" --batches-per-unit 1 --out "$OUT/cpu-k1.json" > /dev/null &&
            python3 - "$OUT/k1.json" "$OUT/cpu-k1.json" << 'EOF'
import json, sys
a, b = ([e["score"] for e in json.load(open(p))["edges"]] for p in sys.argv[1:])
err = max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)
print(f"GPU vs CPU: max|diff|/max|score| = {err:.2e} over {len(a)} edges (tolerance 1e-5)")
sys.exit(0 if err < 1e-5 else 1)
EOF
    }
    step gpu-vs-cpu 150 gpu_vs_cpu
    grep -h "GPU vs CPU" "$OUT/gpu-vs-cpu.log" | quote
else
    skip gpu-vs-cpu "no GPU"
fi

# 8. NCCL with one rank (NCCL refuses two ranks on one GPU): broadcast and exact all-reduce
# against the host. The host collective runs everywhere.
if [[ $gpu == 1 ]]; then
    step nccl-one-rank 60 "$W" collective-check --devices "$DEVICE" --collective nccl
    grep -h "collective-check" "$OUT/nccl-one-rank.log" | quote
else
    skip nccl-one-rank "no GPU"
    step host-collective 60 "$W" collective-check --devices cpu,cpu,cpu --collective host
fi

# 8b. Two GPUs or more: a node group's collectives across cuda:0 and cuda:1, NCCL and host.
gpus=$(python3 -c 'import json, sys; print(sum(x["kind"].startswith("cuda:") and x["libtorch_sees"] for x in json.load(open(sys.argv[1]))["devices"]))' "$OUT/doctor.json" 2> /dev/null || echo 0)
if [[ $gpu == 1 && $gpus -ge 2 ]]; then
    two_gpus() {
        "$W" collective-check --devices cuda:0,cuda:1 --collective nccl &&
            "$W" collective-check --devices cuda:0,cuda:1 --collective host
    }
    step two-gpu-group 90 two_gpus
    grep -h "collective-check" "$OUT/two-gpu-group.log" | quote
else
    skip two-gpu-group "needs two GPUs ($gpus here)"
fi

# 9. The memory a GPU worker declares (cuMemGetInfo less the reserve), tried: one unit whose
# estimate fills 90% of it, then an NCCL collective: no out-of-memory, no hang.
if [[ $gpu == 1 ]]; then
    step memory 240 "$W" memory-check --device "$DEVICE" --model "$MODEL" \
        --dataset "$(ls datasets/ioi/*.json | head -8 | paste -sd,)"
    grep -h "memory-check" "$OUT/memory.log" | quote
else
    skip memory "no GPU"
fi

# 10. Exact patching at GPT-2-small shape: units/s, and the whole job projected.
step exact-units 150 env ATTRIB_BENCH_DEVICE="$DEVICE" scripts/bench-exact.sh "$EXACT_UNITS"
grep -h -A3 "^exact patching" "$OUT/exact-units.log" | quote

# 11. AutoCircuit on the same device, same settings, for the ratio: the bundle's private
# AutoCircuit first on PYTHONPATH (scripts/gpu-bundle/autocircuit-wheels.txt).
ac_python="env PYTHONPATH=$here/payload/autocircuit${PYTHONPATH:+:$PYTHONPATH} ATTRIB_AUTOCIRCUIT_OFFLINE_STUBS=1 ${PYTHON:-python3}"
step autocircuit-ratio 180 env ATTRIB_BENCH_DEVICE="$DEVICE" ATTRIB_AUTOCIRCUIT_PYTHON="$ac_python" \
    ${BENCH_MODEL:+ATTRIB_BENCH_MODEL=$BENCH_MODEL} scripts/bench.sh --with-autocircuit 1
sed -n '/^SUMMARY/,$p' "$OUT/autocircuit-ratio.log" | quote

{
    echo
    echo "===== attrib GPU check (bundle), $(date -u +%Y-%m-%d), $(head -1 "$here/MANIFEST" 2> /dev/null | sed 's/.*from commit/commit/')"
    echo "device $DEVICE; $(nproc) cores; $(($(date +%s) - t_start)) s in all"
    cat "$SUMMARY"
    echo "====="
} | tee "$OUT/summary.block"
mv "$OUT/summary.block" "$SUMMARY"
exit $failed
