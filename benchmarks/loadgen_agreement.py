"""Do the harness's loop and MLPerf LoadGen agree on the same artifact? (a benchmark)

One ``harness run`` of suites/gate.toml (dcgan and vae_decoder, fp32 ONNX Runtime, batch 1, one thread) makes the
artifacts and records each job's latency request. Then, per job, --pairs pairs of fresh worker processes replay
that request: one the harness's latency pass, one a LoadGen pass (SingleStream and Offline, after the same
warm-up rule), in alternating order (AB, BA, …) so that machine drift touches both alike. Each pair gives the
ratios LoadGen / harness of p50 and p90 (LoadGen's p90 and its early-stopping p90 estimate) and of Offline
throughput to the harness's throughput (batch / median). Reports the median and range of each ratio over the pairs.

    python benchmarks/loadgen_agreement.py [--pairs 10] [--run DIR]
Writes benchmarks/results/loadgen-agreement-<date>.json (every pass's figures).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.launch.local import LocalLauncher  # noqa: E402
from harness.run.interleave import read_requests  # noqa: E402


def measured(result: dict, metric: str, stat: str | None = None) -> float:
    m = next(m for m in result.measurements if m["metric"] == metric)
    return float(m["stats"][stat]) if stat else float(m["value"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--run", type=Path, help="an existing run folder of suites/gate.toml to replay")
    args = parser.parse_args()
    run = args.run or ROOT / "reports" / f"loadgen-agreement-{datetime.now():%Y%m%d-%H%M%S}"
    if args.run is None:
        subprocess.run([sys.executable, "-m", "harness", "run", "--suite", str(ROOT / "suites" / "gate.toml"),
                        "--out", str(run), "--no-progress"], cwd=ROOT, check=True, capture_output=True)
    launcher = LocalLauncher()
    jobs = read_requests(run)
    passes: list[dict] = []
    for key, entry in sorted(jobs.items()):
        request = dict(entry["request"])
        request["settings"] = dict(request["settings"]) | {"rounds": 1, "loadgen": "single-stream,offline"}
        model = request["artifact"]["model"]
        for pair in range(args.pairs):
            order = ("harness", "loadgen") if pair % 2 == 0 else ("loadgen", "harness")
            figures: dict[str, float] = {}
            for method in order:
                result = launcher.run(dict(request, mode="latency" if method == "harness" else "loadgen"),
                                      entry["timeout_s"])
                if result.status != "ok":
                    print(f"{model} {method}: {result.status}: {result.error[:300]}", file=sys.stderr)
                    return 2
                if method == "harness":
                    figures |= {"harness_p50": measured(result, "latency", "p50"),
                                "harness_p90": measured(result, "latency", "p90"),
                                "harness_items_s": measured(result, "throughput")}
                else:
                    figures |= {"loadgen_p50": measured(result, "loadgen_ss_p50"),
                                "loadgen_p90": measured(result, "loadgen_ss_p90"),
                                "loadgen_p90_es": measured(result, "loadgen_ss_p90_early_stopping"),
                                "loadgen_items_s": measured(result, "loadgen_offline_throughput"),
                                "validity": ", ".join(f"{s}: {v['results'].get('result_validity')}"
                                                      for s, v in result.context["loadgen"].items())}
            passes.append({"model": model, "job_key": key, "pair": pair, "order": list(order), **figures})
            print(json.dumps(passes[-1]), file=sys.stderr)

    def ratios(model: str, num: str, den: str) -> dict[str, float]:
        values = [p[num] / p[den] for p in passes if p["model"] == model]
        return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
                "max": round(max(values), 4), "n": len(values)}

    summary = {}
    for model in sorted({p["model"] for p in passes}):
        rows = [p for p in passes if p["model"] == model]
        summary[model] = {
            "harness_p50_ms_median": round(statistics.median(p["harness_p50"] for p in rows), 5),
            "loadgen_p50_ms_median": round(statistics.median(p["loadgen_p50"] for p in rows), 5),
            "p50_loadgen_over_harness": ratios(model, "loadgen_p50", "harness_p50"),
            "p90_loadgen_over_harness": ratios(model, "loadgen_p90", "harness_p90"),
            "p90_early_stopping_over_harness_p90": ratios(model, "loadgen_p90_es", "harness_p90"),
            "offline_items_s_over_harness_items_s": ratios(model, "loadgen_items_s", "harness_items_s"),
            "all_valid": all("INVALID" not in p["validity"] for p in rows),
        }
    out = ROOT / "benchmarks" / "results" / f"loadgen-agreement-{date.today():%Y%m%d}.json"
    out.write_text(json.dumps({"summary": summary, "passes": passes, "pairs": args.pairs, "suite": "suites/gate.toml",
                               "command": f"python benchmarks/loadgen_agreement.py --pairs {args.pairs}"},
                              indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"raw results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
