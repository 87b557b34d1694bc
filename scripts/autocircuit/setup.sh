#!/usr/bin/env bash
# Puts AutoCircuit (PyPI `auto-circuit`) and its pinned stack into ./.venv-autocircuit, for
# scripts/autocircuit/time_autocircuit.py. The pins are a copy of the oracle's
# (../shared/oracle/requirements-oracle.txt), so the timed library is the one the golden
# data came from. Idempotent: a marker holds the requirements' hash, so a second run takes
# a second. The full install (torch 2.11.0 CUDA wheel and nvidia-* libraries) is several GB.
#
#   scripts/autocircuit/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-autocircuit
REQ=scripts/autocircuit/requirements.txt
PY=${PYTHON:-python3}

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ -f "$VENV/.autocircuit-req" && "$(cat "$VENV/.autocircuit-req")" == "$want" ]]; then
    exit 0
fi

echo "setup: installing $REQ into $VENV (one time, several GB)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
# Written last, so an interrupted install is retried on the next run.
echo "$want" > "$VENV/.autocircuit-req"
echo "setup: AutoCircuit ready in $VENV" >&2
