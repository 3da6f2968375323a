#!/usr/bin/env python3
"""check_layers.py [ROOT]: hold every #include "..." of the project against
the layer table of docs/architecture.md.

Each source file (.c, .h, .cu under the layer folders) belongs to the row
whose path is the longest prefix of its own; every project include it makes
must name an existing file of a layer its row allows. Also refused: an
include between runtime/cpu/ and runtime/cuda/, an include by a shipped file
(Makefile SHIP) of a file that is not shipped, a file no row covers, and a
cycle between layers (folders), in the includes or in the table. Prints one line per
violation and exits 1 if there is any; else prints a summary and exits 0.
"""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
root = os.path.abspath(root)


def read(path):
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        return f.read()


def table():
    """layer -> (paths, allowed) from docs/architecture.md."""
    rows = {}
    text = read("docs/architecture.md")
    part = text.split("## Layers and what each may include", 1)[1]
    for line in part.splitlines():
        m = re.match(r"^\|\s*([a-z]+)\s*\|\s*([^|]+)\|\s*([^|]+)\|\s*$", line)
        if not m or m.group(1) == "layer":
            continue
        rows[m.group(1)] = (m.group(2).split(), set(m.group(3).split()))
    return rows


def shipped():
    """The SHIP list of the Makefile, expanded."""
    mk = read("Makefile")
    m = re.search(r"^SHIP\s*:=(.*?)(?:\n(?!\s)|\Z)", mk, re.S | re.M)
    out = set()
    # expand $(sort $(wildcard a b)) and plain words
    text = m.group(1).replace("\\\n", " ")
    for pats in re.findall(r"\$\(wildcard ([^)]*)\)", text):
        for pat in pats.split():
            out.update(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pat)))
    text = re.sub(r"\$\([^()]*(\([^()]*\))?[^()]*\)", " ", text)
    out.update(w for w in text.split() if "/" in w)
    return out


def main():
    rows = table()
    ship = shipped()
    files = []
    for top in ("runtime", "gen", "db", "tuner", "templates", "tests", "bench"):
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                if n.endswith((".c", ".h", ".cu")):
                    files.append(os.path.relpath(os.path.join(d, n), root))

    def layer_of(path):
        best, blen = None, -1
        for name, (paths, _) in rows.items():
            for p in paths:
                if (path == p or (p.endswith("/") and path.startswith(p))) and len(p) > blen:
                    best, blen = name, len(p)
        return best

    bad = []
    edges = {}
    checked = 0
    for f in sorted(files):
        if "/fuzz/corpus/" in f or "/fuzz/crashes/" in f:
            continue
        lay = layer_of(f)
        if lay is None:
            bad.append(f"{f}: no layer of docs/architecture.md covers it")
            continue
        for i, line in enumerate(read(f).splitlines(), 1):
            m = re.match(r'^\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            inc = m.group(1)
            checked += 1
            where = f"{f}:{i}: #include \"{inc}\""
            if inc == "mta.h" and f == "tests/export/prog.c":
                continue  # a user program of an exported library (-I<library>)
            if not os.path.isfile(os.path.join(root, inc)):
                bad.append(f"{where}: no such file from the top (includes name their folder)")
                continue
            il = layer_of(inc)
            if il is None:
                bad.append(f"{where}: the included file belongs to no layer")
                continue
            if il != lay and il not in rows[lay][1]:
                bad.append(f"{where}: layer {lay} may not include layer {il}")
            if {lay, il} == {"cpu", "cuda"}:
                bad.append(f"{where}: the cpu and cuda backends never include each other")
            if f in ship and inc not in ship:
                bad.append(f"{where}: a shipped file includes one that is not shipped")
            if il != lay:
                edges.setdefault(lay, set()).add(il)

    # a cycle between layers, in the includes made or in the table itself
    graph = {k: set(v) for k, v in edges.items()}
    for name, (_, allowed) in rows.items():
        graph.setdefault(name, set()).update(a for a in allowed if a != name)
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                bad.append("layer cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            elif not state.get(m):
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if not state.get(n):
            visit(n)
    for b in bad:
        print(b)
    print(f"layers: {len(files)} files, {checked} includes, {len(bad)} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
