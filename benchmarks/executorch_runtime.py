"""ExecuTorch's Python runtime on this machine: what loading it costs through the public wrapper
(``executorch.runtime.Runtime.get()``, which imports the ``executorch.exir`` compiler stack) against the pybind module
the harness's adapter uses (``executorch.extension.pybindings._C``, the same C++ runtime), and whether the thread
setting reaches XNNPACK (a .pte's median latency at 1 and at 2 threads).

Each figure comes from a fresh process; the two sides alternate, ``--rounds`` times. Usage:
  python benchmarks/executorch_runtime.py PTE [--rounds 5] [--out benchmarks/results/executorch-runtime-DATE.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMPORTS = {
    "executorch.runtime (public wrapper)": "from executorch.runtime import Runtime; Runtime.get()",
    "pybindings._C (the harness's adapter)": "import torch; from executorch.extension.pybindings import _C",
}
CHILD = """
import resource, time
t = time.perf_counter()
{code}
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
LATENCY = """
import json, time, numpy as np, torch
from harness.runtimes import RuntimeOptions
from harness.runtimes.executorch_rt import ExecuTorchRuntime
from harness.types import Artifact
rt = ExecuTorchRuntime(RuntimeOptions(threads={threads}))
rt.load(Artifact(id="x", format="executorch", path={path!r}, bytes=0, model="m", variant="v", batch_size=1,
                 parent_id=None, recipe={{}}))
meta = __import__("harness.runtimes.executorch_rt", fromlist=["x"]).program_signature({path!r})
inputs = {{m["name"]: np.random.default_rng(0).standard_normal(m["shape"]).astype(m["dtype"]) for m in meta}}
for _ in range(20):
    rt.infer(inputs)
samples = []
for _ in range(200):
    t = time.perf_counter(); rt.infer(inputs); samples.append((time.perf_counter() - t) * 1e3)
print(json.dumps(sorted(samples)[len(samples) // 2]))
"""


def child(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return proc.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pte", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    imports: dict[str, dict[str, list[float]]] = {k: {"seconds": [], "peak_rss_mb": []} for k in IMPORTS}
    latency: dict[str, list[float]] = {"1": [], "2": []}
    for _ in range(args.rounds):
        for name, code in IMPORTS.items():
            seconds, rss = map(float, child(CHILD.format(code=code)).split())
            imports[name]["seconds"].append(seconds)
            imports[name]["peak_rss_mb"].append(rss)
        for threads in latency:
            latency[threads].append(float(child(LATENCY.format(threads=threads, path=str(args.pte)))))
    result = {
        "date": time.strftime("%Y-%m-%d"), "pte": str(args.pte), "rounds": args.rounds,
        "imports": {k: {**v, "median_seconds": statistics.median(v["seconds"]),
                        "median_peak_rss_mb": statistics.median(v["peak_rss_mb"])} for k, v in imports.items()},
        "latency_p50_ms_by_threads": {k: {"per_process": v, "median": statistics.median(v)} for k, v in latency.items()},
    }
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
