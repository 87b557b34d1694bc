#!/usr/bin/env bash
# The benchmarks' model: a GPT-2-small-shaped folder with random weights (12 layers, 12 heads,
# d_model 768, seed 0), made once with the built attrib-worker ($ATTRIB_BIN's when set). Prints
# its path.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=target/attrib-demo/gpt2-small-random
[[ -f "$MODEL/model.safetensors" ]] ||
    "${ATTRIB_BIN:-target/release}/attrib-worker" init-model --layers 12 --heads 12 --d-model 768 --seed 0 --out "$MODEL" > /dev/null 2>&1
echo "$MODEL"
