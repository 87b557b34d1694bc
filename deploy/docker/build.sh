#!/usr/bin/env bash
# Builds attrib's Docker images on a machine with no image registry, as root with a running
# dockerd, debootstrap and network access to the Debian mirror, crates.io and PyPI:
#
#   1. attrib-base:bookworm      Debian bookworm minbase from debootstrap, `docker import`ed,
#                                then upgraded from bookworm-security/-updates (made once;
#                                --rebuild-base makes it again)
#   2. attrib-builder:bookworm   the base + gcc/g++/make/pkg-config/python3-venv from apt +
#                                the host's active Rust toolchain (`rustc --print sysroot`)
#   3. attrib:VARIANT            deploy/docker/Dockerfile: libtorch from PyPI (scripts/setup.sh),
#                                `cargo build --release --bins`, and the slim runtime stage
#
#   deploy/docker/build.sh [--variant cpu|cuda] [--tag IMAGE] [--rebuild-base] [--ca-bundle PEM]
#
# --ca-bundle PEM: CA certificates to trust, besides Debian's, for the downloads inside the
# build (pip, cargo), e.g. a TLS-inspecting proxy's. Default: ATTRIB_BUILD_CA_BUNDLE, else the
# file this machine's pip or cargo is told to trust (PIP_CERT, CARGO_HTTP_CAINFO), if any. It
# is used in the build stage only; the runtime image has Debian's CA bundle alone.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian, as this machine's apt),
# DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security), DOCKER (default
# docker). Builds use `--network host` (apt, cargo and pip inside the build need the network)
# and work with the legacy builder (no buildx needed): the contexts go as tar streams holding
# only what each build copies (for attrib:VARIANT, the `!` paths of Dockerfile.dockerignore).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
DOCKER=${DOCKER:-docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BASE=attrib-base:bookworm
BUILDER=attrib-builder:bookworm

variant=cpu
tag=
rebuild_base=0
ca_bundle=${ATTRIB_BUILD_CA_BUNDLE:-${PIP_CERT:-${CARGO_HTTP_CAINFO:-}}}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --variant) variant=${2:?--variant needs cpu or cuda}; shift 2 ;;
        --variant=*) variant=${1#*=}; shift ;;
        --tag) tag=${2:?--tag needs an image name}; shift 2 ;;
        --tag=*) tag=${1#*=}; shift ;;
        --rebuild-base) rebuild_base=1; shift ;;
        --ca-bundle) ca_bundle=${2:?--ca-bundle needs a PEM file}; shift 2 ;;
        --ca-bundle=*) ca_bundle=${1#*=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$variant" in
    cpu|cuda) ;;
    *) echo "build.sh: --variant must be cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac
tag=${tag:-attrib:$variant}
log() { echo "build: $*" >&2; }

"$DOCKER" info >/dev/null 2>&1 || {
    echo "build.sh: cannot reach the docker daemon (start dockerd first)" >&2
    exit 1
}

# 1. The base image, from Debian packages only.
build_base() {
    command -v debootstrap >/dev/null || {
        echo "build.sh: debootstrap is missing (apt-get install -y debootstrap)" >&2
        exit 1
    }
    local rootfs
    rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/attrib-rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" EXIT
    log "debootstrap --variant=minbase bookworm from $MIRROR (a minute or two)"
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
        tail -20 "$rootfs.log" >&2
        rm -f "$rootfs.log"
        exit 1
    }
    rm -f "$rootfs.log"
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
    # Later installs stay small: no recommends, no docs, man pages or translations.
    cat >"$rootfs/etc/apt/apt.conf.d/90attrib" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90attrib" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/info/* \
        "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/cache/apt/*.bin \
        "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/log/* \
        "${rootfs:?}"/dev/* "${rootfs:?}"/proc/* "${rootfs:?}"/sys/* "${rootfs:?}"/run/* "${rootfs:?}"/tmp/* \
        "${rootfs:?}/etc/resolv.conf" "${rootfs:?}/etc/hostname"
    log "docker import -> $BASE-debootstrap"
    tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' -m "debootstrap --variant=minbase bookworm $MIRROR" \
        - "$BASE-debootstrap" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    log "security and point-release updates -> $BASE"
    "$DOCKER" build --network host --no-cache -t "$BASE" - <<EOF
FROM $BASE-debootstrap
RUN apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y upgrade \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
EOF
    "$DOCKER" rmi "$BASE-debootstrap" >/dev/null
}

if [[ $rebuild_base == 1 ]] || ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    build_base
else
    log "$BASE exists (--rebuild-base to make it again)"
fi

# 2. The builder: the host's active Rust toolchain, without its HTML docs (~0.6 GB). Docker's
# layer cache makes this a no-op while the base and the toolchain stay the same.
sysroot=$(rustc --print sysroot)
rust_version=$(rustc -V)
log "$BUILDER with $rust_version from $sysroot"
tar -c -C "$here" builder.Dockerfile \
    -C "$sysroot" --exclude=./share/doc --transform='s,^\./,rust/,rhS' . \
    | "$DOCKER" build --network host -f builder.Dockerfile \
        --label "attrib.rustc=$rust_version" -t "$BUILDER" -

# 3. The runtime image. The context: the `!` paths of Dockerfile.dockerignore and the
# Dockerfile, never target/, .venv*, databases or env files.
# `!` lines: what goes in. Other patterns but `*`: what stays out, `**/NAME` at any depth,
# the others from the repository root, `*` within one path component (as Docker reads them).
mapfile -t paths < <(sed -n 's/^!//p' "$here/Dockerfile.dockerignore")
excludes=(--exclude-vcs --no-anchored)
while read -r pattern; do
    excludes+=("--exclude=${pattern#\*\*/}")
done < <(grep -E '^\*\*/' "$here/Dockerfile.dockerignore")
excludes+=(--anchored --no-wildcards-match-slash)
while read -r pattern; do
    excludes+=("--exclude=$pattern")
done < <(grep -v -E '^(#|!|\*\*/|\*$|$)' "$here/Dockerfile.dockerignore")
extra=$(mktemp -d)
trap 'rm -rf "$extra"' EXIT
extra_args=()
if [[ -n "$ca_bundle" ]]; then
    [[ -r "$ca_bundle" ]] || { echo "build.sh: cannot read the CA bundle $ca_bundle" >&2; exit 1; }
    mkdir -p "$extra/deploy/docker"
    cp "$ca_bundle" "$extra/deploy/docker/build-ca.pem"
    extra_args=(-C "$extra" deploy/docker/build-ca.pem)
    log "the build's downloads also trust the CAs of $ca_bundle (build stage only)"
fi
log "$tag (VARIANT=$variant): libtorch from PyPI, cargo build --release --bins, runtime stage"
(cd "$root" && tar -c "${excludes[@]}" "${paths[@]}" deploy/docker/Dockerfile "${extra_args[@]}") \
    | "$DOCKER" build --network host -f deploy/docker/Dockerfile --build-arg "VARIANT=$variant" \
        -t "$tag" -
rm -rf "$extra"
trap - EXIT
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^($BASE|$BUILDER|$tag) " >&2 || true
