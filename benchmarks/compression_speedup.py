"""Does compression buy a real speed-up at a fidelity people accept? (a benchmark, not a test)

Runs suites/speedup.toml (the digits-trained conv generators, fp32 beside channels-50 and distill-75, on ONNX
Runtime and LiteRT, batch 1 and 8) ``--rounds`` times, each round a full harness run (fresh workers, fp32 and
variants measured back to back), and reports per model, batch, variant and runtime the speed-up over fp32 ONNX
Runtime (fp32 ORT median / variant median, both from the same round) as the median and the lowest over rounds,
with PSNR and the digits Fréchet distance vs fp32. The target: for each model, at least one variant at least
3× faster than fp32 ONNX Runtime (lowest round) at PSNR ≥ 30 dB. Exit 0 when every model meets it, 1 when not.
Writes reports/compression-speedup-<time>.json.

Usage: python benchmarks/compression_speedup.py [--rounds 2] [--target-speedup 3] [--min-psnr 30]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--target-speedup", type=float, default=3.0)
    parser.add_argument("--min-psnr", type=float, default=30.0)
    args = parser.parse_args()
    load_plugins()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    rounds = [one_round(paths.reports_dir() / f"compression-speedup-{stamp}" / f"round-{i + 1}")
              for i in range(args.rounds)]
    rows: dict[tuple, dict] = {}
    for i, frame in enumerate(rounds):
        for r in frame:
            key = (r["model"], r["batch_size"], r["variant"], r["runtime"])
            entry = rows.setdefault(key, {"model": r["model"], "batch": r["batch_size"], "variant": r["variant"],
                                          "runtime": r["runtime"], "status": [], "p50_ms": [], "speedup": [],
                                          "psnr_db": r.get("psnr_db"), "fd": r.get("frechet_distance"),
                                          "labels": r.get("label_agreement")})
            entry["status"].append(r["status"])
            entry["p50_ms"].append(r.get("latency_p50_ms"))
            entry["speedup"].append(r.get("speedup_vs_fp32_onnxruntime"))
    print(f"{'model':12} {'b':>2} {'variant':12} {'runtime':12} {'p50 ms':>8} {'× ORT med':>9} {'× ORT min':>9} "
          f"{'PSNR':>6} {'FD':>7} {'labels':>6}")
    winners: dict[str, list[dict]] = {}
    for entry in rows.values():
        ok = all(s == "ok" for s in entry["status"]) and all(v is not None for v in entry["speedup"])
        entry["speedup_median"] = statistics.median(entry["speedup"]) if ok else None
        entry["speedup_min"] = min(entry["speedup"]) if ok else None
        psnr = entry["psnr_db"]
        entry["meets_target"] = bool(ok and entry["variant"] != "fp32" and entry["speedup_min"] >= args.target_speedup
                                     and psnr is not None and psnr == psnr and psnr >= args.min_psnr)
        winners.setdefault(entry["model"], [])
        if entry["meets_target"]:
            winners[entry["model"]].append(entry)
        print(f"{entry['model']:12} {entry['batch']:>2} {entry['variant']:12} {entry['runtime']:12} "
              f"{_f(statistics.median(entry['p50_ms']) if ok else None, 8, 3)} {_f(entry['speedup_median'], 9, 2)} "
              f"{_f(entry['speedup_min'], 9, 2)} {_f(psnr, 6, 1)} {_f(entry['fd'], 7, 3)} {_f(entry['labels'], 6, 3)}"
              f"{'  ✓' if entry['meets_target'] else ''}")
    met = {model: bool(found) for model, found in winners.items()}
    for model, ok in met.items():
        best = max(winners[model], key=lambda e: e["speedup_min"]) if ok else None
        print(f"{model}: " + (f"meets the target with {best['variant']} on {best['runtime']} at batch {best['batch']} "
                              f"(×{best['speedup_min']:.2f} lowest round, {best['psnr_db']:.1f} dB)" if ok else
                              f"no variant ≥ {args.target_speedup:g}× at ≥ {args.min_psnr:g} dB"))
    out = paths.reports_dir() / f"compression-speedup-{stamp}.json"
    out.write_text(json.dumps({"context": machine_context(), "rounds": args.rounds, "target_speedup": args.target_speedup,
                               "min_psnr_db": args.min_psnr, "rows": list(rows.values()), "met": met},
                              indent=1, default=str))
    print(f"written: {out}")
    return 0 if met and all(met.values()) else 1


def _f(value: float | None, width: int, digits: int) -> str:
    return f"{'–':>{width}}" if value is None or value != value else f"{value:>{width}.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
