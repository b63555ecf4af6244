"""Does `harness history` name the run where latency stepped, and nothing on a steady history? (a benchmark)

Makes two histories of real runs of suites/gate.toml (dcgan and vae_decoder, fp32 ONNX Runtime, batch 1, one
thread), one run after another on this machine:

  stepped   --runs runs; from run --step-at on, each run's workers load the slowdown plugin
            (benchmarks/plugins/slowdown.py: every inference busy-waits --slowdown × its own duration)
  steady    --runs runs, none slowed

The two histories are interleaved run by run (stepped i, steady i, stepped i+1, …) so that machine drift touches
both alike. Then `harness history` (default gate thresholds) reads each folder; the benchmark records every step
it names (job, metric, run) and each run's latency p50, and passes when the stepped history names run --step-at
for every job's latency p50, no step at any other run, and the steady one names nothing. --reanalyse DIR reads the
runs of an earlier DIR again with the current `harness history`, measuring nothing.

    python benchmarks/history_step.py [--runs 12] [--step-at 7] [--slowdown 0.25] [--out DIR | --reanalyse DIR]
Writes DIR/stepped/run-NN, DIR/steady/run-NN and benchmarks/results/history-step-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "benchmarks" / "plugins" / "slowdown.py"


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ) | (env or {}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--step-at", type=int, default=7, help="first slowed run (1-based)")
    parser.add_argument("--slowdown", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / f"history-step-{datetime.now():%Y%m%d-%H%M%S}")
    parser.add_argument("--reanalyse", type=Path, metavar="DIR", help="an earlier --out DIR: analyse its runs again")
    args = parser.parse_args()
    if args.reanalyse:
        args.out = args.reanalyse
        args.runs = len(list((args.out / "stepped").glob("run-*")))
    latency: dict[str, list[dict[str, float]]] = {"stepped": [], "steady": []}
    for i in range(1, args.runs + 1):
        for history in ("stepped", "steady"):
            out = args.out / history / f"run-{i:02d}"
            if args.reanalyse:
                from harness.results.store import read_records

                latency[history].append({r.model: round(r.measurement("latency").stats["p50"], 5)
                                         for r in read_records(out / "results.jsonl") if r.status == "ok"})
                continue
            slowed = history == "stepped" and i >= args.step_at
            env = {"EDGE_HARNESS_PLUGINS": str(PLUGIN), "EDGE_HARNESS_SLOWDOWN": str(args.slowdown)} if slowed else {}
            proc = harness("run", "--suite", str(ROOT / "suites" / "gate.toml"), "--out", str(out), "--no-progress",
                           env=env)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 2
            from harness.results.store import read_records

            latency[history].append({r.model: round(r.measurement("latency").stats["p50"], 5)
                                     for r in read_records(out / "results.jsonl") if r.status == "ok"})
            print(f"run {i} {history}{' (slowed)' if slowed else ''}: {latency[history][-1]}", file=sys.stderr)
    named: dict[str, list[dict[str, object]]] = {}
    pending: dict[str, list[str]] = {}
    for history in ("stepped", "steady"):
        proc = harness("history", str(args.out / history), "--out", str(args.out / f"{history}-history"))
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 2
        named[history] = [{"job": m.group(1), "metric": m.group(2), "run": int(m.group(3)), "worse": m.group(4)}
                          for m in re.finditer(r"^step: (.+) (\S+) at run (\d+) .*\((worse|better)\)$", proc.stderr,
                                               re.M)]
        pending[history] = re.findall(r"^not a step \(yet\): (.+)$", proc.stderr, re.M)
    jobs = set(latency["stepped"][0])
    p50_named = sorted(s["job"].split(" ")[0] for s in named["stepped"] if s["metric"] == "latency_p50")
    ok = ({s["run"] for s in named["stepped"]} == {args.step_at} and p50_named == sorted(jobs)
          and not named["steady"])
    result = {"date": str(date.today()), "runs": args.runs, "step_at": args.step_at, "slowdown": args.slowdown,
              "suite": "suites/gate.toml", "named": named, "not_steps_yet": pending, "latency_p50_ms": latency,
              "passed": ok,
              "command": f"python benchmarks/history_step.py --runs {args.runs} --step-at {args.step_at} "
                         f"--slowdown {args.slowdown}" + (f" --reanalyse {args.out}" if args.reanalyse else ""),
              "runs_folder": str(args.out)}
    path = ROOT / "benchmarks" / "results" / (f"history-step-{date.today():%Y%m%d}"
                                              f"{'-reanalysed' if args.reanalyse else ''}.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"named": named, "passed": ok}, indent=1))
    print(f"raw results: {path}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
