#!/usr/bin/env bash
# AutoCircuit's README quickstart (IOI, mask gradients, batch 16, 128 train prompts) through
# attrib's cluster on this machine: a coordinator with one local worker, and the client; then
# EAP-IG-inputs (5 steps) on the same prompts, whose circuit is drawn and judged, and on small
# models exact patching, against which both are compared (`attrib compare`).
#
#   scripts/quickstart.sh [MODEL_DIR] [SUBMIT FLAGS...]
#
# MODEL_DIR: an HF GPT-2 folder. Without it: the embedded default, assets/ioi-2l4h64, a small
# GPT-2 trained on IOI (assets/ioi-2l4h64/README.md), whose circuit is a real one. Flags after
# it go to the AutoCircuit quickstart's `attrib submit` (for example --token-positions).
# ATTRIB_WORKERS=N starts N workers.
set -euo pipefail
cd "$(dirname "$0")/.."
# ATTRIB_BIN=DIR runs prebuilt binaries (scripts/binaries.sh).
source scripts/binaries.sh

MODEL=assets/ioi-2l4h64
if [[ $# -gt 0 && "$1" != --* ]]; then
    MODEL=$1
    shift
fi
# The picture and the circuit sizes follow the graph: 110 edges on the embedded model,
# 32,491 on GPT-2 small, where exact patching (an edge's forward passes each) is a job for a
# cluster of GPUs, not for the quickstart.
n_layers=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["n_layer"])' "$MODEL/config.json")
if [[ $n_layers -le 2 ]]; then small=1; top=12; edges=1,2,3,5,10,20,50; else small=0; top=50; edges=10,100,1000,10000; fi

mkdir -p out target/attrib-demo
db=target/attrib-demo/quickstart.db
ready=target/attrib-demo/quickstart.url
rm -f "$db" "$db-wal" "$db-shm" "$ready"
"$BIN/attrib-coordinator" --model "$MODEL" --listen 127.0.0.1:0 --db "$db" --ready-file "$ready" \
    --spawn-workers "${ATTRIB_WORKERS:-1}" --worker-devices "${ATTRIB_DEVICE:-auto}" &
coordinator=$!
trap 'kill "$coordinator" 2>/dev/null; wait "$coordinator" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    [[ -s "$ready" ]] && break
    kill -0 "$coordinator" 2>/dev/null || { echo "quickstart: the coordinator did not start" >&2; exit 1; }
    sleep 0.2
done
url=$(cat "$ready")
attrib() { "$BIN/attrib" --coordinator "$url" "$@"; }
prompts=datasets/ioi/ioi_vanilla_template_prompts.json
# One job: submit, follow, fetch its scores into $2. Sets $job.
run_job() {
    local label=$1 out=$2
    shift 2
    job=$(attrib submit --dataset "$prompts" --label "$label" "$@")
    attrib watch "$job"
    attrib scores "$job" --out "$out"
}
run_job quickstart out/scores.json "$@"
run_job eap-ig-inputs out/scores-eap-ig-inputs.json --method eap-ig-inputs --steps 5
ig=$job
if [[ $small == 1 ]]; then
    run_job exact out/scores-exact.json --method exact
    # How well each method finds what exact patching finds (docs/methods.md).
    attrib compare --reference exact=out/scores-exact.json \
        "AutoCircuit quickstart (EAP)=out/scores.json" EAP-IG-inputs=out/scores-eap-ig-inputs.json \
        --html out/compare.html
fi
# See and judge EAP-IG-inputs' circuit: its strongest edges drawn as AutoCircuit's
# draw_seq_graph (its README demo's vertical layout), the faithfulness of several circuit
# sizes on the test prompts (computed by the worker), and one HTML page with both.
attrib render "$ig" --top "$top" --orientation v --out out/circuit.svg
attrib faithfulness "$ig" --edges "$edges" --out out/curve.json
attrib report "$ig" --top "$top" --orientation v --out out/report.html
