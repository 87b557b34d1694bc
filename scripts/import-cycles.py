#!/usr/bin/env python3
"""Fails when a crate's top-level modules import each other in a circle.

A module here is a crate's top-level module (`src/store.rs`, or `src/group/` with everything
under it); `use crate::a::...` or `crate::a::` in module b is an edge b -> a. A circle between
two modules means neither can be read, tested or replaced without the other, so every crate's
module graph must be acyclic. Parent and child modules (`super::`) are one module here.

    scripts/import-cycles.py [CRATE_DIR ...]   (default: every workspace crate)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ["proto", "datasets", "worker", "coordinator", "client", "render", "sim", "fuzz", "tests"]


def top_module(src: Path, f: Path) -> str:
    rel = f.relative_to(src).parts
    name = rel[0][:-3] if rel[0].endswith(".rs") else rel[0]
    return name


def edges(src: Path) -> dict:
    graph = {}
    for f in src.rglob("*.rs"):
        if f.name in ("main.rs", "lib.rs") and f.parent == src:
            continue
        if "bin" in f.relative_to(src).parts[:1]:
            continue
        a = top_module(src, f)
        text = f.read_text()
        # Test modules may reach anywhere.
        text = text.split("#[cfg(test)]")[0]
        text = re.sub(r"//[^\n]*", "", text)  # comments name modules without using them
        targets = set(re.findall(r"\bcrate::(\w+)", text))
        for group in re.findall(r"\buse crate::\{([^;]*)\}", text, re.S):
            targets |= set(re.findall(r"(?:^|[,{\s])(\w+)(?:::|\s*[,}]|$)", group))
        graph.setdefault(a, set()).update(t for t in targets if t != a)
    return graph


def cycles(graph: dict) -> list:
    found, state = [], {}

    def visit(n, path):
        state[n] = "open"
        for m in sorted(graph.get(n, ())):
            if m not in graph:
                continue  # a re-exported item, not a module
            if state.get(m) == "open":
                found.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found


def main() -> int:
    crates = sys.argv[1:] or CRATES
    bad = 0
    for c in crates:
        src = ROOT / c / "src"
        if not src.is_dir():
            continue
        for cyc in cycles(edges(src)):
            print(f"import-cycles: {c}: {' -> '.join(cyc)}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
