#!/usr/bin/env python3
"""Fails when a source file or function outgrows what one reader can hold.

- A file under a crate's `src/` may have at most 600 lines before its test module.
- A function (production code, not tests) may have at most 100 lines.

Long files and functions are where one idea gets written twice; split them along their own
seams instead (docs/architecture.md). Counted on the text: a function runs from its `fn` line
to its closing brace, found by brace matching outside strings, chars and comments.

    scripts/check-sizes.py [--list]    (--list prints the 10 longest functions too)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_LINES = 600
MAX_FN_LINES = 100
FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def code_only(line: str) -> str:
    """The line without string/char literals and comments, for brace counting."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


def production_lines(text: str) -> list:
    lines = text.split("\n")
    for i, l in enumerate(lines):
        if l.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines


def functions(lines: list):
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            c = code_only(lines[j])
            if not opened and ";" in c and "{" not in c:
                break  # a declaration without a body (trait method)
            depth += c.count("{") - c.count("}")
            opened = opened or "{" in c
            if opened and depth <= 0:
                yield m.group(1), i + 1, j - i + 1
                break
            j += 1
        i += 1


def main() -> int:
    bad, all_fns = [], []
    for f in sorted(ROOT.glob("*/src/**/*.rs")):
        if "target" in f.parts:
            continue
        rel = f.relative_to(ROOT)
        lines = production_lines(f.read_text())
        if len(lines) > MAX_FILE_LINES:
            bad.append(f"{rel}: {len(lines)} lines before its tests (at most {MAX_FILE_LINES})")
        for name, line, n in functions(lines):
            all_fns.append((n, f"{rel}:{line} {name}"))
            if n > MAX_FN_LINES:
                bad.append(f"{rel}:{line}: fn {name} has {n} lines (at most {MAX_FN_LINES})")
    if "--list" in sys.argv:
        for n, where in sorted(all_fns, reverse=True)[:10]:
            print(f"{n:5} {where}")
    for b in bad:
        print(f"check-sizes: {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
