#!/usr/bin/env bash
# The offline GPU bundle (docs/gpu.md): what a GPU node without network, cargo or Rust needs,
# beside a checkout of this repository, to run attrib and its GPU check against the node's own
# PyTorch. Build on a machine with the package registries (an HPC login node); run on compute
# nodes. Writes target/gpu-bundle/, at most 20 MiB:
#   run.sh          the GPU check: target/gpu-bundle/run.sh OUTDIR (scripts/gpu-bundle/run.sh)
#   payload.tar.xz  unpacked by run.sh into target/gpu-bundle/payload/:
#       bin/attrib, bin/attrib-coordinator  stripped binaries
#       bin/attrib-worker                   launcher: libtorch from python3's torch (ATTRIB_LIBTORCH)
#       libexec/attrib-worker               the stripped engine, libtorch_cuda opened at start-up
#       BUILT_AGAINST                       the libtorch release the engine needs
#       FIXTURES.sha256                     the files `attrib-worker self-test` reads, by hash:
#                                           the checkout the bundle runs in holds them (copies
#                                           would count twice against the 60 MiB the two may
#                                           take together), and run.sh checks they are these
#       autocircuit/                        AutoCircuit's side of the ratio, --no-deps
#                                           (scripts/gpu-bundle/autocircuit-wheels.txt)
#   MANIFEST        commit, versions, sizes
#
#   scripts/gpu-bundle.sh            ATTRIB_BIN=DIR packs prebuilt binaries (scripts/binaries.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/binaries.sh
OUT=target/gpu-bundle
LIMIT_MIB=20
TOGETHER_LIMIT_MIB=60 # the bundle and the repository's tracked files, as they travel together
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
p=$stage/payload
mkdir -p "$p/bin" "$p/libexec" "$p/autocircuit"

strip -o "$p/bin/attrib" "$BIN/attrib"
strip -o "$p/bin/attrib-coordinator" "$BIN/attrib-coordinator"
strip -o "$p/libexec/attrib-worker" "$BIN/attrib-worker"
install -m 755 scripts/gpu-bundle/attrib-worker "$p/bin/attrib-worker"
"$BIN/attrib-worker" doctor --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["libtorch"]["built_against"])' > "$p/BUILT_AGAINST"
"$BIN/attrib-worker" self-test --list-fixtures | xargs sha256sum > "$p/FIXTURES.sha256"

# Wheels for the node's Python (3.12, x86-64), pure Python but tokenizers (abi3) and
# charset-normalizer; installed here, so the node runs no pip.
pip_for_node=(--quiet --disable-pip-version-check --no-deps --only-binary=:all:
    --python-version 3.12 --implementation cp --platform manylinux2014_x86_64)
wheels=$(grep -v '^#' scripts/gpu-bundle/autocircuit-wheels.txt | grep .)
# shellcheck disable=SC2086
python3 -m pip download "${pip_for_node[@]}" -d "$stage/wheels" $wheels
python3 -m pip install "${pip_for_node[@]}" --no-compile --no-index --target "$p/autocircuit" "$stage"/wheels/*.whl
# transformers' model folders but those the timed run imports (run both modes of
# time_autocircuit.py and list transformers.models.* in sys.modules: TransformerLens reads a few
# configurations at import): 49 of its 57 MB unpacked, 3 MiB of the bundle.
keep=" auto bert blip_2 dbrx emu3 encoder_decoder exaone4 flex_olmo gpt2 hubert t5 wav2vec2 "
for d in "$p"/autocircuit/transformers/models/*/; do
    [[ $keep == *" $(basename "$d") "* ]] || rm -rf "$d"
done

rm -rf "$OUT"
mkdir -p "$OUT"
tar -C "$stage" -cf - payload | xz -9 -T0 > "$OUT/payload.tar.xz"
install -m 755 scripts/gpu-bundle/run.sh "$OUT/run.sh"
size() { du -sb "$@" | awk '{s += $1} END {print s}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
built=$(cat "$p/BUILT_AGAINST")
tracked=$(git ls-files -z | xargs -0 du -cb 2> /dev/null | tail -1 | cut -f1)
{
    echo "attrib GPU bundle, built $(date -u +%Y-%m-%dT%H:%MZ) from commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
    echo "engine built against libtorch $built; needs torch ${built%%+*} on the node"
    echo "unpacked: binaries $(mib "$(size "$p/bin" "$p/libexec")"), autocircuit $(mib "$(size "$p/autocircuit")"); self-test fixtures from the checkout: $(wc -l < "$p/FIXTURES.sha256") files"
    echo "AutoCircuit side: $(echo $wheels)"
} > "$OUT/MANIFEST"
bundle=$(size "$OUT")
echo "bundle: $(mib "$bundle") in $OUT (limit $LIMIT_MIB MiB); tracked files $(mib "$tracked"); together $(mib $((bundle + tracked))) (limit $TOGETHER_LIMIT_MIB MiB)" | tee -a "$OUT/MANIFEST"
if ((bundle > LIMIT_MIB << 20 || bundle + tracked > TOGETHER_LIMIT_MIB << 20)); then
    echo "gpu-bundle: over a size limit" >&2
    exit 1
fi
