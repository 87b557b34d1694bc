#!/usr/bin/env bash
# Puts libtorch 2.11.0 (from PyPI's torch wheel) into a project-local venv and links it at
# ./.libtorch, which .cargo/config.toml hands to tch. Idempotent: a second run takes a second.
#
#   scripts/setup.sh              CPU-only minimal install (~1.3 GB, ~20 s)
#   ATTRIB_CUDA=1 scripts/setup.sh full CUDA 13 install (~4.6 GB): CUDA's libraries beside
#                                  libtorch, so attrib-worker can open libtorch_cuda
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
VENV=.venv
PY=${PYTHON:-python3}

want="torch==$TORCH_VERSION cuda=${ATTRIB_CUDA:-0} nccl=2.28.9"
if [[ -f "$VENV/.attrib-torch" && "$(cat "$VENV/.attrib-torch")" == "$want" && -e .libtorch/lib/libtorch_cpu.so ]]; then
    exit 0
fi

echo "setup: installing $want into $VENV (one time)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if [[ "${ATTRIB_CUDA:-0}" == 1 ]]; then
    "${PIP[@]}" "torch==$TORCH_VERSION"
else
    # libtorch_cpu needs only libcudart.so.13 and libcupti.so.13 from the CUDA packages;
    # NCCL (CUDA torch's pin) is for the tests of the worker's NCCL loader, which need no GPU.
    "${PIP[@]}" --no-deps "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 \
        nvidia-cuda-cupti==13.0.85 "cuda-toolkit[cudart,cupti]==13.0.2" nvidia-nccl-cu13==2.28.9
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$(realpath --relative-to=. "$SITE/torch")" .libtorch
echo "$want" > "$VENV/.attrib-torch"
echo "setup: libtorch at $(readlink .libtorch)" >&2
