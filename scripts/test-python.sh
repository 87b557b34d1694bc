#!/usr/bin/env bash
# Runs the Python tests (tests/python, pytest) against the release binaries: a client in
# another language that knows attrib only by gRPC reflection. Installs the pinned
# tests/python/requirements.txt from PyPI into a venv on first use (again when the file
# changes). Build the binaries first (cargo build --release --workspace --bins). The last
# line is pytest's summary.
#
#   scripts/test-python.sh [pytest arguments]
#
# Environment:
#   PY_VENV         the venv (default target/pyvenv; made if missing)
#   ATTRIB_BIN_DIR  where attrib-coordinator, attrib-worker and attrib are (default
#                   target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PY_VENV:-target/pyvenv}
reqs=tests/python/requirements.txt
if ! cmp -s "$reqs" "$venv/requirements.txt"; then
    echo "test-python.sh: installing $reqs into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"
    cp "$reqs" "$venv/requirements.txt"
fi
PYTHONDONTWRITEBYTECODE=1 exec "$venv/bin/python" -m pytest -p no:cacheprovider tests/python "$@"
