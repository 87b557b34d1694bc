#!/usr/bin/env bash
# AutoCircuit's README quickstart (IOI, mask gradients, batch 16, 128 train prompts) through
# attrib's cluster on this machine: a coordinator with one local worker, and the client.
#
#   scripts/quickstart.sh [MODEL_DIR] [SUBMIT FLAGS...]
#
# MODEL_DIR: an HF GPT-2 folder. Without it: gpt2 from the local HuggingFace cache when it is
# there, else a GPT-2-small-shaped model with RANDOM weights (said loudly). Flags after it go
# to `attrib submit` (for example --token-positions). ATTRIB_WORKERS=N starts N workers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same build as scripts/test.sh (one feature set, so switching scripts rebuilds nothing).
cargo build --release --workspace --bins
BIN=target/release

hub=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}
cached_gpt2() { ls -d "$hub"/models--gpt2/snapshots/*/ "$hub"/models--openai-community--gpt2/snapshots/*/ 2>/dev/null | head -1; }

if [[ $# -gt 0 && "$1" != --* ]]; then
    MODEL=$1
    shift
elif [[ -n "$(cached_gpt2)" ]]; then
    MODEL=$(cached_gpt2)
else
    MODEL=target/attrib-demo/gpt2-small-random
    [[ -f "$MODEL/model.safetensors" ]] || "$BIN/attrib-worker" init-model --layers 12 --heads 12 --d-model 768 --seed 0 --out "$MODEL"
    echo "quickstart: no GPT-2 weights given or cached, so this runs on a GPT-2-small-shaped model with RANDOM weights ($MODEL):" >&2
    echo "quickstart: real computation, meaningless circuit. Pass a GPT-2 folder for real results." >&2
fi

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
job=$("$BIN/attrib" --coordinator "$url" submit --dataset datasets/ioi/ioi_vanilla_template_prompts.json --label quickstart "$@")
"$BIN/attrib" --coordinator "$url" watch "$job"
"$BIN/attrib" --coordinator "$url" scores "$job" --out out/scores.json
# See and judge the circuit: the 50 strongest edges drawn as AutoCircuit's draw_seq_graph
# (its README demo's vertical layout), the faithfulness of four circuit sizes on the test
# prompts (computed by the worker), and one HTML page with both.
"$BIN/attrib" --coordinator "$url" render "$job" --top 50 --orientation v --out out/circuit.svg
"$BIN/attrib" --coordinator "$url" faithfulness "$job" --edges 10,100,1000,10000 --out out/curve.json
"$BIN/attrib" --coordinator "$url" report "$job" --top 50 --orientation v --out out/report.html
