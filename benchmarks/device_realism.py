"""Cold and warm start, and will it fit, for the zoo (a benchmark, not a test).

One run of the default suite's fp32 models in every runtime on x86-cpu (``--quick`` timing rules, ``start_runs``
pairs of fresh processes per job: 5 by default), then:
- per job: cold and warm start (medians over the processes) with their parts, and the cache each runtime used;
- per job and shipped profile with a ``[fit]`` table (Pi 4, Pi 5, Jetson Orin Nano, x86): the job's measured peak RSS
  and file size judged against that profile's budget — an x86 measurement held against a board's budget, labelled
  so (the runtimes' base footprints differ between architectures).

Usage: python benchmarks/device_realism.py [--start-runs 5] [--out benchmarks/results/device-realism-<date>.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from harness import api
from harness.analysis.fit import judge_fit
from harness.config.paths import targets_dir
from harness.config.targets import load_target
from harness.engine.context import machine_context

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("rpi4", "rpi5", "jetson-orin-nano", "x86-cpu")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start-runs", type=int, default=5)
    parser.add_argument("--models", default="vae_decoder,mlp_gan,unet_denoiser,dcgan")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="device-realism-") as tmp:
        run = api.run("default", models=args.models.split(","), targets=["x86-cpu"], variants=["none"], quick=True,
                      settings={"start_runs": args.start_runs}, out=Path(tmp) / "run")
        records = run.records
    budgets = {name: load_target(targets_dir() / f"{name}.toml").fit for name in PROFILES}
    jobs = []
    for r in records:
        if r.status != "ok" or r.measurement("cold_start") is None or r.measurement("warm_start") is None:
            jobs.append({"model": r.model, "format": r.format, "runtime": r.runtime, "status": r.status,
                         "error": (r.error.splitlines()[0][:200] if r.error else "")
                         or r.context.get("start_unavailable", "no start pass")})
            continue
        start = r.context.get("start") or {}
        entry = {"model": r.model, "format": r.format, "runtime": r.runtime, "batch": r.batch_size, "status": "ok",
                 "peak_rss_mb": r.measurement("peak_rss").value / 2**20, "size_mb": r.artifact_bytes / 2**20}
        for kind in ("cold", "warm"):
            m = r.measurement(f"{kind}_start")
            entry[kind] = {"median_ms": m.value, "samples_ms": list(m.samples), "processes": len(m.samples),
                           **{k: m.stats[k] for k in ("interpreter_ms", "import_ms", "load_ms", "first_inference_ms")},
                           "cache": start.get(kind, {}).get("cache", ""),
                           "page_cache": start.get(kind, {}).get("page_cache", [])}
        entry["fit"] = {name: judge_fit(r.measurement("peak_rss").value, r.artifact_bytes, budget,
                                        f"measured on x86-cpu, judged against {name}'s [fit]").to_dict()
                        for name, budget in budgets.items()}
        jobs.append(entry)
        print(f"{r.model:14} {r.runtime:12} b{r.batch_size} cold {entry['cold']['median_ms']:7.0f} ms  warm "
              f"{entry['warm']['median_ms']:7.0f} ms  peak {entry['peak_rss_mb']:6.0f} MB", file=sys.stderr)
    out = args.out or ROOT / "benchmarks" / "results" / f"device-realism-{datetime.now():%Y%m%d}.json"
    out.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "context": machine_context(),
                               "start_runs": args.start_runs,
                               "budgets": {k: v.to_dict() for k, v in budgets.items()}, "jobs": jobs}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
