#!/usr/bin/env bash
# Lints the wire contract (proto/attrib/v1/attrib.proto) with `buf lint`: buf's default rules
# plus comments on everything, each exception justified in buf.yaml. buf comes from the npm
# registry (@bufbuild/buf, pinned) into target/buf on first use; node and npm are installed
# with apt-get when missing. Prints buf's findings and exits non-zero on any.
#
#   scripts/buf-lint.sh
#
# Environment:
#   BUF_DIR   where to install buf (default target/buf; made if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
pin=1.75.0
dir=${BUF_DIR:-target/buf}
buf=$dir/node_modules/.bin/buf

if ! command -v npm >/dev/null; then
    echo "buf-lint.sh: installing node and npm (apt-get)"
    sudo=
    [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
if [[ "$("$buf" --version 2>/dev/null)" != "$pin" ]]; then
    echo "buf-lint.sh: installing @bufbuild/buf@$pin into $dir"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error \
        "@bufbuild/buf@$pin"
fi
"$buf" lint
echo "buf lint: clean (buf $("$buf" --version), buf.yaml)"
