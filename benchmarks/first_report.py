"""Time to the first report: `harness run` of a suite cold (an empty artifact cache: every generator trained,
every variant compressed and exported) and then warm (the same cache), as `make bench` runs it.
(a benchmark, not a test)

Each run is a subprocess `python -m harness run --suite S --out DIR --cache CACHE --no-progress`; the benchmark
polls the run folder every 0.5 s and records when index.html first appears (the report written after the first
model's jobs), when each model's first and last record land, and the total wall time. From the records: jobs,
statuses, and where each job's time went (pass_seconds: latency, memory and energy workers, the harness's own
share), summed and as medians per job by format. Writes benchmarks/results/first-report-<date>.json.

Usage: python benchmarks/first_report.py [--suite default] [--cache DIR (default: a fresh one: cold)]
       [--only cold|warm|both]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(suite: str, cache: Path, out: Path) -> dict:
    """One `harness run`, watched from outside."""
    cmd = [sys.executable, "-m", "harness", "run", "--suite", suite, "--out", str(out), "--cache", str(cache),
           "--no-progress"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_report, seen_lines, model_first, model_last = None, 0, {}, {}
    results = out / "results.jsonl"
    while proc.poll() is None:
        time.sleep(0.5)
        now = round(time.monotonic() - t0, 1)
        if first_report is None and (out / "index.html").is_file():
            first_report = now
        if results.is_file():
            lines = results.read_text().splitlines()
            for line in lines[seen_lines:]:
                try:
                    model = json.loads(line)["model"]
                except ValueError:
                    break  # a line being written: read it next time
                model_first.setdefault(model, now)
                model_last[model] = now
                seen_lines += 1
    stdout, stderr = proc.communicate()
    total = round(time.monotonic() - t0, 1)
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    statuses: dict[str, int] = defaultdict(int)
    passes: dict[str, float] = defaultdict(float)
    per_format: dict[str, list[float]] = defaultdict(list)
    for r in records:
        statuses[r["status"]] += 1
        for name, seconds in r["context"].get("pass_seconds", {}).items():
            passes[name] += seconds
        per_format[r["format"]].append(r["duration_s"])
    job_seconds = sum(r["duration_s"] for r in records)
    return {
        "exit_code": proc.returncode, "wall_s": total, "first_report_s": first_report,
        "jobs": len(records), "statuses": dict(statuses),
        "models": {m: {"first_record_s": model_first[m], "last_record_s": model_last[m]} for m in model_first},
        "job_seconds_total": round(job_seconds, 1),
        "preparation_and_other_s": round(total - job_seconds, 1),
        "pass_seconds_total": {k: round(v, 1) for k, v in sorted(passes.items())},
        "median_job_s_by_format": {f: round(statistics.median(v), 2) for f, v in sorted(per_format.items())},
        "stderr_tail": stderr[-1500:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--cache", type=Path, help="artifact cache (default: a fresh, empty one: a cold run)")
    parser.add_argument("--only", choices=["cold", "warm", "both"], default="both")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-report-") as tmp:
        cache = args.cache or Path(tmp) / "cache"
        result = {"date": datetime.now().isoformat(timespec="seconds"), "suite": args.suite,
                  "cache": "given" if args.cache else "fresh (cold first)", "runs": {}}
        kinds = ["cold", "warm"] if args.only == "both" else [args.only]
        for kind in kinds:
            result["runs"][kind] = measure(args.suite, cache, Path(tmp) / f"run-{kind}")
            run = result["runs"][kind]
            print(f"{kind}: first report {run['first_report_s']} s, all {run['jobs']} jobs {run['wall_s']} s "
                  f"(exit {run['exit_code']}); job time {run['job_seconds_total']} s {run['pass_seconds_total']}; "
                  f"median job by format {run['median_job_s_by_format']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"first-report-{args.suite}-{datetime.now():%Y%m%d}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
