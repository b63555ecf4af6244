"""Does the regression gate tell noise from change? (a benchmark, not a test)

Two designs, both judged by ``harness gate`` (default thresholds) exactly as CI would:

--mode interleaved (default; the design the example CI workflow uses): one ``harness run`` of suites/gate.toml
(dcgan and vae_decoder, fp32 ONNX Runtime, batch 1, one thread) makes the artifacts and the recorded latency
requests. Each trial then runs two ``harness ab`` sessions of that run against itself, each measuring both sides
afresh in --pairs interleaved pairs of rounds (fresh workers, ABBA order):

  aa        both sides the same configuration           → A/A: the gate must pass
  slowed    the candidate's workers load an injected     → the gate must fail on latency p50
            slowdown (benchmarks/plugins/slowdown.py busy-waits --slowdown × each inference's own duration)

--mode separate-runs (the earlier design): each trial makes three separate ``harness run``s — base, same (A/A)
and slowed — with 5 latency rounds per job, and gates same and slowed against base.

In both the order of the A/A and the slowed measurement alternates between trials. Reports the A/A false-alarm
count (any metric of any job), the catch rate of the slowdown (per job: latency p50 flagged as a regression), and
the measured p50 ratios. Target: no false alarm over ≥ 20 A/A comparisons and ≥ 95% caught. Exit 0 when met,
1 when not. Writes reports/gate-power-<time>.json; the trials' results stay in reports/gate-power-<time>/.

--gate-config FILE judges every comparison with that gate file (``harness gate --config``) instead of the defaults.
Whatever the file, the summary also sweeps the latency-p50 threshold (A/A alarms and slowed jobs caught on p50 alone
at each threshold, the same significance test), to show the margin on both sides of the chosen one.

Usage: python benchmarks/gate_power.py [--mode interleaved|separate-runs] [--trials 22] [--slowdown 0.15]
                                       [--pairs 8] [--no-pin] [--gate-config FILE]
                                       [--regate reports/gate-power-<time>]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from harness.config import paths
from harness.analysis.compare import compare_runs, group_records, paired_rounds
from harness.engine.context import machine_context
from harness.analysis.gate import load_gate_config, run_gate
from harness.results.store import read_records

PLUGIN = Path(__file__).resolve().parent / "plugins" / "slowdown.py"


def harness_run(out: Path, slowdown: float) -> Path:
    env = dict(os.environ) | (slowdown_env(slowdown) if slowdown else {})
    subprocess.run([sys.executable, "-m", "harness", "run", "--suite", str(paths.PROJECT_ROOT / "suites" / "gate.toml"),
                    "--out", str(out), "--no-progress"], env=env, check=True, capture_output=True)
    return out / "results.jsonl"


def slowdown_env(slowdown: float) -> dict[str, str]:
    return {"EDGE_HARNESS_PLUGINS": str(PLUGIN), "EDGE_HARNESS_SLOWDOWN": str(slowdown)}


def harness_ab(run: Path, out: Path, pairs: int, slowdown: float, pin: bool = True) -> tuple[Path, Path]:
    """An A/B session of ``run`` against itself; the candidate's workers slowed when ``slowdown`` > 0."""
    env = [f"--candidate-env={k}={v}" for k, v in slowdown_env(slowdown).items()] if slowdown else []
    env += [] if pin else ["--no-pin"]
    subprocess.run([sys.executable, "-m", "harness", "ab", "--baseline", str(run), "--candidate", str(run),
                    "--out", str(out), "--pairs", str(pairs), *env], check=True, capture_output=True)
    return out / "baseline" / "results.jsonl", out / "candidate" / "results.jsonl"


SWEEP = (0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.10)
"""Latency-p50 thresholds the summary tries on the measured comparisons (fractions)."""


def gate(base: Path, cand: Path, summary_name: str, config_file: Path | None) -> dict:
    """The CLI's gate (exit code) plus the verdicts, for the record."""
    config = ["--config", str(config_file)] if config_file else []
    code = subprocess.run([sys.executable, "-m", "harness", "gate", "--baseline", str(base), "--candidate",
                           str(cand), "--markdown", str(cand.parent / summary_name), *config],
                          capture_output=True).returncode
    base_records, cand_records = read_records(base), read_records(cand)
    result = run_gate(base_records, cand_records, load_gate_config(config_file))
    p50_comparisons = compare_runs(base_records, cand_records, ["latency_p50"])[0]
    p50 = {f"{c.key[0]}": c.ratio for c in p50_comparisons}
    p50_tests = {f"{c.key[0]}": {"ratio": c.ratio, "ci": [c.ci_low, c.ci_high], "p": c.p_value, "min_p": c.min_p}
                 for c in p50_comparisons}
    p90 = {f"{c.key[0]}": c.ratio for c in compare_runs(base_records, cand_records, ["latency_p90"])[0]}
    pairs, cand_groups = {}, group_records(cand_records)
    for key, recs in group_records(base_records).items():
        found = paired_rounds(recs, cand_groups.get(key, []))
        if found:
            pairs[key[0]] = [c / b for b, c in zip(*found)]
    return {"exit_code": code, "pair_ratios": pairs,
            "regressions": [f"{v.comparison.key[0]} {v.comparison.metric}: {v.reason}" for v in result.regressions],
            "p50_flagged": sorted({v.comparison.key[0] for v in result.regressions
                                   if v.comparison.metric == "latency_p50"}),
            "p50_ratio": p50, "p50_tests": p50_tests, "p90_ratio": p90}


def threshold_sweep(trials: list[dict], alpha: float) -> list[dict]:
    """Per latency-p50 threshold: A/A jobs that would alarm on p50 and slowed jobs caught on p50 (same test, α)."""
    def flagged(tests: dict, threshold: float) -> int:
        return sum(t["ratio"] is not None and t["ratio"] - 1 > threshold and t["p"] is not None and t["p"] < alpha
                   for t in tests.values())
    if not all("p50_tests" in t[side] for t in trials for side in ("aa", "slowed")):
        return []
    return [{"threshold": th, "aa_p50_alarms": sum(flagged(t["aa"]["p50_tests"], th) for t in trials),
             "slowed_p50_caught": sum(flagged(t["slowed"]["p50_tests"], th) for t in trials),
             "slowed_jobs": sum(len(t["slowed"]["p50_tests"]) for t in trials)} for th in SWEEP]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["interleaved", "separate-runs"], default="interleaved")
    parser.add_argument("--trials", type=int, default=22)
    parser.add_argument("--slowdown", type=float, default=0.15)
    parser.add_argument("--pairs", type=int, default=8, help="interleaved mode: pairs of rounds per session")
    parser.add_argument("--no-pin", action="store_true", help="interleaved mode: `harness ab --no-pin`")
    parser.add_argument("--gate-config", type=Path, metavar="TOML",
                        help="judge with this gate file (harness gate --config); default: the gate's defaults")
    parser.add_argument("--regate", type=Path, metavar="DIR",
                        help="judge the trials of an earlier run folder (reports/gate-power-<time>) again with the "
                             "current gate, measuring nothing")
    args = parser.parse_args()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    root = args.regate or paths.reports_dir() / f"gate-power-{stamp}"
    if args.regate:
        folders = sorted(p for p in root.glob("trial-*") if _sides(p))
        if not folders:
            print(f"{root}: no complete trial (trial-*/ with both an A/A and a slowed result)", file=sys.stderr)
            return 2
        args.trials = len(folders)
        args.mode = _sides(folders[0])[0]
        args.pairs = None
    elif args.mode == "interleaved":
        run = harness_run(root / "run", 0.0).parent
    trials, trials_dirs = [], []
    for i in range(args.trials):
        folder = folders[i] if args.regate else root / f"trial-{i + 1:02d}"
        trials_dirs.append(folder)
        order = [("aa", 0.0), ("slowed", args.slowdown)]
        order = order if i % 2 == 0 else order[::-1]
        if args.regate:
            pairs = _sides(folder)[1]
        elif args.mode == "interleaved":
            pairs = {name: harness_ab(run, folder / name, args.pairs, s, not args.no_pin) for name, s in order}
        else:
            base = harness_run(folder / "base", 0.0)
            made = {name: harness_run(folder / ("same" if name == "aa" else name), s) for name, s in order}
            pairs = {name: (base, made[name]) for name in made}
        summary_name = f"gate-{stamp}.md"
        trial = {name: gate(*pairs[name], summary_name, args.gate_config) for name in ("aa", "slowed")}
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
        "mode": args.mode, "trials": args.trials, "slowdown": args.slowdown,
        "pairs": (args.pairs or _pairs(trials_dirs[0])) if args.mode == "interleaved" else None,
        "pinned": _pinned(trials_dirs[0]) if args.regate and args.mode == "interleaved"
        else (not args.no_pin if args.mode == "interleaved" else None),
        "aa_false_alarms": false_alarms,
        "slowdown_caught_jobs": caught, "slowdown_jobs": len(jobs),
        "slowdown_catch_rate": caught / len(jobs) if jobs else 0.0,
        "slowed_gate_exit_1": gate_failed,
        "aa_p50_ratio_min_median_max": [min(aa_ratios), statistics.median(aa_ratios), max(aa_ratios)],
        "slowed_p50_ratio_min_median_max": [min(slow_ratios), statistics.median(slow_ratios), max(slow_ratios)],
    }
    config = load_gate_config(args.gate_config)
    summary["gate_config"] = str(args.gate_config) if args.gate_config else None
    summary["p50_threshold"] = config.threshold(("",) * 5 + (1,), "latency_p50", paired=args.mode == "interleaved")
    summary["p50_threshold_sweep"] = threshold_sweep(trials, config.alpha)
    aa_p90 = [r for t in trials for r in t["aa"].get("p90_ratio", {}).values() if r is not None]
    if aa_p90:
        summary["aa_p90_ratio_min_median_max"] = [min(aa_p90), statistics.median(aa_p90), max(aa_p90)]
    if not args.regate:
        summary["wall_s"] = round(time.monotonic() - started)
    aa_pairs = [r for t in trials for rs in t["aa"].get("pair_ratios", {}).values() for r in rs]
    if aa_pairs:  # interleaved: how far one pair's two rounds of the same configuration can differ
        summary["aa_pair_ratio_min_max"] = [min(aa_pairs), max(aa_pairs)]
        summary["aa_pairs_beyond_5pct"] = sum(abs(r - 1) > 0.05 for r in aa_pairs)
        summary["aa_pairs"] = len(aa_pairs)
    met = false_alarms == 0 and summary["slowdown_catch_rate"] >= 0.95 and args.trials >= 20
    out = paths.reports_dir() / f"gate-power-{stamp}.json"
    out.write_text(json.dumps({"machine": machine_context(), "summary": summary, "met": met,
                               "regate_of": str(args.regate) if args.regate else None, "trials": trials},
                              indent=2))
    print(json.dumps(summary, indent=2))
    print(f"{'met' if met else 'NOT met'}: {false_alarms} A/A false alarms in {args.trials}; "
          f"{caught}/{len(jobs)} slowed jobs caught; {out}")
    return 0 if met else 1


def _pairs(trial: Path) -> int:
    return int(read_records(trial / "aa" / "baseline" / "results.jsonl")[0].context["ab"]["pairs"])


def _pinned(trial: Path) -> bool:
    """Whether an earlier interleaved trial's session pinned its pairs (read from its records)."""
    record = read_records(trial / "aa" / "baseline" / "results.jsonl")[0]
    return any(record.context.get("ab", {}).get("pair_cpus", []))


def _sides(trial: Path) -> tuple[str, dict[str, tuple[Path, Path]]] | None:
    """An earlier trial's (mode, {'aa'|'slowed': (baseline results, candidate results)}), None if incomplete."""
    interleaved = {n: (trial / n / "baseline" / "results.jsonl", trial / n / "candidate" / "results.jsonl")
                   for n in ("aa", "slowed")}
    separate = {n: (trial / "base" / "results.jsonl", trial / m / "results.jsonl")
                for n, m in (("aa", "same"), ("slowed", "slowed"))}
    for mode, sides in (("interleaved", interleaved), ("separate-runs", separate)):
        if all(p.is_file() for pair in sides.values() for p in pair):
            return mode, sides
    return None


if __name__ == "__main__":
    sys.exit(main())
