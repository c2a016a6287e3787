#!/usr/bin/env python3
"""The controller's module graph, as the compiler sees it.

Every controller/FOLDER/*.c is a module's file. For each one, `cc -MM`
lists the headers it really includes; a header under controller/OTHER/
is an edge FOLDER -> OTHER. The check fails when

  - a file includes another module's private header: a module's only
    public header is controller/OTHER/OTHER.h;
  - the edges between folders form a cycle.

With --dot it prints the graph (docs/architecture.md draws it).
Usage: module_graph.py [--dot] CC CFLAGS...
"""
import glob
import os
import subprocess
import sys


def headers(cc, cflags, src):
    out = subprocess.run([cc, *cflags, "-MM", src], check=True,
                         capture_output=True, text=True).stdout
    deps = out.replace("\\\n", " ").split(":", 1)[1].split()
    return [os.path.normpath(d) for d in deps if d.endswith(".h")]


def folder_of(path):
    parts = path.split(os.sep)
    if len(parts) >= 3 and parts[0] == "controller":
        return parts[1]
    return None


def find_cycle(edges):
    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if color.get(m) is None:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(edges):
        if color.get(n) is None:
            c = visit(n)
            if c:
                return c
    return None


def main():
    args = sys.argv[1:]
    dot = args and args[0] == "--dot"
    if dot:
        args = args[1:]
    cc, cflags = args[0], args[1:]
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    os.chdir(top)
    edges, problems = {}, []
    for src in sorted(glob.glob("controller/*/*.c")):
        me = folder_of(src)
        edges.setdefault(me, set())
        for h in headers(cc, cflags, src):
            other = folder_of(h)
            if other is None or other == me:
                continue
            if os.path.basename(h) != other + ".h":
                problems.append(f"{src} includes {h}, a private header of "
                                f"module '{other}' (its public header is "
                                f"controller/{other}/{other}.h)")
            edges[me].add(other)
    cycle = find_cycle(edges)
    if cycle:
        problems.append("the modules form a cycle: " + " -> ".join(cycle))
    if dot:
        print("digraph modules {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
    for p in problems:
        print("module graph: " + p)
    if not problems and not dot:
        print(f"module graph: {len(edges)} modules, "
              f"{sum(len(v) for v in edges.values())} edges, no cycle, "
              "no private header crossed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
