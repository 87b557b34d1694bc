#!/usr/bin/env bash
# Validates deploy/k8s offline: renders the base, the GPU overlay and the monitoring extra,
# checks every rendered object against the Kubernetes schemas (kubernetes-validate --strict),
# then checks what the deployment must hold (check.py). Exits non-zero on any failure.
#
#   deploy/k8s/validate.sh
#
# Environment:
#   K8S_VERSIONS       Kubernetes versions to validate against (default "1.34.0 1.37.0")
#   K8S_VENV           venv for kubernetes-validate (default target/k8s-venv; made if missing)
#   ATTRIB_BIN_DIR     where attrib-coordinator and attrib-worker are, to check every flag and
#                      ATTRIB_* variable against their --help (default target/release; skipped
#                      with a note when absent)
#   SERVICEMONITOR_CRD the ServiceMonitor CRD as YAML (e.g. `kubectl get crd
#                      servicemonitors.monitoring.coreos.com -o yaml` from a cluster with the
#                      Prometheus Operator) to validate the ServiceMonitor against its schema;
#                      without it only its structure is checked
#   VERBOSE=1          a line for every check.py check, not only failures
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${K8S_VENV:-$repo/target/k8s-venv}
versions=${K8S_VERSIONS:-1.34.0 1.37.0}
bin_dir=${ATTRIB_BIN_DIR:-$repo/target/release}
kv_pin=1.37.0 # kubernetes-validate: its schemas cover Kubernetes 1.x up to 1.37
out=$repo/target/k8s-rendered
fails=0

fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# 1. kubernetes-validate in its own venv (idempotent).
if [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$kv_pin" ]]; then
    echo "installing kubernetes-validate==$kv_pin into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check \
        "kubernetes-validate==$kv_pin" || { echo "FAIL cannot install kubernetes-validate"; exit 1; }
fi
py=$venv/bin/python
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version), Kubernetes versions: $versions"

# 2. Render. render.py handles exactly what these kustomizations use; where kubectl is
#    present, `kubectl kustomize` renders too and the two must give the same objects.
rm -rf "$out" && mkdir -p "$out"
kubectl_ok=
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
    kubectl_ok=$(kubectl version --client -o json 2>/dev/null | "$py" -c \
        'import json,sys; v=json.load(sys.stdin); print(v["clientVersion"]["gitVersion"], "kustomize", v.get("kustomizeVersion", "?"))' 2>/dev/null || echo "present")
fi
targets=(base overlays/gpu monitoring)
for t in "${targets[@]}"; do
    f=$out/${t//\//-}.yaml
    if ! "$py" "$here/render.py" "$here/$t" >"$f"; then
        fail "render $t"
        continue
    fi
    n=$(grep -c '^kind:' "$f")
    n="$n object$([[ $n == 1 ]] || echo s)"
    if [[ -n $kubectl_ok ]]; then
        if ! kubectl kustomize "$here/$t" >"${f%.yaml}.kubectl.yaml" 2>"$out/kubectl.err"; then
            fail "render $t: kubectl kustomize failed: $(cat "$out/kubectl.err")"
        elif "$py" "$here/render.py" --compare "$f" "${f%.yaml}.kubectl.yaml"; then
            echo "OK   render $t: $n; render.py and kubectl kustomize ($kubectl_ok) agree"
        else
            fail "render $t: render.py and kubectl kustomize differ (above)"
        fi
    else
        echo "OK   render $t: $n (render.py; no kubectl here to cross-check)"
    fi
done

# 3. Schemas. Every object of base and overlays/gpu is a core kind and must pass; the
#    ServiceMonitor is a CRD that kubernetes-validate has no schema for (checked in step 4).
validate() { # FILE VERSION: one line per object
    local file=$1 version=$2 rc lines
    lines=$(cd "$out" && "$venv/bin/kubernetes-validate" --strict -k "$version" "${file#"$out"/}" 2>&1)
    rc=$?
    while IFS= read -r line; do
        [[ -z $line ]] && continue
        case $line in
        INFO*) echo "OK   ${line#INFO }" ;;
        *"Couldn't find schema for kind ServiceMonitor"*)
            echo "SKIP ${line#WARN } (a CRD: see the ServiceMonitor checks below)" ;;
        *) fail "${line#ERROR }" ;;
        esac
    done <<<"$lines"
    [[ $rc -eq 0 ]] || [[ $lines == *ERROR* ]] || fail "kubernetes-validate $file exited $rc"
}
for v in $versions; do
    for t in "${targets[@]}"; do
        f=$out/${t//\//-}.yaml
        [[ -s $f ]] && validate "$f" "$v"
    done
done

# 4. What the deployment must hold: gRPC probes, tokens from the Secret, the model read-only,
#    non-root, requests and limits, nvidia.com/gpu in the GPU overlay, metrics; every flag and
#    variable one the binaries know.
help_args=()
if [[ -x $bin_dir/attrib-coordinator && -x $bin_dir/attrib-worker ]]; then
    mkdir -p "$out/help"
    "$bin_dir/attrib-coordinator" --help >"$out/help/coordinator.txt" &&
        "$bin_dir/attrib-worker" serve --help >"$out/help/worker-serve.txt" &&
        help_args=(--help-dir "$out/help") || fail "running $bin_dir binaries' --help"
else
    echo "SKIP flags and variables against --help: no attrib-coordinator/attrib-worker in $bin_dir"
fi
v=()
[[ ${VERBOSE:-} == 1 ]] && v=(-v)
"$py" "$here/check.py" "${v[@]}" deploy "$out/base.yaml" "$out/overlays-gpu.yaml" "${help_args[@]}" ||
    fail "check.py deploy"
crd_args=()
if [[ -n ${SERVICEMONITOR_CRD:-} ]]; then
    crd_args=(--crd "$SERVICEMONITOR_CRD")
else
    echo "SKIP ServiceMonitor against its CRD schema: set SERVICEMONITOR_CRD to the CRD's YAML"
fi
"$py" "$here/check.py" "${v[@]}" servicemonitor "$out/monitoring.yaml" "$out/base.yaml" "${crd_args[@]}" ||
    fail "check.py servicemonitor"

if ((fails)); then
    echo "validate.sh: $fails failure(s)"
    exit 1
fi
echo "validate.sh: all passed (rendered objects in ${out#"$repo"/})"
