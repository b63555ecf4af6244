"""What a lookup imports, and the import cycles of the package (a benchmark of the code's shape, not a test).

Run with a checkout first on the path to measure that checkout (``PYTHONPATH=/path/to/checkout python
benchmarks/import_footprint.py``). Prints one JSON line:

- ``torch_artifact``: the harness modules imported by looking up the PyTorch runtime and the channel-pruning
  compressor (what loading a channel-pruned torch artifact needs), and which compress / runtime modules those are;
- ``onnx_runtime``: the same for an ONNX worker's runtime lookup alone (a fresh process each);
- ``cycles``: strongly connected groups of ``harness`` modules importing each other, imports inside functions
  counted, read from the source with ``ast``.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

LOOKUPS = {
    "torch_artifact": "from harness.runtimes import runtime_class; runtime_class('torch'); "
                      "from harness.compress import compressor; compressor('prune-channels')",
    "onnx_runtime": "from harness.runtimes import runtime_class; runtime_class('onnxruntime')",
}
REPORT = ("import sys, json; mods = sorted(m for m in sys.modules if m.startswith('harness')); "
          "print(json.dumps({'modules': len(mods), 'compress': [m for m in mods if m.startswith('harness.compress.')], "
          "'runtimes': [m for m in mods if m.startswith('harness.runtimes.')]}))")


def lookups() -> dict:
    out = {}
    for name, code in LOOKUPS.items():
        proc = subprocess.run([sys.executable, "-c", f"{code}; {REPORT}"], capture_output=True, text=True, timeout=300,
                              cwd="/")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else proc.stderr[-300:]
    return out


def cycles(package: Path) -> list[list[str]]:
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {resolve(f) for f in found if f.startswith("harness")} - {name, ""}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return groups


if __name__ == "__main__":
    import harness

    package = Path(harness.__file__).parent
    print(json.dumps({"checkout": str(package.parent), **lookups(), "cycles": cycles(package)}))
