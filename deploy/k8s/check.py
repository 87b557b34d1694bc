#!/usr/bin/env python3
"""The checks of validate.sh that a schema cannot make: what the deployment must hold.

  check.py deploy BASE.yaml GPU.yaml [--help-dir DIR]
      the rendered base and GPU overlay: probes, tokens, model volume, security, resources,
      GPU request, metrics; with --help-dir, every --flag and ATTRIB_* variable used is one
      the binaries' --help lists (DIR holds coordinator.txt and worker-serve.txt)
  check.py servicemonitor MONITORING.yaml BASE.yaml [--crd CRD.yaml]
      the ServiceMonitor (a CRD, so no Kubernetes schema): the fields used, that it selects
      the coordinator's and the workers' Services and names their port; with --crd, also the
      CRD's own openAPIV3Schema (strict: no field it does not define)

Prints a FAIL line for each check that failed and one summary line per part (with -v first:
a line for every check); exits 1 if any failed.
"""
import os
import re
import sys

import yaml

SECRET = "attrib-tokens"
MODEL_DIR = "/models/gpt2"
VERBOSE = False
failures = 0
part = {"name": None, "ok": 0, "failed": 0}


def start_part(name):
    end_part()
    part.update(name=name, ok=0, failed=0)
    if VERBOSE:
        print(f"{name}:")


def end_part():
    if part["name"] is None:
        return
    n, f = part["ok"] + part["failed"], part["failed"]
    print(f"{'FAIL' if f else 'OK  '} checks {part['name']}: {n - f} of {n} passed")
    part["name"] = None


def report(ok, what, why=""):
    global failures
    part["ok" if ok else "failed"] += 1
    if not ok:
        failures += 1
    if VERBOSE or not ok:
        print(f"  {'OK  ' if ok else 'FAIL'} {what}{'' if ok or not why else ': ' + why}")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(objs, kind, name=None):
    found = [o for o in objs if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def flag(args, name):
    """The value of --name=V or --name V in args, else None."""
    for i, a in enumerate(args):
        if a == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def port_of(addr):
    return int(addr.rsplit(":", 1)[1]) if addr and ":" in addr else None


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def container(obj, name):
    cs = [c for c in pod_spec(obj)["containers"] if c["name"] == name]
    return cs[0] if cs else None


def env_map(c):
    return {e["name"]: e for e in c.get("env") or []}


def secret_ref(env_entry):
    ref = ((env_entry or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    return ref.get("name"), ref.get("key")


def matches(selector, labels):
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        val = labels.get(e["key"])
        op = e["operator"]
        if op == "In" and val not in e.get("values", []):
            return False
        if op == "NotIn" and val in e.get("values", []):
            return False
        if op == "Exists" and e["key"] not in labels:
            return False
        if op == "DoesNotExist" and e["key"] in labels:
            return False
    return True


def check_common(label, objs, helps):
    """Checks that hold for the base and the GPU overlay alike; returns the worker container
    and Deployment."""
    start_part(label)
    sts = find(objs, "StatefulSet", "attrib-coordinator")
    svc = find(objs, "Service", "attrib-coordinator")
    dep = find(objs, "Deployment", "attrib-worker")
    report(sts is not None, "coordinator StatefulSet attrib-coordinator")
    report(svc is not None, "coordinator Service attrib-coordinator")
    report(dep is not None, "worker Deployment attrib-worker")
    if not (sts and svc and dep):
        return None
    report(not [o for o in objs if o.get("kind") == "Secret"], "no Secret in the manifests (created by hand)")
    report(sts["spec"].get("replicas") == 1, "coordinator: exactly one replica")
    co = container(sts, "coordinator")
    wo = container(dep, "worker")
    cargs, wargs = co.get("args") or [], wo.get("args") or []
    report(co.get("command") == ["attrib-coordinator"], "coordinator runs attrib-coordinator")
    report(wo.get("command") == ["attrib-worker", "serve"], "worker runs attrib-worker serve")

    # gRPC port, probes, Service.
    listen = flag(cargs, "listen")
    gport = port_of(listen)
    report(listen is not None and listen.startswith("0.0.0.0:"), "coordinator --listen 0.0.0.0:PORT", f"got {listen}")
    cports = {p.get("name"): p["containerPort"] for p in co.get("ports") or []}
    report(cports.get("grpc") == gport, f"coordinator container port grpc = {gport}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = co.get(probe) or {}
        report((p.get("grpc") or {}).get("port") == gport, f"coordinator {probe} is a native gRPC probe on {gport}",
               f"got {p}")
    sp = co.get("startupProbe") or {}
    budget = sp.get("failureThreshold", 3) * sp.get("periodSeconds", 10)
    report(budget >= 300, "coordinator startupProbe allows >= 300 s for model loading", f"{budget} s")
    sports = {p.get("name"): p for p in svc["spec"]["ports"]}
    report("grpc" in sports and sports["grpc"]["port"] == gport, f"Service attrib-coordinator serves grpc {gport}")
    report(matches({"matchLabels": svc["spec"]["selector"]}, sts["spec"]["template"]["metadata"]["labels"]),
           "Service selects the coordinator pod")
    coord_url = flag(wargs, "coordinator")
    report(coord_url == f"http://attrib-coordinator:{gport}", "worker --coordinator is the Service's gRPC port",
           f"got {coord_url}")

    # Database on the claim template's volume.
    db = flag(cargs, "db") or ""
    vct = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []]
    mounts = {m["mountPath"]: m for m in co.get("volumeMounts") or []}
    db_mount = [m for path, m in mounts.items() if db.startswith(path.rstrip("/") + "/")]
    report(bool(db_mount) and db_mount[0]["name"] in vct and not db_mount[0].get("readOnly"),
           "coordinator --db lies on a volumeClaimTemplates volume", f"--db {db}, templates {vct}")

    # Tokens: from the Secret, never on a command line.
    for who, c in (("coordinator", co), ("worker", wo)):
        line = " ".join((c.get("command") or []) + (c.get("args") or []))
        report(not re.search(r"--(worker-)?token\b", line), f"{who}: no token on the command line")
        literal = [e["name"] for e in c.get("env") or [] if "TOKEN" in e["name"] and "value" in e]
        report(not literal, f"{who}: no literal token in env", str(literal))
    cenv, wenv = env_map(co), env_map(wo)
    report(secret_ref(cenv.get("ATTRIB_TOKEN")) == (SECRET, "client-token"),
           f"coordinator ATTRIB_TOKEN from Secret {SECRET} key client-token")
    report(secret_ref(cenv.get("ATTRIB_WORKER_TOKEN")) == (SECRET, "worker-token"),
           f"coordinator ATTRIB_WORKER_TOKEN from Secret {SECRET} key worker-token")
    report(secret_ref(wenv.get("ATTRIB_WORKER_TOKEN")) == (SECRET, "worker-token"),
           f"worker ATTRIB_WORKER_TOKEN from Secret {SECRET} key worker-token")

    # Model, read-only; security; resources; metrics.
    for who, obj, c, args in (("coordinator", sts, co, cargs), ("worker", dep, wo, wargs)):
        m = {x["mountPath"]: x for x in c.get("volumeMounts") or []}.get(MODEL_DIR)
        vols = {v["name"]: v for v in pod_spec(obj).get("volumes") or []}
        report(flag(args, "model") == MODEL_DIR and m is not None and m.get("readOnly") is True
               and m["name"] in vols, f"{who}: --model {MODEL_DIR} from a read-only volume")
        psc = pod_spec(obj).get("securityContext") or {}
        csc = c.get("securityContext") or {}
        report(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001
               and csc.get("allowPrivilegeEscalation") is False,
               f"{who}: non-root (uid 10001), no privilege escalation")
        for cc in pod_spec(obj)["containers"]:
            r = cc.get("resources") or {}
            ok = all(k in (r.get("requests") or {}) and k in (r.get("limits") or {}) for k in ("cpu", "memory"))
            report(ok, f"{who}: container {cc['name']} has cpu/memory requests and limits")
        ann = obj["spec"]["template"]["metadata"].get("annotations") or {}
        mport = port_of(flag(args, "metrics-listen"))
        cp = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        report(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(mport)
               and ann.get("prometheus.io/path") == "/metrics" and cp.get("metrics") == mport,
               f"{who}: --metrics-listen :{mport}, port `metrics` and prometheus.io annotations agree")
    report(sports.get("metrics", {}).get("port") == port_of(flag(cargs, "metrics-listen")),
           "Service attrib-coordinator serves the metrics port")
    wsvc = find(objs, "Service", "attrib-worker-metrics")
    report(wsvc is not None and any(p.get("name") == "metrics" for p in wsvc["spec"]["ports"])
           and matches({"matchLabels": wsvc["spec"]["selector"]}, dep["spec"]["template"]["metadata"]["labels"]),
           "Service attrib-worker-metrics selects the workers' metrics port")
    pdbs = [o for o in objs if o.get("kind") == "PodDisruptionBudget"]
    report(any(matches(p["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]) for p in pdbs),
           "a PodDisruptionBudget covers the workers")

    # Flags and variables the binaries really have.
    if helps:
        for who, c, text in (("coordinator", co, helps["coordinator"]), ("worker", wo, helps["worker"])):
            flags = [a.split("=", 1)[0] for a in c.get("args") or [] if a.startswith("--")]
            unknown = [f for f in flags if not re.search(re.escape(f) + r"[ =<\n]", text)]
            report(not unknown, f"{who}: every flag is in its --help ({' '.join(flags)})", f"unknown {unknown}")
            names = [e["name"] for e in c.get("env") or [] if e["name"].startswith("ATTRIB_")]
            unknown = [n for n in names if f"[env: {n}" not in text]
            report(not unknown, f"{who}: every ATTRIB_* variable is in its --help ({' '.join(names)})",
                   f"unknown {unknown}")
    return wo, dep


def gpu_limit(c):
    return str(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu"))


def check_deploy(base_path, gpu_path, help_dir):
    helps = None
    if help_dir:
        helps = {}
        for key, fname in (("coordinator", "coordinator.txt"), ("worker", "worker-serve.txt")):
            with open(os.path.join(help_dir, fname), encoding="utf-8") as f:
                helps[key] = f.read()
    base, gpu = load(base_path), load(gpu_path)
    r = check_common("base (CPU workers)", base, helps)
    if r:
        wo, _ = r
        report(flag(wo.get("args") or [], "device") == "cpu", "worker --device cpu")
        report("nvidia.com/gpu" not in yaml.safe_dump(base), "no GPU requested anywhere")
        report(wo.get("image") == "attrib:cpu", "worker image attrib:cpu", wo.get("image"))
    r = check_common("overlays/gpu (one GPU per worker)", gpu, helps)
    if r:
        wo, dep = r
        spec = pod_spec(dep)
        report(flag(wo.get("args") or [], "device") == "cuda:0", "worker --device cuda:0")
        report(gpu_limit(wo) == "1", "worker limits nvidia.com/gpu: 1", gpu_limit(wo))
        report(wo.get("image") == "attrib:cuda", "worker image attrib:cuda", wo.get("image"))
        shm = {m["mountPath"]: m["name"] for m in wo.get("volumeMounts") or []}.get("/dev/shm")
        vol = {v["name"]: v for v in spec.get("volumes") or []}.get(shm) or {}
        report((vol.get("emptyDir") or {}).get("medium") == "Memory", "/dev/shm is an in-memory emptyDir")
        report(any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or []),
               "tolerates nvidia.com/gpu taints")
        sts = find(gpu, "StatefulSet", "attrib-coordinator")
        report("nvidia.com/gpu" not in yaml.safe_dump(sts), "coordinator requests no GPU")


def strictify(schema):
    """additionalProperties: false wherever an object lists its properties (what --strict does)."""
    if isinstance(schema, dict):
        out = {k: strictify(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strictify(s) for s in schema]
    return schema


# The ServiceMonitor fields these manifests may use, checked when no CRD schema is given.
SM_SPEC_FIELDS = {"selector", "endpoints", "namespaceSelector", "jobLabel"}
SM_ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "scheme"}


def check_servicemonitor(mon_path, base_path, crd_path):
    start_part("monitoring (ServiceMonitor)")
    objs, base = load(mon_path), load(base_path)
    sm = find(objs, "ServiceMonitor")
    report(sm is not None and sm.get("apiVersion") == "monitoring.coreos.com/v1",
           "one ServiceMonitor, monitoring.coreos.com/v1")
    if not sm:
        return
    spec = sm.get("spec") or {}
    report(set(spec) <= SM_SPEC_FIELDS, f"spec uses only {sorted(SM_SPEC_FIELDS)}", str(sorted(spec)))
    eps = spec.get("endpoints") or []
    report(bool(eps) and all(set(e) <= SM_ENDPOINT_FIELDS for e in eps),
           f"endpoints use only {sorted(SM_ENDPOINT_FIELDS)}")
    for name in ("attrib-coordinator", "attrib-worker-metrics"):
        svc = find(base, "Service", name)
        ok = svc is not None and matches(spec.get("selector") or {}, svc["metadata"].get("labels") or {})
        names = {p.get("name") for p in (svc or {}).get("spec", {}).get("ports", [])}
        report(ok and all(e.get("port") in names for e in eps),
               f"selects Service {name} and names one of its ports")
    if crd_path:
        import jsonschema

        crd = find(load(crd_path), "CustomResourceDefinition")
        versions = [v for v in (crd or {}).get("spec", {}).get("versions", []) if v.get("name") == "v1"]
        if not versions or (crd["spec"].get("names") or {}).get("kind") != "ServiceMonitor":
            report(False, f"{crd_path} is the ServiceMonitor CRD with a v1 version")
            return
        schema = strictify(versions[0]["schema"]["openAPIV3Schema"])
        errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(sm), key=lambda e: list(e.path))
        report(not errors, f"valid against the CRD's v1 openAPIV3Schema ({crd_path}, strict)",
               "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))


def main(argv):
    global VERBOSE
    if argv[:1] == ["-v"]:
        VERBOSE, argv = True, argv[1:]
    option = {"deploy": "--help-dir", "servicemonitor": "--crd"}.get(argv[0] if argv else None)
    if not option or len(argv) not in (3, 5) or (len(argv) == 5 and argv[3] != option):
        print(__doc__, file=sys.stderr)
        return 2
    extra = argv[4] if len(argv) == 5 else None
    if argv[0] == "deploy":
        check_deploy(argv[1], argv[2], extra)
    else:
        check_servicemonitor(argv[1], argv[2], extra)
    end_part()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
