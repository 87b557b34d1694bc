#!/usr/bin/env bash
# AutoCircuit's README quickstart (IOI, mask gradients, batch 16, 128 train prompts) with attrib.
#
#   scripts/quickstart.sh [MODEL] [ATTRIBUTE FLAGS...]
#
# MODEL: an HF GPT-2 folder, or a name (gpt2) in the local HuggingFace cache. Without it:
# gpt2 when it is cached, else a GPT-2-small-shaped model with RANDOM weights (said loudly).
# Flags after MODEL go to `attrib-worker attribute` (for example --token-positions).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p attrib-worker
BIN=target/release/attrib-worker

hub=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}
cached_gpt2() { ls -d "$hub"/models--gpt2/snapshots/*/ "$hub"/models--openai-community--gpt2/snapshots/*/ 2>/dev/null | head -1; }

if [[ $# -gt 0 && "$1" != --* ]]; then
    MODEL=$1
    shift
elif [[ -n "$(cached_gpt2)" ]]; then
    MODEL=gpt2
else
    MODEL=target/attrib-demo/gpt2-small-random
    [[ -f "$MODEL/model.safetensors" ]] || "$BIN" init-model --layers 12 --heads 12 --d-model 768 --seed 0 --out "$MODEL"
    echo "quickstart: no GPT-2 weights given or cached, so this runs on a GPT-2-small-shaped model with RANDOM weights ($MODEL):" >&2
    echo "quickstart: real computation, meaningless circuit. Pass a GPT-2 folder for real results." >&2
fi
mkdir -p out
"$BIN" attribute --model "$MODEL" --dataset datasets/ioi/ioi_vanilla_template_prompts.json --out out/scores.json "$@"
