#!/usr/bin/env bash
# End-to-end check of deploy/docker on this machine (root, dockerd running, debootstrap and
# docker-compose or the compose plugin installed):
#
#   1. builds the images: attrib-base:bookworm, attrib-builder:bookworm, attrib:cpu (build.sh)
#   2. checks the runtime image: the binaries run, every shared library resolves, uid 10001,
#      no Python
#   3. REF: `target/release/attrib-worker attribute` on the golden tiny model and the IOI
#      quickstart dataset (the host's build; in the image when there is none)
#   4. brings compose.yaml up with a coordinator and 2 workers on the host network, the model
#      tests/fixtures/golden-tiny (a copy, its symlinks resolved) mounted read-only at
#      /models/gpt2, random tokens
#   5. runs the quickstart through it with the image's client (submit, watch, scores, render,
#      faithfulness, report) and checks the scores equal REF bit for bit
#   6. bad configuration: a worker with no model volume exits naming /models/gpt2; a worker
#      with no coordinator to reach keeps dialing and logs the address it tries
#   7. brings the cluster down (its database volume too) and prints PASS or FAIL
#
#   deploy/docker/test-docker.sh            # ATTRIB_DOCKER_SKIP_BUILD=1: use the images as they are
#
# The build's own output goes to ${ATTRIB_DOCKER_BUILD_LOG:-/tmp/attrib-docker-build.log}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
DOCKER=${DOCKER:-docker}
IMAGE=attrib:cpu
FIXTURE=tests/fixtures/golden-tiny
DATASET=datasets/ioi/ioi_vanilla_template_prompts.json
WORKERS=2
PROJECT=attrib-docker-test
BUILD_LOG=${ATTRIB_DOCKER_BUILD_LOG:-/tmp/attrib-docker-build.log}

t0=$SECONDS
say() { printf '[test-docker %4ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() { say "FAIL: $*"; exit 1; }

if "$DOCKER" compose version >/dev/null 2>&1; then
    COMPOSE=("$DOCKER" compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    echo "test-docker.sh: needs Compose: 'docker compose' (v2 plugin) or docker-compose (v1)" >&2
    exit 1
fi

work=$(mktemp -d /tmp/attrib-docker-test.XXXXXX)
chmod 755 "$work"
mkdir -m 777 "$work/out"
# The model folder as the containers see it: golden-tiny's tokenizer files are symlinks into
# assets/, which a bind mount of the folder alone would leave dangling, so mount a copy with
# the links resolved (the same bytes REF reads).
MODEL=$work/golden-tiny
cp -rL "$FIXTURE" "$MODEL"
chmod -R a+rX "$MODEL"
: >"$work/empty.env"
up=0
passed=0
extra_worker=
finish() {
    local rc=$?
    set +e
    if [[ -n "$extra_worker" ]]; then "$DOCKER" rm -fv "$extra_worker" >/dev/null 2>&1; fi
    if [[ $up == 1 ]]; then
        if [[ $passed != 1 ]]; then
            say "logs of the cluster (last 40 lines per container):"
            compose logs --no-color --tail 40 2>&1 | sed 's/^/    /'
        fi
        compose down -v --timeout 30 >/dev/null 2>&1
    fi
    rm -rf "$work"
    if [[ $passed == 1 && $rc == 0 ]]; then
        say "PASS (wall time $((SECONDS - t0)) s)"
    else
        say "FAIL (wall time $((SECONDS - t0)) s)"
        exit 1
    fi
}
trap finish EXIT

# Compose reads only what this script sets: an empty --env-file (not a .env of yours), and
# every setting exported below, which outranks your shell's.
compose() {
    "${COMPOSE[@]}" --env-file "$work/empty.env" -p "$PROJECT" -f "$here/compose.yaml" "$@"
}
# A command's output, indented, without progress-bar lines; fails the test when it fails.
show() { tr '\r' '\n' <"$1" | grep -v -E '^\[[#-]*\] |^ *$' | sed 's/^/    /' || true; }
logged() {
    local name=$1
    shift
    if "$@" >"$work/$name.log" 2>&1; then
        show "$work/$name.log"
    else
        local rc=$?
        show "$work/$name.log"
        fail "$name (exit $rc)"
    fi
}
random_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# The image's client, on the host network, with the client token from the environment (not
# on the command line), the datasets read-only and $work/out for what it writes.
client() {
    "$DOCKER" run --rm --network host -e ATTRIB_TOKEN -e ATTRIB_COORDINATOR \
        -v "$root/datasets/ioi:/datasets:ro" -v "$work/out:/out" -w /out "$IMAGE" attrib "$@"
}

# 1. Images.
if [[ "${ATTRIB_DOCKER_SKIP_BUILD:-0}" == 1 ]]; then
    say "ATTRIB_DOCKER_SKIP_BUILD=1: using the images as they are"
else
    say "building the images (deploy/docker/build.sh --variant cpu; log: $BUILD_LOG)"
    if ! "$here/build.sh" --variant cpu --tag "$IMAGE" >"$BUILD_LOG" 2>&1; then
        tail -40 "$BUILD_LOG" | sed 's/^/    /'
        fail "the image build failed (full log: $BUILD_LOG)"
    fi
    grep -E '^build: ' "$BUILD_LOG" | sed 's/^/    /' || true
fi
for image in attrib-base:bookworm attrib-builder:bookworm "$IMAGE"; do
    "$DOCKER" image inspect "$image" >/dev/null 2>&1 || fail "no image $image"
    size=$("$DOCKER" image inspect -f '{{.Size}}' "$image")
    say "image $image: $((size / 1000000)) MB"
done

# 2. The runtime image.
run_image() { "$DOCKER" run --rm --network none "$IMAGE" "$@"; }
help=$(run_image attrib-worker --help) || fail "attrib-worker --help does not run in $IMAGE"
say "attrib-worker --help in $IMAGE: $(head -1 <<<"$help")"
run_image attrib-coordinator --version >/dev/null || fail "attrib-coordinator does not run"
run_image attrib --version >/dev/null || fail "attrib does not run"
uid=$(run_image id -u)
[[ $uid == 10001 ]] || fail "the image runs as uid $uid, not 10001"
ldd_out=$(run_image sh -c 'ldd /opt/attrib/bin/*')
if grep -q 'not found' <<<"$ldd_out"; then
    grep 'not found' <<<"$ldd_out" >&2
    fail "shared libraries missing in $IMAGE"
fi
if run_image sh -c 'ls /usr/bin/python* /usr/local/bin/python*' >/dev/null 2>&1; then
    fail "python is in the runtime image"
fi
libs=$(run_image sh -c 'cd /opt/attrib/lib && find . -name "*.so*" | sort | tr "\n" " "')
say "runtime image: uid 10001, no Python, ldd resolves everything; libtorch shipped: $libs"

# 3. REF, in one process.
if [[ -x target/release/attrib-worker ]]; then
    say "REF: target/release/attrib-worker attribute --model $FIXTURE --dataset $DATASET --device cpu"
    target/release/attrib-worker attribute --model "$FIXTURE" --dataset "$DATASET" \
        --device cpu --out "$work/ref.json" >"$work/ref.log" 2>&1 || { cat "$work/ref.log"; fail "REF run"; }
else
    say "REF: no target/release/attrib-worker on this machine: attrib-worker attribute in $IMAGE"
    "$DOCKER" run --rm --network none -v "$MODEL:/models/gpt2:ro" -v "$root/datasets/ioi:/datasets:ro" \
        -v "$work/out:/out" "$IMAGE" attrib-worker attribute --dataset "/datasets/$(basename "$DATASET")" \
        --device cpu --out /out/ref.json >"$work/ref.log" 2>&1 || { cat "$work/ref.log"; fail "REF run"; }
    mv "$work/out/ref.json" "$work/ref.json"
fi
grep -E 'edges, clean logit diff' "$work/ref.log" | sed 's/^/    /' || true

# 4. The cluster.
port=
for _ in $(seq 100); do
    candidate=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then port=$candidate; break; fi
done
[[ -n "$port" ]] || fail "no free port on 127.0.0.1"
ATTRIB_TOKEN=$(random_token)
ATTRIB_WORKER_TOKEN=$(random_token)
export ATTRIB_TOKEN ATTRIB_WORKER_TOKEN ATTRIB_IMAGE=$IMAGE ATTRIB_MODEL_DIR=$MODEL \
    ATTRIB_PORT=$port ATTRIB_DATA=attrib-data ATTRIB_DEVICE=cpu \
    ATTRIB_COORDINATOR=http://127.0.0.1:$port
compose config -q || fail "compose.yaml does not validate"
say "compose.yaml validates (${COMPOSE[*]} config); up: coordinator + $WORKERS workers on 127.0.0.1:$port"
up=1
logged "compose up" compose up -d --scale "worker=$WORKERS"
coordinator=$(compose ps -q coordinator)
for _ in $(seq 60); do
    health=$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$coordinator")
    [[ $health == healthy ]] && break
    sleep 2
done
[[ $health == healthy ]] || fail "the coordinator is $health, not healthy"
joined=0
for _ in $(seq 60); do
    joined=$(client --json workers 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') || joined=0
    [[ $joined -ge $WORKERS ]] && break
    sleep 2
done
[[ $joined -ge $WORKERS ]] || fail "$joined of $WORKERS workers joined"
say "coordinator healthy, $joined workers joined:"
logged workers client workers

# 5. The quickstart through the cluster.
job=$(client submit --dataset "/datasets/$(basename "$DATASET")" --label quickstart) || fail "submit"
say "submitted $job"
logged watch client watch "$job"
logged scores client scores "$job" --out /out/scores.json
logged render client render "$job" --top 50 --orientation v --out /out/circuit.svg
logged faithfulness client faithfulness "$job" --edges 10,100,1000,10000 --out /out/curve.json
logged report client report "$job" --top 50 --orientation v --out /out/report.html
for f in scores.json circuit.svg curve.json report.html; do
    [[ -s "$work/out/$f" ]] || fail "the client wrote no $f"
done
per_worker=$(client --json workers | python3 -c 'import json,sys; print(" ".join(str(w["units_done"]) for w in json.load(sys.stdin)))') \
    || fail "attrib workers"
say "units done per worker: $per_worker"
for n in $per_worker; do [[ $n -gt 0 ]] || fail "a worker computed no unit"; done

python3 - "$work/ref.json" "$work/out/scores.json" <<'EOF' || fail "the cluster's scores differ from REF"
import json, struct, sys
ref, got = (json.load(open(p)) for p in sys.argv[1:3])
bits = lambda x: struct.pack("<d", x)
same = lambda a, b: (a["src"], a["dest"], a["seq"], bits(a["score"])) == (b["src"], b["dest"], b["seq"], bits(b["score"]))
ok = ref["n_edges"] == got["n_edges"] == len(ref["edges"]) == len(got["edges"])
diff = [i for i, (a, b) in enumerate(zip(ref["edges"], got["edges"])) if not same(a, b)]
for key in ("clean_logit_diff",):
    ok &= bits(ref[key]) == bits(got[key])
ok &= ref["settings"] == got["settings"]
strip = lambda d: {k: v for k, v in d.items() if k != "files"}  # paths differ: host vs /datasets
ok &= strip(ref["data"]) == strip(got["data"])
for i in diff[:10]:
    print(f"    edge {i}: REF {ref['edges'][i]} cluster {got['edges'][i]}")
top = max(abs(e["score"]) for e in ref["edges"])
print(f"    {len(ref['edges'])} edge scores: {len(ref['edges']) - len(diff)} bit-identical to REF, "
      f"{len(diff)} different (max |score| {top:.6g}); clean logit diff, settings and data "
      f"{'equal' if ok else 'DIFFER'}")
sys.exit(0 if ok and not diff else 1)
EOF
say "scores: the cluster's equal REF bit for bit"

# 6. Bad configuration.
set +e
bad=$(timeout 120 "$DOCKER" run --rm --network host -e ATTRIB_WORKER_TOKEN -e ATTRIB_COORDINATOR \
    "$IMAGE" attrib-worker serve 2>&1)
bad_rc=$?
set -e
[[ $bad_rc != 0 && $bad_rc != 124 ]] || fail "a worker with no model volume did not exit with an error (rc $bad_rc)"
grep -q '/models/gpt2' <<<"$bad" || { echo "$bad" >&2; fail "the error does not name /models/gpt2"; }
say "a worker with no model volume exits $bad_rc: $(grep -m1 -i error <<<"$bad")"
set +e
bad=$(timeout 120 "$DOCKER" run --rm --network none "$IMAGE" attrib-coordinator 2>&1)
bad_rc=$?
set -e
[[ $bad_rc != 0 && $bad_rc != 124 ]] || fail "a coordinator with no model volume did not exit with an error"
grep -q '/models/gpt2' <<<"$bad" || { echo "$bad" >&2; fail "the coordinator's error does not name /models/gpt2"; }
say "a coordinator with no model volume exits $bad_rc: $(head -1 <<<"$bad") ($(grep -m1 -o 'cannot read [^:]*' <<<"$bad"))"
if (unset ATTRIB_MODEL_DIR; compose config -q) >"$work/config.log" 2>&1; then
    fail "compose config passed without ATTRIB_MODEL_DIR"
fi
say "compose without ATTRIB_MODEL_DIR refuses: $(grep -m1 -o 'set ATTRIB_MODEL_DIR to the host folder of the model' "$work/config.log" | head -1)"
# A worker whose coordinator is not up (nothing on this port) dials again with backoff.
dead=$((port + 1))
(exec 3<>"/dev/tcp/127.0.0.1/$dead") 2>/dev/null && dead=$((port + 2))
extra_worker=$("$DOCKER" run -d --network host -e ATTRIB_WORKER_TOKEN \
    -e ATTRIB_COORDINATOR="http://127.0.0.1:$dead" -v "$MODEL:/models/gpt2:ro" "$IMAGE" attrib-worker serve)
sleep 5
tries=$("$DOCKER" logs "$extra_worker" 2>&1 | grep -c 'no session with the coordinator' || true)
running=$("$DOCKER" inspect -f '{{.State.Running}}' "$extra_worker")
[[ $tries -ge 2 && $running == true ]] || fail "a worker with no coordinator did not keep dialing ($tries tries)"
say "a worker with no coordinator keeps dialing: $tries tries in 5 s, e.g."
"$DOCKER" logs "$extra_worker" 2>&1 | grep 'no session with the coordinator' | tail -1 \
    | sed 's/\x1b\[[0-9;]*m//g; s/^/    /' || true
"$DOCKER" rm -fv "$extra_worker" >/dev/null
extra_worker=

# 7. Down.
logged "compose down" compose down -v --timeout 30
up=0
left=$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT")
[[ -z "$left" ]] || fail "containers left after down: $left"
say "cluster down, database volume removed"
passed=1
