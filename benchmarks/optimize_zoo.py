"""Does ``harness optimize`` find what the grid finds, in less time? (a benchmark, not a test)

For each model: ``harness optimize`` with the budget (default: the README's study, ≥ 5× fp32 ONNX Runtime's lower
round, PSNR ≥ 30 dB, labels ≥ 0.95; a denoiser over its sampling loop) on x86-cpu, with its own artifact cache
(nothing cached: the wall time includes training the model, every compression and export). Records per model: met
or not, the choice (speed-up with its CI, fidelity), the wall time, the steps, and for a miss the nearest point and
its reason. ``--grid SUITE`` also runs that suite's fixed variants for the model (one run, the same cache folder
cleared first) and judges every job with the same budget (confirm rung, one run: the speed-up's CI from that run),
timing it the same way.

Writes benchmarks/results/optimize-zoo-<date>.json (every search's card included).

Usage: python benchmarks/optimize_zoo.py [--models dcgan,vae_decoder] [--min-speedup 5] [--min-psnr 30]
       [--min-labels 0.95] [--time-limit 45m] [--grid suites/full.toml]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness.analysis.budget import baseline_ms, judge
from harness.config.optimize import optimize_from_table
from harness.engine.context import machine_context
from harness.plugins import load_plugins
from harness.run.optimize import run_optimize

ROOT = Path(__file__).resolve().parent


def grid(model: str, suite_path: Path, budget: dict, cache: Path, out: Path) -> dict:
    """The suite's fixed variants for ``model`` (one run), judged with the budget; wall time."""
    import dataclasses

    from harness.config.suite import load_suite
    from harness.run.sweep import measure_rounds

    suite = load_suite(suite_path)
    suite = dataclasses.replace(suite, models=(model,), batch_sizes=(1,),
                                variants=tuple(v for v in suite.variants if v.applies_to(model)))
    started = time.monotonic()
    rows, _ = measure_rounds(suite, out, 1, cache=cache, progress=False)
    wall = time.monotonic() - started
    fp32 = next(r for r in rows if r["variant"] == "fp32" and r["runtime"] == "onnxruntime")
    loop = bool(fp32.get("loop_latency_ms"))
    base = baseline_ms(fp32, loop)
    judged = []
    for row in rows:
        if row["variant"] == "fp32":
            continue
        verdict = judge(row, base, budget, loop)
        judged.append({"variant": row["variant"], "format": row["format"], "runtime": row["runtime"],
                       "met": verdict.met, "speedup": verdict.speedup, "speedup_low": verdict.speedup_low,
                       "psnr_db": verdict.psnr_db, "labels": verdict.labels, "reasons": list(verdict.reasons)})
    met = [j for j in judged if j["met"]]
    best = max(met, key=lambda j: j["speedup"]) if met else None
    return {"suite": str(suite_path), "wall_s": round(wall, 1), "jobs": len(rows), "met": bool(met), "best": best,
            "judged": judged}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dcgan,vae_decoder,mlp_gan,unet_denoiser")
    parser.add_argument("--min-speedup", type=float, default=5.0)
    parser.add_argument("--min-psnr", type=float, default=30.0)
    parser.add_argument("--min-labels", type=float, default=0.95)
    parser.add_argument("--time-limit", default="45m")
    parser.add_argument("--grid", type=Path, help="also judge this suite's fixed variants with the same budget")
    parser.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/optimize-zoo-<date>.json)")
    args = parser.parse_args()
    load_plugins()
    budget = {"min_speedup": args.min_speedup, "min_psnr": args.min_psnr, "min_labels": args.min_labels}
    results = {"context": machine_context(), "budget": budget, "time_limit": args.time_limit, "models": {}}
    out = args.out or ROOT / "results" / f"optimize-zoo-{datetime.now():%Y%m%d-%H%M}.json"
    work = Path(tempfile.mkdtemp(prefix="optimize-zoo-"))
    for model in filter(None, args.models.split(",")):
        cache = work / f"cache-{model}"
        spec = optimize_from_table("benchmark", {"model": model, "target": "x86-cpu", "time_limit": args.time_limit,
                                                 **budget})
        started = time.monotonic()
        found = run_optimize(spec, out=work / f"search-{model}", cache=cache, progress=False,
                             say=lambda line: print(line, file=sys.stderr, flush=True))
        entry = {"status": found.status, "wall_s": round(time.monotonic() - started, 1), "card": found.card}
        if args.grid:
            shutil.rmtree(cache, ignore_errors=True)
            entry["grid"] = grid(model, args.grid, budget, cache, work / f"grid-{model}")
        results["models"][model] = entry
        out.write_text(json.dumps(results, indent=1, default=str))
        chosen = found.card.get("chosen")
        print(f"{model}: {found.status} in {entry['wall_s']:.0f} s; "
              + (f"{chosen['candidate']} {chosen['format']}/{chosen['runtime']} {chosen['speedup']:.2f}× "
                 f"(CI low {chosen['speedup_ci'][0]:.2f}×) at {chosen['psnr_db']:.1f} dB" if chosen else
                 f"nearest: {found.card.get('nearest_miss')}"), flush=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
