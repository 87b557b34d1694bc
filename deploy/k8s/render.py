#!/usr/bin/env python3
"""Renders a kustomization under deploy/k8s/ without kubectl, for validate.sh.

It handles exactly what these kustomizations use, and refuses anything else:
  - `resources`: YAML files (any number of documents) and directories holding a kustomization;
  - `patches`: entries with only `path`, each a strategic-merge patch of one object, found by
    apiVersion, kind and metadata.name. Maps merge, a null deletes a key, lists of objects merge
    by their Kubernetes patch-merge key (containers, env, volumes by name, volumeMounts by
    mountPath, ports by containerPort/port), other lists (args, tolerations...) are replaced.
New items of a merged list come first, as kustomize 5 puts them. `kubectl kustomize DIR` gives
the same objects; validate.sh compares the two whenever kubectl is present.

  render.py DIR                   print DIR's rendered objects as a YAML stream
  render.py --compare A.yaml B.yaml   exit 1 unless both streams hold the same objects
"""
import copy
import os
import sys

import yaml

ALLOWED_KEYS = {"apiVersion", "kind", "resources", "patches"}
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# Field name -> patch-merge key, as in the Kubernetes API (x-kubernetes-patch-merge-key).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
}

# kustomize's legacy output order (kinds not listed come after, by name).
KIND_ORDER = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
    "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
    "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service", "LimitRange",
    "PriorityClass", "PersistentVolume", "PersistentVolumeClaim", "Deployment",
    "StatefulSet", "CronJob", "PodDisruptionBudget",
]
KIND_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class RenderError(Exception):
    pass


def object_id(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))


def show_id(oid):
    api, kind, ns, name = oid
    return f"{kind}/{name} ({api}{', namespace ' + ns if ns else ''})"


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def merge_key_for(field, items):
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports" and items and all(isinstance(i, dict) for i in items):
        return "containerPort" if all("containerPort" in i for i in items) else "port"
    return None


def strategic_merge(base, patch, where="", field=None):
    """The strategic-merge patch `patch` applied to `base` (neither is changed)."""
    if isinstance(patch, dict):
        for k in patch:
            if isinstance(k, str) and k.startswith("$"):
                raise RenderError(f"{where}: patch directive {k} is not supported by render.py")
        if not isinstance(base, dict):
            return {k: v for k, v in copy.deepcopy(patch).items() if v is not None}
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, f"{where}.{k}", k)
            else:
                out[k] = strategic_merge(None, v, f"{where}.{k}", k)
        return out
    if isinstance(patch, list):
        key = merge_key_for(field, patch)
        if key is None or not isinstance(base, list):
            return copy.deepcopy(patch)
        for item in patch + base:
            if not isinstance(item, dict) or key not in item:
                raise RenderError(f"{where}: every item of a merged list needs its key {key!r}")
        merged = [copy.deepcopy(b) for b in base]
        added = []
        for item in patch:
            idx = next((i for i, b in enumerate(merged) if b[key] == item[key]), None)
            if idx is None:
                added.append(strategic_merge(None, item, f"{where}[{item[key]}]"))
            else:
                merged[idx] = strategic_merge(merged[idx], item, f"{where}[{item[key]}]")
        return added + merged
    return copy.deepcopy(patch)


def find_kustomization(directory):
    for name in KUSTOMIZATION_NAMES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise RenderError(f"{directory}: no kustomization.yaml")


def render(directory):
    kpath = find_kustomization(directory)
    docs = load_yaml_docs(kpath)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise RenderError(f"{kpath}: expected one mapping")
    k = docs[0]
    unsupported = set(k) - ALLOWED_KEYS
    if unsupported:
        raise RenderError(
            f"{kpath}: {', '.join(sorted(unsupported))} not supported by render.py "
            "(it handles resources and patches only); render with `kubectl kustomize` instead"
        )
    if k.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{kpath}: kind {k.get('kind')} not supported by render.py")
    objects = []
    for res in k.get("resources") or []:
        p = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(p):
            objects.extend(render(p))
        elif os.path.isfile(p):
            objects.extend(load_yaml_docs(p))
        else:
            raise RenderError(f"{kpath}: resource {res} not found")
    seen = set()
    for obj in objects:
        oid = object_id(obj)
        if oid in seen:
            raise RenderError(f"{kpath}: {show_id(oid)} defined twice")
        seen.add(oid)
    for entry in k.get("patches") or []:
        if not isinstance(entry, dict) or set(entry) != {"path"}:
            raise RenderError(f"{kpath}: only `patches: - path: FILE` is supported by render.py, got {entry!r}")
        ppath = os.path.join(directory, entry["path"])
        pdocs = load_yaml_docs(ppath)
        if len(pdocs) != 1:
            raise RenderError(f"{ppath}: a patch file must hold exactly one object")
        patch = pdocs[0]
        pid = object_id(patch)
        matches = [i for i, o in enumerate(objects)
                   if object_id(o)[:2] == pid[:2] and object_id(o)[3] == pid[3]
                   and (pid[2] is None or object_id(o)[2] == pid[2])]
        if len(matches) != 1:
            raise RenderError(f"{ppath}: patch target {show_id(pid)} matches {len(matches)} objects")
        i = matches[0]
        objects[i] = strategic_merge(objects[i], patch, show_id(pid))
    return objects


def kind_rank(obj):
    kind = obj.get("kind")
    if kind in KIND_ORDER:
        return (0, KIND_ORDER.index(kind), "")
    if kind in KIND_LAST:
        return (2, KIND_LAST.index(kind), "")
    return (1, 0, kind or "")


def sort_objects(objects):
    return sorted(objects, key=lambda o: (kind_rank(o), (o.get("metadata") or {}).get("name") or ""))


def canonical(obj, field=None):
    """Objects with merge-keyed lists sorted by key, so that item order does not count."""
    if isinstance(obj, dict):
        return {k: canonical(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        items = [canonical(i) for i in obj]
        key = merge_key_for(field, items)
        if key and all(isinstance(i, dict) and key in i for i in items):
            items.sort(key=lambda i: str(i[key]))
        return items
    return obj


def compare(a_path, b_path):
    a = {object_id(o): canonical(o) for o in load_yaml_docs(a_path)}
    b = {object_id(o): canonical(o) for o in load_yaml_docs(b_path)}
    ok = True
    for oid in sorted(set(a) | set(b), key=lambda t: tuple(str(x) for x in t)):
        if oid not in a or oid not in b:
            print(f"  only in {a_path if oid in a else b_path}: {show_id(oid)}")
            ok = False
        elif a[oid] != b[oid]:
            print(f"  differs: {show_id(oid)}")
            ok = False
    return ok


def main(argv):
    if len(argv) == 3 and argv[0] == "--compare":
        return 0 if compare(argv[1], argv[2]) else 1
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        objects = sort_objects(render(argv[0]))
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, default_flow_style=False, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
