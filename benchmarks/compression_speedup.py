"""Does compression buy a real speed-up at a fidelity people accept? (a benchmark, not a test)

Runs suites/speedup.toml (the four zoo generators, fp32 beside channel-pruned and distilled variants, on ONNX
Runtime and LiteRT, batch 1 and 8) ``--rounds`` times, each round a full harness run (fresh workers, fp32 and
variants measured back to back), and reports per model, batch, variant and runtime the speed-up over fp32 ONNX
Runtime (fp32 ORT median / variant median, both from the same round) as the median and the lowest over rounds,
with PSNR, the digits Fréchet distance and label agreement vs fp32. A denoiser with a sampler (the UNet) is judged
over its whole sampling loop (time per generated image, fidelity of the final images vs the fp32 pipeline); its
one-step figures are kept beside. The target: for each model, at least one variant at least ``--target-speedup``
(5) × faster than fp32 ONNX Runtime (lowest round) at PSNR ≥ ``--min-psnr`` (30 dB) and label agreement ≥
``--min-labels`` (0.95). Per model it also prints the Pareto front (speed-up × PSNR over every variant, runtime
and batch): how close a model that misses comes. Exit 0 when every model meets it, 1 when not.
Writes reports/compression-speedup-<time>.json.

Usage: python benchmarks/compression_speedup.py [--rounds 2] [--target-speedup 5] [--min-psnr 30] [--min-labels 0.95]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime
from pathlib import Path

from harness.config import paths
from harness.plugins import load_plugins
from harness.engine.context import machine_context
from harness.report import write_report
from harness.report.compression import compression_frame
from harness.report.tables import summary_frame
from harness.run.runner import SuiteRunner
from harness.results.store import read_records
from harness.config.suite import load_suite


def one_round(out: Path) -> list[dict]:
    suite = load_suite(paths.PROJECT_ROOT / "suites" / "speedup.toml")
    runner = SuiteRunner(suite, out_dir=out, cache_dir=paths.cache_dir(), models_dir=paths.models_dir(),
                         targets_dir=paths.targets_dir(), progress=False)
    results = runner.run().results_path
    write_report(results)  # each round is a normal run folder: results, CSVs, HTML
    return compression_frame(summary_frame(read_records(results))).to_dict("records")


def _row_figures(r: dict) -> dict:
    """The figures a row is judged on: the whole sampling loop's for a denoiser measured over it, else one call's."""
    loop = r.get("loop_latency_p50_ms")
    if loop is not None and loop == loop:
        return {"p50_ms": loop, "speedup": r.get("loop_speedup_vs_fp32_onnxruntime"), "psnr_db": r.get("loop_psnr_db"),
                "fd": r.get("loop_frechet_distance"), "labels": r.get("loop_label_agreement"), "judged_on": "loop"}
    return {"p50_ms": r.get("latency_p50_ms"), "speedup": r.get("speedup_vs_fp32_onnxruntime"),
            "psnr_db": r.get("psnr_db"), "fd": r.get("frechet_distance"), "labels": r.get("label_agreement"),
            "judged_on": "one call"}


def pareto_front(entries: list[dict]) -> list[dict]:
    """The entries no other beats on both the lowest-round speed-up and PSNR (capped at 100 dB: round-off). An entry
    without a PSNR (outputs NaN/inf where fp32's are not) is no point of the front."""
    def psnr(e: dict) -> float:
        return min(e["psnr_db"], 100.0)

    points = [e for e in entries if e["speedup_min"] is not None and e["psnr_db"] is not None
              and e["psnr_db"] == e["psnr_db"]]
    return sorted((e for e in points if not any(
        o["speedup_min"] >= e["speedup_min"] and psnr(o) >= psnr(e) and
        (o["speedup_min"] > e["speedup_min"] or psnr(o) > psnr(e)) for o in points)),
        key=lambda e: e["speedup_min"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--target-speedup", type=float, default=5.0)
    parser.add_argument("--min-psnr", type=float, default=30.0)
    parser.add_argument("--min-labels", type=float, default=0.95)
    args = parser.parse_args()
    load_plugins()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    rounds = [one_round(paths.reports_dir() / f"compression-speedup-{stamp}" / f"round-{i + 1}")
              for i in range(args.rounds)]
    rows: dict[tuple, dict] = {}
    for frame in rounds:
        for r in frame:
            key = (r["model"], r["batch_size"], r["variant"], r["runtime"])
            judged = _row_figures(r)
            entry = rows.setdefault(key, {"model": r["model"], "batch": r["batch_size"], "variant": r["variant"],
                                          "runtime": r["runtime"], "judged_on": judged["judged_on"], "status": [],
                                          "p50_ms": [], "speedup": [], "step_p50_ms": [],
                                          "psnr_db": judged["psnr_db"], "fd": judged["fd"], "labels": judged["labels"],
                                          "step_psnr_db": r.get("psnr_db"), "size_mb": r.get("size_mb")})
            entry["status"].append(r["status"])
            entry["p50_ms"].append(judged["p50_ms"])
            entry["speedup"].append(judged["speedup"])
            entry["step_p50_ms"].append(r.get("latency_p50_ms"))
    print(f"{'model':13} {'b':>2} {'variant':12} {'runtime':12} {'judged':8} {'p50 ms':>9} {'× ORT med':>9} "
          f"{'× ORT min':>9} {'PSNR':>6} {'FD':>7} {'labels':>6} {'step ms':>8} {'step PSNR':>9}")
    winners: dict[str, list[dict]] = {}
    for entry in rows.values():
        ok = all(s == "ok" for s in entry["status"]) and all(v is not None and v == v for v in entry["speedup"])
        entry["speedup_median"] = statistics.median(entry["speedup"]) if ok else None
        entry["speedup_min"] = min(entry["speedup"]) if ok else None
        psnr, labels = entry["psnr_db"], entry["labels"]
        entry["meets_target"] = bool(ok and entry["variant"] != "fp32" and entry["speedup_min"] >= args.target_speedup
                                     and psnr is not None and psnr == psnr and psnr >= args.min_psnr
                                     and (labels is None or labels != labels or labels >= args.min_labels))
        winners.setdefault(entry["model"], [])
        if entry["meets_target"]:
            winners[entry["model"]].append(entry)
        step = [v for v in entry["step_p50_ms"] if v is not None and v == v]
        print(f"{entry['model']:13} {entry['batch']:>2} {entry['variant']:12} {entry['runtime']:12} "
              f"{entry['judged_on']:8} {_f(statistics.median(entry['p50_ms']) if ok else None, 9, 3)} "
              f"{_f(entry['speedup_median'], 9, 2)} {_f(entry['speedup_min'], 9, 2)} {_f(psnr, 6, 1)} "
              f"{_f(entry['fd'], 7, 3)} {_f(labels, 6, 3)} {_f(statistics.median(step) if step else None, 8, 3)} "
              f"{_f(entry['step_psnr_db'], 9, 1)}{'  ✓' if entry['meets_target'] else ''}")
    met = {model: bool(found) for model, found in winners.items()}
    fronts = {}
    for model, ok in met.items():
        best = max(winners[model], key=lambda e: e["speedup_min"]) if ok else None
        print(f"{model}: " + (f"meets the target with {best['variant']} on {best['runtime']} at batch {best['batch']} "
                              f"(×{best['speedup_min']:.2f} lowest round, {best['psnr_db']:.1f} dB)" if ok else
                              f"no variant ≥ {args.target_speedup:g}× at ≥ {args.min_psnr:g} dB and labels ≥ "
                              f"{args.min_labels:g}"))
        fronts[model] = pareto_front([e for e in rows.values() if e["model"] == model])
        print("  Pareto front (× fp32 ORT lowest round, PSNR dB): " + ", ".join(
            f"{e['variant']}/{e['runtime']}/b{e['batch']} ×{e['speedup_min']:.2f} {min(e['psnr_db'], 100.0):.1f}"
            for e in fronts[model]))
    out = paths.reports_dir() / f"compression-speedup-{stamp}.json"
    out.write_text(json.dumps({"context": machine_context(), "rounds": args.rounds, "target_speedup": args.target_speedup,
                               "min_psnr_db": args.min_psnr, "min_labels": args.min_labels,
                               "rows": list(rows.values()), "met": met,
                               "pareto": {m: [[e["variant"], e["runtime"], e["batch"]] for e in f]
                                          for m, f in fronts.items()}},
                              indent=1, default=str))
    print(f"written: {out}")
    return 0 if met and all(met.values()) else 1


def _f(value: float | None, width: int, digits: int) -> str:
    return f"{'–':>{width}}" if value is None or value != value else f"{value:>{width}.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
