"""Scale-out of the Ray lab on this machine: the same suite measured on one device and on two, plus the plain
local run, interleaved and repeated.

Devices are simulated: target ``sim`` (local, one thread) is declared by node A with ``--measure-cpus 0`` and, in
the two-device configuration, by node B with ``--measure-cpus 1``, so each lane's workers are pinned to a CPU of
their own. The head takes the build work, into the harness's usual artifact cache (warm: the zoo's weights and
exports are reused, so preparation is copying and checking, not training); each run starts with an empty cache on
the driver side, so every artifact is copied from the head. Configurations are interleaved
(local, 1 node, 2 nodes) × ``--reps``; between them node B is killed or started again.

Per run: makespan (the harness's wall time from the first prepare to the last record, seconds), the per-job
scheduling overhead (each pass's round trip to its lane minus the time spent on the node, summed per job, ms),
the busy time of preparation and of measurement, the bytes copied from the build node, each job's latency median
(to see whether parallel lanes on one machine disturb each other) and the host-side seconds each job spent in the
driver outside its worker passes (fidelity, sample grids: the driver's share of the work).

    python benchmarks/cluster_scaleout.py [--reps 3] [--out benchmarks/results/cluster-scaleout-DATE.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.config.paths import cache_dir  # noqa: E402
from harness.report.lab import lab_lanes, read_lab  # noqa: E402
from harness.results.store import read_records  # noqa: E402
from tests.raylab import RayLab  # noqa: E402

SIM = """name = "sim"
description = "a simulated device: the local CPU pinned by the node (one thread)"
arch = "x86_64"
reach = "local"
runtimes = ["onnxruntime", "litert"]
threads = 1
cpu_affinity = [0]
"""
SUITE = """name = "scaleout"
models = ["mlp_gan", "dcgan"]
targets = ["sim"]
formats = ["onnx", "tflite"]
batch_sizes = [1, 8]
[settings]
profile_runs = 0
"""


def run_suite(work: Path, name: str, address: str | None) -> dict:
    out, cache = work / name, work / f"{name}-cache"
    env = {"EDGE_HARNESS_TARGETS": str(work / "targets")}
    argv = [sys.executable, "-m", "harness", "run", "--suite", str(work / "scaleout.toml"), "--no-progress",
            "--out", str(out), "--cache", str(cache if address else cache_dir())]
    if address:
        argv += ["--cluster", address]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ, **env})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name}: harness exited {proc.returncode}: {proc.stderr[-2000:]}")
    records = read_records(out / "results.jsonl")
    row = {"config": name.rsplit("-", 1)[0], "wall_s": round(wall, 3), "jobs": len(records),
           "ok": sum(r.status == "ok" for r in records),
           "latency_ms": {f"{r.model}/{r.format}/b{r.batch_size}": round(r.measurement("latency").value, 4)
                          for r in records if r.status == "ok"},
           "host_s_per_job": [r.context["pass_seconds"].get("harness", 0.0) for r in records]}
    lanes = lab_lanes(records, read_lab(out))
    if lanes:
        session = read_lab(out)[-1]
        row |= {"makespan_s": round(lanes["makespan_s"], 3), "prepare_busy_s": round(lanes["prepare_s"], 3),
                "measure_busy_s": round(lanes["measure_s"], 3),
                "overhead_ms_per_job": [round(1000 * r.context["cluster"]["overhead_s"], 2) for r in records],
                "lanes": {lane["lane"]: {"jobs": len(lane["jobs"]), "busy_share": round(lane["busy_share"], 3)}
                          for lane in lanes["lanes"]},
                "copied_bytes": sum(p["copied_bytes"] for p in session["prepare"]),
                "prepare_s": [round(p["end_unix"] - p["start_unix"], 3) for p in session["prepare"]]}
    else:  # the plain local run: the span of its records
        starts = [time.mktime(time.strptime(r.started_at[:19], "%Y-%m-%dT%H:%M:%S")) for r in records]
        row |= {"job_seconds_total": round(sum(r.duration_s for r in records), 3),
                "first_job_start_to_end_s": round(max(s + r.duration_s for s, r in zip(starts, records))
                                                  - min(starts), 1)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        f"cluster-scaleout-{date.today():%Y%m%d}.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edge-harness-scaleout-"))
    (work / "targets").mkdir()
    (work / "targets" / "sim.toml").write_text(SIM)
    (work / "scaleout.toml").write_text(SUITE)
    lab = RayLab({"EDGE_HARNESS_TARGETS": str(work / "targets")})
    runs = []
    try:
        lab.start_head(build=True)
        lab.add_node("a", targets="sim", measure_cpus="0")
        run_suite(work, "warmup-0", lab.address)  # the head's cache and the nodes' workers warm
        for rep in range(args.reps):
            for config in ("local", "1node", "2nodes"):
                if config == "2nodes" and "b" not in lab.nodes:
                    lab.add_node("b", targets="sim", measure_cpus="1")
                if config != "2nodes" and "b" in lab.nodes:
                    lab.kill_node("b")
                    time.sleep(5)  # Ray declares it dead (the test cluster's health check: ~3 s)
                row = run_suite(work, f"{config}-{rep}", None if config == "local" else lab.address)
                row["rep"] = rep
                runs.append(row)
                print(json.dumps({k: v for k, v in row.items()
                                  if k not in ("overhead_ms_per_job", "latency_ms", "host_s_per_job")}),
                      flush=True)
    finally:
        lab.stop()

    def med(config: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["config"] == config)

    one, two = med("1node", "makespan_s"), med("2nodes", "makespan_s")
    overhead = [v for r in runs if "overhead_ms_per_job" in r for v in r["overhead_ms_per_job"]]
    summary = {
        "reps": args.reps, "jobs_per_run": runs[0]["jobs"],
        "median_wall_s": {c: med(c, "wall_s") for c in ("local", "1node", "2nodes")},
        "median_makespan_s": {"1node": one, "2nodes": two},
        "makespan_ratio_1node_over_2nodes": round(one / two, 3),
        "overhead_ms_per_job": {"median": round(statistics.median(overhead), 2),
                                "p90": round(sorted(overhead)[int(0.9 * (len(overhead) - 1))], 2),
                                "n": len(overhead)},
        "prepare_share_of_busy": {c: round(med(c, "prepare_busy_s") / (med(c, "prepare_busy_s")
                                                                       + med(c, "measure_busy_s")), 3)
                                  for c in ("1node", "2nodes")},
    }
    def latency_ratio(config: str) -> float:
        """Median over jobs of (median over reps of the job's latency in ``config``) / (the same on one node)."""
        jobs = runs[0]["latency_ms"].keys()
        per = {c: {j: statistics.median(r["latency_ms"][j] for r in runs if r["config"] == c) for j in jobs}
               for c in (config, "1node")}
        return round(statistics.median(per[config][j] / per["1node"][j] for j in jobs), 3)

    summary["host_s_per_job_median"] = {c: round(statistics.median(v for r in runs if r["config"] == c
                                                                    for v in r["host_s_per_job"]), 3)
                                        for c in ("local", "1node", "2nodes")}
    summary["latency_ratio_vs_1node"] = {"2nodes": latency_ratio("2nodes"), "local": latency_ratio("local")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": runs, "machine": "2-core VM, no GPU",
                                    "command": "python benchmarks/cluster_scaleout.py --reps "
                                               f"{args.reps}"}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"raw results: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
