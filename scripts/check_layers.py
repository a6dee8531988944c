#!/usr/bin/env python3
"""check_layers.py: does src/ keep its layers? (docs/architecture.md, "Layers")

    scripts/check_layers.py BUILD_DIR [--strict] [--graph]

Reads the call graph of memrelay_core and main.c from the object files in
BUILD_DIR (`nm -P`: each undefined symbol is matched to the object that
defines it) and the `#include "memrelay/..."` lines of src/ and
include/memrelay/, and checks them against the layer order:

  1. a file calls functions of its own layer or of lower ones only, and never
     names a function of a higher layer (main.c is exempt: it wires the
     layers together and installs the hook tables);
  2. a file includes headers of its own layer or lower ones only;
  3. no cycle of calls crosses layers, and none inside a layer spans more
     than 3 files.

Calls to static inline functions leave no symbol, so rule 2 is what covers
them. A header's layer is its first line's "Layer: NAME", else the layer of
the folder of the .c file with the same name.

The layer order is src/LAYERS (one layer a line, lowest first); a source's
layer is its folder (src/core/backend.c is in core); src/main.c is above
them all.

Report mode prints what it finds and exits 0. --strict exits 1 on any
violation. --graph also prints every file-to-file call edge.
"""
import collections
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
INCLUDE = os.path.join(ROOT, "include", "memrelay")
MAX_INTRA_CYCLE = 3


def load_layers():
    """Layer names, lowest first: src/LAYERS, one a line ('#' starts a comment)."""
    order = []
    with open(os.path.join(SRC, "LAYERS")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                order.append(line)
    return order


ORDER = load_layers()
RANK = {name: i for i, name in enumerate(ORDER)}


def layer_of_source(rel):
    """rel: a path under src/, e.g. "core/backend.c": its folder is its layer."""
    if rel == "main.c":
        return "main"
    if "/" in rel and rel.split("/", 1)[0] in RANK:
        return rel.split("/", 1)[0]
    return "?"


def source_files():
    """Every .c and .h under src/, as paths relative to src/."""
    out = []
    for dp, _, fs in os.walk(SRC):
        for f in fs:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(dp, f), SRC))
    return sorted(out)


def header_layers(sources):
    """include/memrelay/x.h (as "memrelay/x.h") and private src headers -> layer."""
    by_base = {}
    for rel in sources:
        if rel.endswith(".c"):
            by_base[os.path.basename(rel)[:-2]] = layer_of_source(rel)
    layers = {}
    for f in sorted(os.listdir(INCLUDE)):
        if not f.endswith(".h"):
            continue
        with open(os.path.join(INCLUDE, f)) as fh:
            first = fh.readline()
        m = re.search(r"Layer:\s*([a-z]+)", first)
        layers["memrelay/" + f] = m.group(1) if m else by_base.get(f[:-2], "?")
    for rel in sources:
        if rel.endswith(".h"):
            layers[rel] = layer_of_source(rel)
    return layers


def include_edges(sources, hlayers):
    """(file, its layer, included header, header's layer) for every quote include."""
    edges = []
    files = [("src/" + rel, os.path.join(SRC, rel), layer_of_source(rel)) for rel in sources]
    files += [("include/" + h, os.path.join(ROOT, "include", h), hlayers[h]) for h in hlayers if h.startswith("memrelay/")]
    for shown, path, layer in files:
        here = os.path.dirname(os.path.relpath(path, SRC)) if shown.startswith("src/") else None
        with open(path) as fh:
            for line in fh:
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if not m:
                    continue
                inc = m.group(1)
                if not inc.startswith("memrelay/") and here is not None:
                    inc = os.path.normpath(os.path.join(here, inc))
                edges.append((shown, layer, inc, hlayers.get(inc, "?")))
    return edges


def objects(build):
    """src-relative source name -> object path, for memrelay_core and main.c."""
    out = {}
    for target in ("memrelay_core.dir", "memrelay.dir"):
        base = os.path.join(build, "CMakeFiles", target)
        for dp, _, fs in os.walk(base):
            for f in fs:
                if f.endswith(".c.o"):
                    path = os.path.join(dp, f)
                    rel = os.path.relpath(path, base)
                    if "src/" not in rel:
                        continue
                    name = rel.split("src/", 1)[1][:-2]
                    # A build directory keeps the objects of sources since
                    # moved or deleted: only today's sources count.
                    if os.path.exists(os.path.join(SRC, name)):
                        out[name] = path
    return out


def call_graph(objs):
    defs, undef = {}, {}
    for name, path in sorted(objs.items()):
        syms = set()
        res = subprocess.run(["nm", "-P", path], capture_output=True, text=True, check=True)
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            sym, typ = parts[0], parts[1]
            if typ == "U":
                syms.add(sym)
            elif typ in "TDBRCVW":
                defs.setdefault(sym, name)
        undef[name] = syms
    edges = collections.defaultdict(lambda: collections.defaultdict(set))
    for name, syms in undef.items():
        for s in syms:
            if s in defs and defs[s] != name:
                edges[name][defs[s]].add(s)
    return list(undef), edges


def sccs(nodes, edges):
    """Strongly connected components with more than one file (iterative Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            pushed = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, {})))))
                    pushed = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if pushed:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out, key=lambda c: (-len(c), c))


def upward(from_layer, to_layer):
    if from_layer == "main" or to_layer in ("main", "?") or from_layer == "?":
        return False
    return RANK.get(to_layer, -1) > RANK.get(from_layer, -1)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    strict, graph = "--strict" in argv, "--graph" in argv
    if len(args) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    build = args[0]
    objs = objects(build)
    if not objs:
        print(f"check_layers: no object files under {build}/CMakeFiles (build first)", file=sys.stderr)
        return 2
    sources = source_files()
    problems = 0

    unknown = sorted(rel for rel in sources if rel.endswith(".c") and layer_of_source(rel) == "?")
    for rel in unknown:
        problems += 1
        print(f"NOLAYER src/{rel}: not in a folder src/LAYERS names")

    nodes, edges = call_graph(objs)
    up_calls = 0
    for f in sorted(edges):
        for g in sorted(edges[f]):
            lf, lg = layer_of_source(f), layer_of_source(g)
            if graph:
                print(f"edge {f} ({lf}) -> {g} ({lg}): {', '.join(sorted(edges[f][g]))}")
            if upward(lf, lg):
                up_calls += 1
                print(f"UP   {f} ({lf}) -> {g} ({lg}): {', '.join(sorted(edges[f][g]))}")

    hlayers = header_layers(sources)
    up_includes = 0
    for shown, lf, inc, li in include_edges(sources, hlayers):
        if li == "?":
            continue
        if upward(lf, li):
            up_includes += 1
            print(f"UPINC {shown} ({lf}) includes {inc} ({li})")

    bad_cycles = 0
    comps = sccs(nodes, edges)
    for comp in comps:
        cross = len({layer_of_source(f) for f in comp}) > 1
        bad = cross or len(comp) > MAX_INTRA_CYCLE
        bad_cycles += bad
        what = "across layers" if cross else f"in {layer_of_source(comp[0])}"
        print(f"{'CYCLE' if bad else 'cycle'} {len(comp)} files {what}: {' '.join(comp)}")

    problems += up_calls + up_includes + bad_cycles
    print(f"check_layers: {len(nodes)} files, {up_calls} upward call edges, {up_includes} upward includes, "
          f"{len(comps)} cycles ({bad_cycles} not allowed){' [strict]' if strict else ' [report]'}")
    return 1 if strict and problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
