# Sourced by the scripts that run attrib's binaries; sets BIN, the folder holding them.
# ATTRIB_BIN=DIR: prebuilt binaries (a GPU node running the bundle has no cargo): nothing is
# installed or built. Otherwise scripts/setup.sh, then the same build as scripts/test.sh (one
# feature set, so switching scripts rebuilds nothing), and BIN=target/release.
if [[ -n ${ATTRIB_BIN:-} ]]; then
    BIN=$ATTRIB_BIN
else
    scripts/setup.sh
    cargo build --release --workspace --bins
    BIN=target/release
fi
