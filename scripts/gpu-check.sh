#!/usr/bin/env bash
# The GPU check on a GPU machine that also has network and cargo: installs the CUDA libtorch,
# builds the offline bundle here and runs it against that libtorch. A GPU node without network
# or cargo runs the bundle built elsewhere instead (scripts/gpu-bundle.sh, then
# target/gpu-bundle/run.sh on the node; docs/gpu.md). Logs and summary in target/gpu-check/.
#
#   scripts/gpu-check.sh [--device D]
set -euo pipefail
cd "$(dirname "$0")/.."
export ATTRIB_CUDA=1 # setup.sh puts CUDA's libraries and NCCL beside libtorch
scripts/setup.sh
scripts/gpu-bundle.sh
ATTRIB_LIBTORCH=$(readlink -f .libtorch) exec target/gpu-bundle/run.sh target/gpu-check "$@"
