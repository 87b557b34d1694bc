#!/usr/bin/env bash
# A rehearsal of the GPU check on this machine, as the GPU node would run it (docs/gpu.md):
# builds the bundle (scripts/gpu-bundle.sh), then runs target/gpu-bundle/run.sh
#   - with no network (`unshare -n`, loopback only);
#   - with no cargo or rustc on PATH, in a copy of the repository's tracked files holding no
#     target/ but the bundle and no project .venv;
#   - with a python3 whose venv holds only what the node has: torch 2.11.0 (the CUDA wheel
#     and its nvidia-* libraries), numpy, safetensors, tokenizers, transformers 5.x, pandas,
#     einops, jaxtyping, rich and tqdm.
# On a machine without a GPU every step that needs none passes on the CPU, and the others say
# "skipped: no GPU". Exit status: run.sh's.
#
#   scripts/gpu-bundle-rehearse.sh [OUTDIR]     (default target/gpu-rehearsal/out)
#
# REHEARSAL_VENV=DIR keeps the node-like venv elsewhere (default target/gpu-rehearsal/venv,
# made on first use: about 5 GB, from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-target/gpu-rehearsal/out}" && cd "${1:-target/gpu-rehearsal/out}" && pwd)
VENV=${REHEARSAL_VENV:-target/gpu-rehearsal/venv}
NODE_PACKAGES=(torch==2.11.0 numpy safetensors tokenizers "transformers>=5,<6" pandas einops jaxtyping rich tqdm)

scripts/gpu-bundle.sh
want="${NODE_PACKAGES[*]}"
if [[ ! -f $VENV/.rehearsal || $(cat "$VENV/.rehearsal") != "$want" ]]; then
    echo "rehearse: making the node-like venv $VENV (one time, ~5 GB)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${NODE_PACKAGES[@]}"
    echo "$want" > "$VENV/.rehearsal"
fi
VENV=$(cd "$VENV" && pwd)

node=$(mktemp -d)
trap 'rm -rf "$node"' EXIT
# What travels to the node: tracked files and untracked ones git does not ignore.
git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -C "$node" -xf -
mkdir -p "$node/target"
cp -a target/gpu-bundle "$node/target/"
# The node's PATH: its python3 first, the system's tools, no ~/.cargo/bin.
node_path=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if env PATH="$node_path" sh -c 'command -v cargo || command -v rustc'; then
    echo "rehearse: cargo or rustc is on the node's PATH" >&2
    exit 2
fi
echo "rehearse: run.sh in $node, no network, python3 = $VENV/bin/python3" >&2
rc=0
env -i HOME="$HOME" PATH="$node_path" LANG=C.UTF-8 \
    unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' "$node/target/gpu-bundle/run.sh" "$OUT" || rc=$?
echo "rehearse: run.sh exited $rc; logs and summary in $OUT" >&2
exit $rc
