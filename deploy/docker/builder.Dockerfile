# The local builder image: Debian bookworm (attrib-base:bookworm, made by debootstrap) with a
# C/C++ toolchain and Python's venv from apt, and the host's active Rust toolchain copied in
# (no rustup, no download: the compiler that builds attrib here builds it in the image).
#
# Built by deploy/docker/build.sh, whose context is this file plus the toolchain as rust/
# (the sysroot of `rustc --print sysroot`, without its HTML docs). apt needs the network:
#   docker build --network host -f builder.Dockerfile -t attrib-builder:bookworm CONTEXT
FROM attrib-base:bookworm

# gcc/g++: torch-sys's C++ wrapper, rusqlite's bundled SQLite, ring. python3-venv: setup.sh
# installs libtorch from PyPI's torch wheel into a venv. binutils (with gcc): strip.
RUN apt-get -q update \
    && apt-get -q install -y --no-install-recommends \
        gcc g++ make pkg-config libc6-dev python3 python3-venv ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

COPY rust/ /usr/local/rust/

ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo \
    CARGO_INCREMENTAL=0 \
    CARGO_TERM_COLOR=never

RUN mkdir -p /usr/local/cargo && rustc -V && cargo -V && cc --version | head -1 && python3 --version
