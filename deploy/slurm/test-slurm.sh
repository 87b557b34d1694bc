#!/bin/bash
# A real Slurm run of deploy/slurm/attrib.sbatch on a one-node cluster on 127.0.0.1 (munged,
# slurmctld and slurmd started here, configured in a temp dir, nothing system-wide):
# - the script's errors: no datasets, no model, a coordinator that never listens, GPU workers
#   on a CPU node;
# - two CPU workers score the IOI prompts on tests/fixtures/golden-tiny: the bits
#   `attrib-worker attribute` writes; a second submission on the same database finds the job;
# - a job cancelled half way (scancel) resumes from its database when submitted again, to the
#   bits of attribute; meanwhile no token is on a command line and workers lack the client's.
# Needs root (the daemons) and the release binaries in target/release; installs slurm-wlm and
# munge with apt-get when missing. Re-runnable: it stops every daemon it started, by pid.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$repo/target/release
model=$repo/tests/fixtures/golden-tiny
dataset=$repo/datasets/ioi/ioi_vanilla_template_prompts.json
t0=$SECONDS

fail() { echo "test-slurm: FAIL: $* ($((SECONDS - t0)) s)" >&2; exit 1; }
trap 'echo "test-slurm: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
[[ $(id -u) == 0 ]] || fail "run as root: it starts munged, slurmctld and slurmd"
for b in attrib attrib-coordinator attrib-worker; do
  [[ -x $bin/$b ]] || fail "$bin/$b missing: build the release binaries first"
done

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "test-slurm: installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

tmp=$(mktemp -d /tmp/attrib-slurm-test.XXXXXX)
export SLURM_CONF=$tmp/slurm.conf # every Slurm command and daemon here reads this one
daemons=()                        # pids of what we started, stopped in reverse order

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  # Our jobs first, while slurmd is there to end them (its job steps outlive it otherwise).
  if ((${#daemons[@]} >= 3)); then
    scancel --full --user=root 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 1; done
  fi
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
    pid=${daemons[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in {1..20}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((rc != 0)); then
    for f in "$tmp"/*.log; do [[ -f $f ]] && { echo "--- tail of $f"; tail -n 20 "$f"; }; done
    echo "test-slurm: FAIL ($((SECONDS - t0)) s)"
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free ports for slurmctld and slurmd, so a stray daemon on 6817/6818 does not matter.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
host=$(hostname)
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/munge"
cat >"$SLURM_CONF" <<EOF
ClusterName=attribtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
# No cgroups: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

# munged with its own key and socket (-F: stays in the foreground, so $! is its pid).
dd if=/dev/urandom of="$tmp/munge/key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/key"
munged -F --force --key-file="$tmp/munge/key" --socket="$tmp/munge/socket" \
  --pid-file="$tmp/munge/pid" --seed-file="$tmp/munge/seed" --log-file="$tmp/munged.log" \
  >>"$tmp/munged.log" 2>&1 &
daemons+=($!)
for _ in {1..50}; do [[ -S $tmp/munge/socket ]] && break; sleep 0.1; done
[[ -S $tmp/munge/socket ]] || fail "munged did not start"

slurmctld -D -f "$SLURM_CONF" >"$tmp/slurmctld.log" 2>&1 &
daemons+=($!)
slurmd -D -f "$SLURM_CONF" >"$tmp/slurmd.log" 2>&1 &
daemons+=($!)
for _ in {1..60}; do [[ $(sinfo -h -o %T 2>/dev/null) == idle ]] && break; sleep 0.5; done
[[ $(sinfo -h -o %T 2>/dev/null) == idle ]] || fail "the node did not come up: $(sinfo 2>&1)"
echo "test-slurm: cluster up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %D %c %T %N')"

# The reference: the same engine in one process, with the defaults `attrib submit` uses, and
# one thread, as each worker has (--cpus-per-task=1): libtorch's CPU kernels may round
# differently with another thread count (they do with AVX2: docs/cluster.md).
OMP_NUM_THREADS=1 "$bin/attrib-worker" attribute --model "$model" --dataset "$dataset" --device cpu \
  --out "$tmp/ref.json" >"$tmp/attribute.log" 2>&1 || fail "attrib-worker attribute failed"

# Two tasks of one CPU: two CPU workers, next to the coordinator on the one node. Submitted
# from $tmp, so the job's working directory (its client env file, say) is there.
# run_job NAME [--wait] [sbatch options]: the Slurm job id in $tmp/NAME.jobid; with --wait, the
# job's exit code in $rc, else sbatch's. The script's arguments are job_args.
job_args=("$dataset")
run_job() {
  local name=$1 wait=0 id state
  shift
  [[ ${1:-} == --wait ]] && { wait=1; shift; }
  (cd "$tmp" && ATTRIB_MODEL=$model ATTRIB_DB=$tmp/attrib.db ATTRIB_OUT_DIR=$tmp/out-$name ATTRIB_BIN=$bin \
    sbatch --parsable --ntasks=2 --cpus-per-task=1 --time=10 --output="$tmp/job-$name.log" \
    "$@" "$repo/deploy/slurm/attrib.sbatch" "${job_args[@]}" >"$tmp/$name.jobid") && rc=0 || rc=$?
  ((wait && rc == 0)) || return 0
  # Poll rather than sbatch --wait, which looks only every few seconds.
  id=$(<"$tmp/$name.jobid")
  for _ in {1..1200}; do # 10 min
    state=$(scontrol -o show job "$id" | sed -n 's/.* JobState=\([A-Z_]*\) .*/\1/p')
    [[ $state == @(PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED) ]] || break
    sleep 0.2
  done
  rc=$(scontrol -o show job "$id" | sed -n 's/.* ExitCode=\([0-9]*\):.*/\1/p')
  [[ $state == @(COMPLETED|FAILED|CANCELLED) && -n $rc ]] || fail "Slurm job $id: state $state, exit code $rc"
}
show_job() {
  echo "--- job $1:"
  cat "$tmp/job-$1.log"
}

# Bit for bit: every edge's score as written in the JSON text, the edge order, and the
# settings (those of `attrib submit` must be those of `attribute`); only file paths differ.
same_scores() {
  python3 - "$tmp/ref.json" "$1" <<'EOF'
import json, re, sys
texts = [open(p).read() for p in sys.argv[1:]]
ref, got = (json.loads(t) for t in texts)
scores = [re.findall(r'"score":([^,}\]]+)', t) for t in texts]
for d in (ref, got):
    d["data"].pop("files"); d["model"].pop("path")
problems = []
if scores[0] != scores[1]: problems.append("scores differ")
if not 0 < len(scores[0]) == ref["n_edges"]: problems.append("score count %d" % len(scores[0]))
for k in ("n_edges", "clean_logit_diff", "settings", "data", "model"):
    if ref[k] != got[k]: problems.append("%s: %r != %r" % (k, ref[k], got[k]))
if [(e["src"], e["dest"], e["seq"]) for e in ref["edges"]] != [(e["src"], e["dest"], e["seq"]) for e in got["edges"]]:
    problems.append("edge order differs")
print("; ".join(problems) or "%d scores identical" % len(scores[0]))
sys.exit(1 if problems else 0)
EOF
}

# The script's own errors: the job fails and its log says why.
expect_error() { # expect_error NAME MESSAGE [sbatch options]
  local name=$1 msg=$2
  shift 2
  run_job "$name" --wait "$@"
  show_job "$name"
  if ((rc == 0)) || ! grep -qF "$msg" "$tmp/job-$name.log"; then
    fail "$name: expected a failed job saying \"$msg\""
  fi
  echo "test-slurm: $name: $(grep -F "$msg" "$tmp/job-$name.log")"
}
job_args=()
expect_error no-datasets "error: no datasets given"
job_args=("$dataset")
expect_error no-model "has no config.json (ATTRIB_MODEL)" --export="ALL,ATTRIB_MODEL=$tmp/no-model"
# A coordinator that never listens (a stand-in that sleeps): the script gives up and stops it.
mkdir -p "$tmp/hung-bin"
ln -s "$bin/attrib" "$bin/attrib-worker" "$tmp/hung-bin/"
printf '#!/bin/sh\nexec sleep 600\n' >"$tmp/hung-bin/attrib-coordinator"
chmod +x "$tmp/hung-bin/attrib-coordinator"
expect_error not-ready "did not listen within 2s" --export="ALL,ATTRIB_READY_SECS=2,ATTRIB_BIN=$tmp/hung-bin"
# GPU workers on a CPU-only node: srun refuses the step; the script sees no worker left.
expect_error gpu-on-cpu "every worker exited" --export="ALL,ATTRIB_WORKER_MODE=gpu,ATTRIB_DB=$tmp/gpu.db"
! compgen -G "$tmp/attrib-*.env" >/dev/null || fail "a failed job left its client token file"

run_job first --wait
show_job first
((rc == 0)) || fail "the first job failed (exit $rc)"
job=$(sed -n 's/.*submitted \(job-[0-9]*\)$/\1/p' "$tmp/job-first.log")
[[ -n $job ]] || fail "no attrib job id in the first job's log"
grep -q '"state":"done"' "$tmp/out-first/status.json" || fail "status.json does not say done"
[[ -s $tmp/out-first/report.html ]] || fail "no report.html"
same_scores "$tmp/out-first/scores.json" || fail "cluster scores differ from attrib-worker attribute"

# Same database, same dataset: the sbatch script must resume (here: find done) $job.
run_job again --wait
show_job again
((rc == 0)) || fail "the second job failed (exit $rc)"
grep -q "resuming $job (done)" "$tmp/job-again.log" || fail "the second submission did not reuse $job"
same_scores "$tmp/out-again/scores.json" || fail "resumed scores differ"
! compgen -G "$tmp/attrib-*.env" >/dev/null || fail "a client token file was left behind"

# Cancel and resume: 400 units of one prompt each (read by `attrib submit` inside the job and
# by attribute here). One thread, as the workers have (the bits, and two threads on a 2-core
# machine make batch-1 attribution ~20x slower).
export ATTRIB_BATCH_SIZE=1 ATTRIB_TRAIN_SIZE=400
OMP_NUM_THREADS=1 "$bin/attrib-worker" attribute --model "$model" --dataset "$dataset" --device cpu \
  --out "$tmp/ref.json" >"$tmp/attribute.log" 2>&1 || fail "attrib-worker attribute --batch-size 1 failed"
run_job cancel
((rc == 0)) || fail "sbatch failed"
slurm_job=$(<"$tmp/cancel.jobid")
envf=$tmp/attrib-$slurm_job.env
# With the job's URL and client token, as a user on a login node would read them.
# shellcheck source=/dev/null
job_status() { (set -a && . "$envf" && "$bin/attrib" --json status "$1"); }
# Wait for both workers and a few folded units, then freeze the workers (SIGSTOP, by pid), so
# the job is surely unfinished when it is cancelled however fast this machine is.
job2='' units=0 workers=()
for _ in {1..600}; do # 60 s
  [[ -z $job2 ]] && job2=$(sed -n 's/.*submitted \(job-[0-9]*\)$/\1/p' "$tmp/job-cancel.log" 2>/dev/null || true)
  if [[ -n $job2 && -s $envf ]]; then
    if ((${#workers[@]} < 2)); then
      workers=()
      for pid in $(scontrol listpids "$slurm_job" 2>/dev/null | awk 'NR > 1 {print $1}'); do
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *attrib-worker\ serve* ]] && workers+=("$pid")
      done
    fi
    status=$(job_status "$job2") || status=''
    [[ $status == *'"state":"done"'* ]] && fail "$job2 finished before it could be cancelled"
    units=$(sed -n 's/.*"units_done":\([0-9]*\),"units_resumed".*/\1/p' <<<"$status")
    if ((${#workers[@]} == 2 && ${units:-0} >= 4)); then
      kill -STOP "${workers[@]}"
      break
    fi
  fi
  sleep 0.1
done
((${#workers[@]} == 2 && ${units:-0} >= 4)) || fail "$job2 did not get going (workers: ${workers[*]}; units done: $units)"

# While it runs: no command line holds a token (grep reads them from a file, so its own
# command line does not either), and workers hold the worker token but not the client's.
sed -n 's/^ATTRIB_TOKEN=//p' "$envf" >"$tmp/tokens"
tr '\0' '\n' <"/proc/${workers[0]}/environ" | sed -n 's/^ATTRIB_WORKER_TOKEN=//p' >>"$tmp/tokens"
[[ $(grep -c '^[0-9a-f]\{64\}$' "$tmp/tokens") == 2 ]] || fail "expected a client and a worker token of 64 hex digits"
for pid in "${workers[@]}"; do
  ! tr '\0' '\n' <"/proc/$pid/environ" | grep -q '^ATTRIB_TOKEN=' || fail "worker $pid holds the client token"
done
for p in /proc/[0-9]*; do
  if grep -qFf "$tmp/tokens" "$p/cmdline" 2>/dev/null; then fail "a token on a command line: $(tr '\0' ' ' <"$p/cmdline")"; fi
done
echo "test-slurm: tokens: none on a command line; both workers hold the worker token only"
status=$(job_status "$job2")
units=$(sed -n 's/.*"units_done":\([0-9]*\),"units_resumed".*/\1/p' <<<"$status")
[[ $status == *'"state":"running"'* ]] || fail "$job2 is not running: $status"
echo "test-slurm: scancel $slurm_job at $units/400 units of $job2"
scancel "$slurm_job"
kill -CONT "${workers[@]}" 2>/dev/null || true # Slurm sends SIGCONT too; so they see SIGTERM
for _ in {1..120}; do [[ -z $(squeue -h) ]] && break; sleep 0.5; done
show_job cancel
[[ -z $(squeue -h) ]] || fail "the cancelled job did not end"
grep -q "got SIGTERM" "$tmp/job-cancel.log" || fail "the cancelled job's script did not see SIGTERM"
! compgen -G "$tmp/attrib-*.env" >/dev/null || fail "the cancelled job left its client token file"

run_job resume --wait
show_job resume
((rc == 0)) || fail "the resumed job failed (exit $rc)"
grep -Eq "resuming $job2 \((queued|running)\)" "$tmp/job-resume.log" || fail "the resubmission did not resume $job2"
resumed=$(sed -n 's/.*"units_resumed":\([0-9]*\).*/\1/p' "$tmp/out-resume/status.json")
((${resumed:-0} > 0)) || fail "$job2 resumed no units (status: $(cat "$tmp/out-resume/status.json"))"
same_scores "$tmp/out-resume/scores.json" || fail "resumed scores differ from attrib-worker attribute --batch-size 1 --train-size 400"

echo "test-slurm: PASS: 2 CPU workers under Slurm gave the bits of attrib-worker attribute;" \
  "a resubmission reused $job; $job2, cancelled at $units/400 units, resumed $resumed and" \
  "gave the bits again ($((SECONDS - t0)) s)"
