"""Channel pruning of attention UNets: seconds and peak memory of ``thinner_network`` (a benchmark, not a test).

Each case runs in a child process capped at ``--cap-gib`` GiB of address space (RLIMIT_AS), so that an unbounded
Torch-Pruning walk ends in a MemoryError instead of taking the machine down (before the bound, the hand-written
attention UNet drove a prepare child to 23 GB). Cases: the attention UNet of ``tests/fixtures/attention`` with its
block named ``SelfAttention`` and ``Mixer`` (a name that does not say attention), and diffusers' ``UNet2DModel``
with ``AttnDownBlock2D`` / ``AttnUpBlock2D`` at a small config. Run it on two checkouts to compare
(``PYTHONPATH=<checkout> python benchmarks/attention_pruning_memory.py``); writes
``benchmarks/results/attention-pruning-memory-<label>-<date>.json``.

Usage: python benchmarks/attention_pruning_memory.py [--label NAME] [--cap-gib 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time, importlib.util
cap = int(float(sys.argv[2]) * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
import numpy as np, torch
from harness.compress.channels import thinner_network

class Latents:
    def __init__(self, names): self.names = names
    def batch(self, n, seed):
        rng = np.random.default_rng(seed)
        return {self.names[0]: rng.standard_normal((n, 1, 16, 16)).astype(np.float32),
                self.names[1]: rng.integers(0, 1000, n).astype(np.int64)}

case = sys.argv[1]
torch.manual_seed(0)
if case == "diffusers-unet2d":
    import diffusers
    from harness.prepare.outputs import with_output
    model = with_output(diffusers.UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=[32, 64],
        down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
        norm_num_groups=4, attention_head_dim=16), "sample").eval()
    latents = Latents(["sample", "timestep"])
else:
    spec = importlib.util.spec_from_file_location("attention_unet", sys.argv[3])
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    model = module.AttentionUNet(block=case).eval()
    latents = Latents(["x", "t"])
start = time.perf_counter()
try:
    _, info = thinner_network(model, 0.5, 1, latents)
    outcome = {"status": "ok", "layers_pruned": len(info["channels"]), "layers_left_whole": len(info["layers_left_whole"]),
               "parameters": [info["parameters_before"], info["parameters"]]}
except MemoryError:
    outcome = {"status": "MemoryError"}
except Exception as exc:
    outcome = {"status": type(exc).__name__, "error": str(exc).splitlines()[0][:300]}
outcome["seconds"] = round(time.perf_counter() - start, 2)
outcome["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(outcome))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="this-checkout")
    parser.add_argument("--cap-gib", type=float, default=3.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    fixture = ROOT / "tests" / "fixtures" / "attention" / "attention_unet.py"
    results = {"date": datetime.now().isoformat(timespec="seconds"), "label": args.label, "cap_gib": args.cap_gib,
               "cases": {}}
    for case in ("SelfAttention", "Mixer", "diffusers-unet2d"):
        try:
            done = subprocess.run([sys.executable, "-c", CHILD, case, str(args.cap_gib), str(fixture)],
                                  capture_output=True, text=True, timeout=args.timeout_s)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            found = json.loads(lines[-1]) if lines else {"status": f"exit {done.returncode}",
                                                         "error": done.stderr.strip().splitlines()[-1:]}
        except subprocess.TimeoutExpired:
            found = {"status": "timeout", "seconds": args.timeout_s}
        results["cases"][case] = found
        print(f"{case}: {found}", file=sys.stderr)
    out = ROOT / "benchmarks" / "results" / f"attention-pruning-memory-{args.label}-{datetime.now():%Y%m%d}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
