"""Does the regression gate tell noise from change? (a benchmark, not a test)

Each trial makes three real harness runs of suites/gate.toml (dcgan and vae_decoder, fp32 ONNX Runtime, batch 1,
one thread, latency in 5 rounds of fresh workers), each a separate harness process:

  base      the configuration as it is
  same      the same configuration again            → A/A: the gate must pass
  slowed    ONNX Runtime with an injected slowdown  → the gate must fail on latency p50
            (benchmarks/plugins/slowdown.py busy-waits --slowdown × each inference's own duration)

The order of 'same' and 'slowed' alternates between trials. The gate (default thresholds) is run with
``harness gate`` exactly as CI would. Reports the A/A false-alarm count (any metric of any job), the catch rate
of the slowdown (per job: latency p50 flagged as a regression), and the measured p50 ratios.
Target: no false alarm over ≥ 20 A/A comparisons and ≥ 95% caught. Exit 0 when met, 1 when not.
Writes reports/gate-power-<time>.json.

Usage: python benchmarks/gate_power.py [--trials 24] [--slowdown 0.15] [--regate reports/gate-power-<time>]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from harness import paths
from harness.compare import compare_runs
from harness.context import machine_context
from harness.gate import GateConfig, run_gate
from harness.store import read_records

PLUGIN = Path(__file__).resolve().parent / "plugins" / "slowdown.py"


def harness_run(out: Path, slowdown: float) -> Path:
    env = dict(os.environ)
    if slowdown:
        env.update(EDGE_HARNESS_PLUGINS=str(PLUGIN), EDGE_HARNESS_SLOWDOWN=str(slowdown))
    subprocess.run([sys.executable, "-m", "harness", "run", "--suite", str(paths.PROJECT_ROOT / "suites" / "gate.toml"),
                    "--out", str(out), "--no-progress"], env=env, check=True, capture_output=True)
    return out / "results.jsonl"


def gate(base: Path, cand: Path, summary_name: str) -> dict:
    """The CLI's gate (exit code) plus the verdicts, for the record."""
    code = subprocess.run([sys.executable, "-m", "harness", "gate", "--baseline", str(base), "--candidate",
                           str(cand), "--markdown", str(cand.parent / summary_name)], capture_output=True).returncode
    result = run_gate(read_records(base), read_records(cand), GateConfig())
    p50 = {f"{c.key[0]}": c.ratio for c in compare_runs(read_records(base), read_records(cand), ["latency_p50"])[0]}
    return {"exit_code": code,
            "regressions": [f"{v.comparison.key[0]} {v.comparison.metric}: {v.reason}" for v in result.regressions],
            "p50_flagged": sorted({v.comparison.key[0] for v in result.regressions
                                   if v.comparison.metric == "latency_p50"}),
            "p50_ratio": p50}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--slowdown", type=float, default=0.15)
    parser.add_argument("--regate", type=Path, metavar="DIR",
                        help="judge the trials of an earlier run folder (reports/gate-power-<time>) again with the "
                             "current gate, measuring nothing")
    args = parser.parse_args()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = args.regate or paths.reports_dir() / f"gate-power-{stamp}"
    folders = sorted(p for p in root.glob("trial-*") if (p / "slowed" / "results.jsonl").exists()
                     and (p / "same" / "results.jsonl").exists()) if args.regate else []
    if args.regate:
        args.trials = len(folders)
        if not folders:
            print(f"{root}: no complete trial (trial-*/same and trial-*/slowed with results.jsonl)", file=sys.stderr)
            return 2
    trials = []
    for i in range(args.trials):
        folder = folders[i] if args.regate else root / f"trial-{i + 1:02d}"
        if args.regate:
            base, runs = folder / "base" / "results.jsonl", {n: folder / n / "results.jsonl" for n in ("same", "slowed")}
        else:
            base = harness_run(folder / "base", 0.0)
            order = [("same", 0.0), ("slowed", args.slowdown)]
            runs = {name: harness_run(folder / name, s) for name, s in (order if i % 2 == 0 else order[::-1])}
        summary_name = f"gate-{stamp}.md"
        trial = {"aa": gate(base, runs["same"], summary_name), "slowed": gate(base, runs["slowed"], summary_name)}
        trials.append(trial)
        print(f"trial {i + 1}: A/A exit {trial['aa']['exit_code']} "
              f"p50 ×{', '.join(f'{k} {v:.3f}' for k, v in trial['aa']['p50_ratio'].items())}; "
              f"slowed exit {trial['slowed']['exit_code']} "
              f"p50 ×{', '.join(f'{k} {v:.3f}' for k, v in trial['slowed']['p50_ratio'].items())}", flush=True)
    false_alarms = sum(t["aa"]["exit_code"] != 0 for t in trials)
    jobs = [m for t in trials for m in t["slowed"]["p50_ratio"]]
    caught = sum(len(t["slowed"]["p50_flagged"]) for t in trials)
    gate_failed = sum(t["slowed"]["exit_code"] == 1 for t in trials)
    aa_ratios = [r for t in trials for r in t["aa"]["p50_ratio"].values()]
    slow_ratios = [r for t in trials for r in t["slowed"]["p50_ratio"].values()]
    summary = {
        "trials": args.trials, "slowdown": args.slowdown,
        "aa_false_alarms": false_alarms,
        "slowdown_caught_jobs": caught, "slowdown_jobs": len(jobs),
        "slowdown_catch_rate": caught / len(jobs) if jobs else 0.0,
        "slowed_gate_exit_1": gate_failed,
        "aa_p50_ratio_min_median_max": [min(aa_ratios), statistics.median(aa_ratios), max(aa_ratios)],
        "slowed_p50_ratio_min_median_max": [min(slow_ratios), statistics.median(slow_ratios), max(slow_ratios)],
    }
    met = false_alarms == 0 and summary["slowdown_catch_rate"] >= 0.95 and args.trials >= 20
    out = paths.reports_dir() / f"gate-power-{stamp}.json"
    out.write_text(json.dumps({"machine": machine_context(), "summary": summary, "met": met,
                               "regate_of": str(args.regate) if args.regate else None, "trials": trials},
                              indent=2))
    print(json.dumps(summary, indent=2))
    print(f"{'met' if met else 'NOT met'}: {false_alarms} A/A false alarms in {args.trials}; "
          f"{caught}/{len(jobs)} slowed jobs caught; {out}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
