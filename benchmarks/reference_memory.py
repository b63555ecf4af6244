"""Peak memory of the fp32 reference for CycleGAN's 256×256 ResNet generator (a benchmark, not a test): 64 samples
(the default ``fidelity_samples``) in one call, as the prepare step computed them before, against
``harness.prepare.artifacts.run_in_chunks`` (8 per call). Each in a fresh process; ru_maxrss after the call.

Usage: python benchmarks/reference_memory.py   (prints JSON; raw output: benchmarks/results/reference-memory-*.json)
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np, torch
from cyclegan_resnet import ResnetGenerator
from harness.prepare.artifacts import run_in_chunks
model = ResnetGenerator().eval()
x = np.random.default_rng(0).uniform(-1, 1, (64, 3, 256, 256)).astype(np.float32)
start = time.perf_counter()
chunk = 64 if sys.argv[1] == "one call" else 8
(out,) = run_in_chunks(model, [x], chunk=chunk)
print(json.dumps({"how": sys.argv[1], "samples_per_call": chunk, "seconds": round(time.perf_counter() - start, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def main() -> None:
    found = []
    for how in ("one call", "chunks of 8"):
        done = subprocess.run([sys.executable, "-c", CHILD, how, str(ROOT / "benchmarks" / "models")],
                              capture_output=True, text=True, cwd=ROOT, timeout=900)
        found.append(json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1]))
        print(found[-1], file=sys.stderr)
    out = ROOT / "benchmarks" / "results" / f"reference-memory-{datetime.now():%Y%m%d}.json"
    out.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "runs": found}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
