"""Command line: ``harness run | sweep | optimize | list | report | compare | gate | ab``.

Exit codes: 0 ok, 1 some job failed (run) or a regression (gate), 2 usage/input error, 3 gated metrics not judged
(gate --fail-on-unjudged)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any
from pathlib import Path

from harness import __version__

from harness.launch import interrupts
from harness.errors import HarnessInputError
from harness.types import FORMATS
from harness.plugins import load_plugins

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2

from harness.api import QUICK_SETTINGS  # noqa: E402  (re-exported: benchmarks and plugins import it from here)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Edge Harness: export PyTorch generators to ONNX and TFLite, measure them on target devices, report.",
    )
    parser.add_argument("--version", action="version", version=f"edge-harness {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a suite and write a report",
                         description="Export every model of the suite, measure each artifact on each target, "
                                     "append results to <out>/results.jsonl and write results.csv and index.html.")
    run.add_argument("--suite", metavar="FILE|NAME",
                     help="suite TOML file, or the name of a suite in the project's or the built-in suites "
                          "(default: the project's default_suite, else the built-in default)")
    run.add_argument("--target", action="append", metavar="NAME", help="target profile(s) instead of the suite's")
    run.add_argument("--model", action="append", metavar="NAME", help="model(s) instead of the suite's")
    run.add_argument("--format", action="append", choices=list(FORMATS), help="format(s) instead of the suite's")
    run.add_argument("--variant", action="append", metavar="NAME",
                     help="only these compressed variants of the suite (and those they build on); 'none' for none")
    run.add_argument("--artifact", action="append", type=Path, metavar="FILE",
                     help="measure this .onnx, .tflite or .pte (ExecuTorch) file as it is (instead of the suite's models)")
    run.add_argument("--out", type=Path, metavar="DIR", help="run folder (default: reports/<suite>-<timestamp>)")
    run.add_argument("--resume", action="store_true",
                     help="continue a run: skip jobs already in <out>/results.jsonl (default out: the latest run)")
    run.add_argument("--quick", action="store_true", help="few runs per job: a smoke test, not a measurement")
    run.add_argument("--start-runs", type=int, metavar="N",
                     help="cold and warm start: N pairs of fresh processes per job (0 = none; default: the suite's "
                          "[settings] start_runs, 3, or 0 with --quick)")
    run.add_argument("--sustained", type=float, metavar="SECONDS",
                     help="also run each job this long in windows (p50/p90, MHz, °C and energy per window; "
                          "[settings] sustained_s, sustained_window_s)")
    run.add_argument("--cache", type=Path, metavar="DIR", help="artifact cache (default: ~/.cache/edge-harness)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--cluster", metavar="ADDRESS", help="run across a Ray cluster: its head's host:port, 'auto' for "
                     "the one this machine is part of, 'local' to ignore a configured [cluster] (needs "
                     "edge-harness[cluster])")

    prof = sub.add_parser("profile", help="where the time goes: per-op profiles, roofline, placement",
                          description="Measure the chosen models, variants or artifact files as `harness run` does, "
                                      "each job followed by a profile pass (the runtime's own op profiler) and the "
                                      "roofline; print where the time goes per job and write the report.")
    prof.add_argument("--suite", metavar="FILE|NAME", help="suite TOML file or name (default: as `harness run`)")
    prof.add_argument("--target", action="append", metavar="NAME", help="target profile(s) instead of the suite's")
    prof.add_argument("--model", action="append", metavar="NAME", help="model(s) instead of the suite's")
    prof.add_argument("--format", action="append", choices=list(FORMATS),
                      help="format(s) instead of the suite's")
    prof.add_argument("--variant", action="append", metavar="NAME",
                      help="only these compressed variants (and those they build on); 'none' for none")
    prof.add_argument("--artifact", action="append", type=Path, metavar="FILE",
                      help="profile this .onnx, .tflite or .pte file as it is (no FLOP count: no PyTorch model)")
    prof.add_argument("--runs", type=int, default=20, help="profiled inferences per job (default 20)")
    prof.add_argument("--quick", action="store_true", help="few timed runs per job before the profile")
    prof.add_argument("--out", type=Path, metavar="DIR", help="run folder (default: reports/<suite>-<timestamp>)")
    prof.add_argument("--cache", type=Path, metavar="DIR", help="artifact cache (default: ~/.cache/edge-harness)")
    prof.add_argument("--no-progress", action="store_true", help="no progress bar")

    swp = sub.add_parser("sweep", help="search compression hyperparameters; Pareto front and best under limits",
                         description="Measure every point of a sweep file's [[sweep.space]] (grid or random search) "
                                     "beside fp32, in `repeats` separate runs; write sweep.json and sweep.csv with "
                                     "the Pareto front of latency × PSNR × size per model, target and batch, and "
                                     "the fastest point within [sweep.limits].")
    swp.add_argument("sweep", type=Path, help="sweep TOML file (a suite file with a [sweep] table)")
    swp.add_argument("--out", type=Path, metavar="DIR", help="sweep folder (default: reports/<name>-sweep-<timestamp>)")
    swp.add_argument("--quick", action="store_true", help="few runs per job: a smoke test, not a measurement")
    swp.add_argument("--cache", type=Path, metavar="DIR", help="artifact cache (default: ~/.cache/edge-harness)")
    swp.add_argument("--no-progress", action="store_true", help="no progress bar")

    opt = sub.add_parser("optimize", help="search compressions and runtimes for the variant that meets a budget",
                         description="Search compressions (int8 paths, mixed precision from the layers pass, "
                                     "distillation width, compositions) and deployment settings for the fastest "
                                     "variant of one model that meets the budget on one target: cheap screening "
                                     "runs first, full repeated runs beside fp32 for the points that can still meet "
                                     "it. Writes a deployment card (optimize.json, index.html), every trial with "
                                     "its reason, and the chosen file. Values default to the project file's "
                                     "[optimize] table. Exit 0 when the budget is met, 1 when not.")
    opt.add_argument("--model", metavar="NAME", help="the model (a built-in, a model file's or a declared one)")
    opt.add_argument("--target", metavar="NAME", help="the target profile")
    for flag, unit in (("--min-speedup", "× fp32 ONNX Runtime's p50 (its sampling loop for a denoiser)"),
                       ("--min-psnr", "dB vs fp32 (the sampling loop's images for a denoiser)"),
                       ("--min-labels", "label agreement with fp32, 0–1 (digits generators)"),
                       ("--max-p50-ms", "ms, the p50's CI upper bound"), ("--max-p90-ms", "ms"),
                       ("--max-memory-mb", "MB peak resident memory of the worker"),
                       ("--max-size-mb", "MB, the artifact file"),
                       ("--min-throughput", "images/s at the point's batch (the search then also tries larger "
                                            "batches)")):
        opt.add_argument(flag, type=float, metavar="X", help=unit)
    opt.add_argument("--batch", type=int, metavar="N", help="batch size (default 1)")
    opt.add_argument("--time-limit", metavar="DURATION", help="e.g. 90s, 4m, 1h (default 45m)")
    opt.add_argument("--format", action="append", choices=list(FORMATS),
                     help="formats to search (default: onnx, tflite, executorch)")
    opt.add_argument("--knob", action="append", metavar="NAME", help="only these knobs (see --list-knobs)")
    opt.add_argument("--method", action="append", metavar="NAME", help="only these compressors")
    opt.add_argument("--seed", type=int, help="seed of the width search (default 0)")
    opt.add_argument("--out", type=Path, metavar="DIR", help="search folder (default: reports/optimize-<model>-<time>)")
    opt.add_argument("--resume", type=Path, metavar="DIR", help="continue the search in DIR (its trials are kept)")
    opt.add_argument("--cache", type=Path, metavar="DIR", help="artifact cache (default: ~/.cache/edge-harness)")
    opt.add_argument("--no-progress", action="store_true", help="no progress bar")
    opt.add_argument("--list-knobs", action="store_true", help="list the search knobs and exit")

    lst = sub.add_parser("list", help="list models, targets, suites or compressors, and where each comes from",
                         description="List the models, target profiles and suites this folder's harness sees (the "
                                     "built-ins, then the project's, which override built-ins by name), or the "
                                     "registered compressors.")
    lst.add_argument("what", choices=["models", "targets", "suites", "compressors"])

    node = sub.add_parser("node", help="make this machine a node of a device lab (a Ray cluster)",
                          description="Start Ray on this machine as a node of the lab, declaring the targets it "
                                      "reaches (its own CPU, or boards over SSH) and whether it takes build work; "
                                      "`harness run --cluster` then measures across the nodes. `resources` prints "
                                      "what `ray start --resources` needs, for clusters started another way.")
    node.add_argument("action", choices=["start", "resources"])
    where = node.add_mutually_exclusive_group()
    where.add_argument("--head", action="store_true", help="start the cluster's head here")
    where.add_argument("--address", metavar="HOST:PORT", help="join the cluster whose head is there")
    node.add_argument("--targets", default="", metavar="NAME,...", help="target profiles this node reaches")
    node.add_argument("--build", action="store_true",
                      help="this node takes build work (training, compression, export)")
    node.add_argument("--measure-cpus", default="", metavar="CPUS",
                      help="pin local targets' measurements to these CPUs (e.g. 0 or 2-3); build work gets the others")
    node.epilog = "Arguments after -- go to `ray start` (e.g. -- --port=6379 --num-cpus=1)."

    init = sub.add_parser("init", help="write a starter edge-harness.toml and suite into this project",
                          description="Write a commented edge-harness.toml (your generator, its inputs and "
                                      "checkpoint) and bench/suites/quick.toml into the current folder. Never "
                                      "overwrites a file.")
    init.add_argument("--dir", type=Path, default=Path("."), help="project folder (default: the current one)")

    rep = sub.add_parser("report", help="derive CSV and HTML from a results file",
                         description="Write results.csv, summary.csv and index.html from a results.jsonl.")
    rep.add_argument("results", type=Path, help="results.jsonl (or the run folder holding it)")
    rep.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: beside the results)")
    rep.add_argument("--pytest-benchmark", type=Path, metavar="FILE",
                     help="also write the latency samples in pytest-benchmark's JSON format "
                          "(read by `pytest-benchmark compare`)")

    from harness.analysis.compare import METRICS

    cmp = sub.add_parser("compare", help="compare two runs metric by metric (ratio, CI, significance)",
                         description="For every job that succeeded in both runs: per metric the candidate/base "
                                     "ratio, its 95%% bootstrap CI and a significance test (Mann-Whitney U for "
                                     "p50, bootstrap for p90), with the direction of better known per metric.")
    cmp.add_argument("base", type=Path, help="baseline results.jsonl (or run folder)")
    cmp.add_argument("candidate", type=Path, help="candidate results.jsonl (or run folder)")
    cmp.add_argument("--metric", action="append", choices=list(METRICS), help="only these metrics")
    cmp.add_argument("--csv", type=Path, metavar="FILE", help="also write the table as CSV")

    hist = sub.add_parser("history", help="a metric history across runs, with the runs where metrics stepped",
                          description="Read every run under the folders (the run folders a CI keeps), order them by "
                                      "when they were measured, find steps per job and metric (penalised step "
                                      "fitting, larger than the gate's thresholds) and write a self-contained "
                                      "index.html and summary.md. Exit 1 with --fail-on-new-step when the newest "
                                      "run starts a step for the worse.")
    hist.add_argument("folders", type=Path, nargs="+", metavar="DIR", help="run folders, or folders holding them")
    hist.add_argument("--out", type=Path, metavar="DIR", help="where index.html and summary.md go "
                                                              "(default: reports/history)")
    hist.add_argument("--config", type=Path, metavar="TOML", help="gate file: thresholds and per-job overrides")
    hist.add_argument("--metric", action="append", choices=list(METRICS), help="only these metrics")
    hist.add_argument("--markdown", type=Path, metavar="FILE",
                      help="also append the summary here (e.g. $GITHUB_STEP_SUMMARY)")
    hist.add_argument("--fail-on-new-step", action="store_true",
                      help="exit 1 when the newest run starts a worsening step")

    gate = sub.add_parser("gate", help="fail CI on a significant regression beyond a threshold",
                          description="Exit 0 when no metric got significantly worse by more than its threshold, "
                                      "1 on a regression (or a job that broke or went missing), 2 on an error, 3 "
                                      "when gated metrics could not be judged (with --fail-on-unjudged).")
    gate.add_argument("--baseline", type=Path, action="append", required=True, metavar="RESULTS",
                      help="baseline results.jsonl or run folder (repeat to pool several runs)")
    gate.add_argument("--candidate", type=Path, action="append", required=True, metavar="RESULTS",
                      help="candidate results.jsonl or run folder (repeat to pool several runs)")
    gate.add_argument("--config", type=Path, metavar="TOML", help="thresholds, alpha and per-job overrides")
    gate.add_argument("--markdown", type=Path, metavar="FILE",
                      help="write the markdown summary here (appends: use $GITHUB_STEP_SUMMARY); default stdout")
    gate.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    gate.add_argument("--fail-on-unjudged", action="store_true",
                      help="exit 3 when a gated metric could not be judged (its pass was disturbed by other load, or "
                           "too few rounds to test at alpha) and nothing regressed; as fail_on_unjudged in the file")

    ab = sub.add_parser("ab", help="measure two runs' latency again side by side (lockstep pairs), for `gate`",
                        description="For every job that succeeded in both runs (local targets): run pairs of "
                                    "fresh workers, one per side, taking turns of 50 ms of timed calls on the same "
                                    "CPUs (the leading side alternates), each side with its own python, checkout "
                                    "and environment; write <out>/baseline and "
                                    "<out>/candidate results with the session's latency. `harness gate` then tests "
                                    "the pairs' ratios, which machine drift between runs cannot fake.")
    ab.add_argument("--baseline", type=Path, required=True, metavar="RUN", help="baseline run folder")
    ab.add_argument("--candidate", type=Path, required=True, metavar="RUN", help="candidate run folder")
    ab.add_argument("--out", type=Path, required=True, metavar="DIR", help="session folder")
    ab.add_argument("--pairs", type=int, default=None, metavar="N", help="rounds per side (default 8)")
    ab.add_argument("--no-pin", action="store_true",
                    help="let the OS place the workers instead of pinning both of a pair to the same CPUs")
    for side in ("baseline", "candidate"):
        ab.add_argument(f"--{side}-python", metavar="PY", help=f"python that runs the {side}'s workers "
                                                                 "(default: this one)")
        ab.add_argument(f"--{side}-root", type=Path, metavar="DIR",
                        help=f"checkout whose worker code measures the {side} (default: this one)")
        ab.add_argument(f"--{side}-env", action="append", default=[], metavar="KEY=VALUE",
                        help=f"environment variable for the {side}'s workers (repeatable)")
    return parser


def _side(args: argparse.Namespace, name: str):
    from harness.run.interleave import Side

    env = {}
    for item in getattr(args, f"{name}_env"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarnessInputError(f"--{name}-env {item!r}: expected KEY=VALUE")
        env[key] = value
    root = getattr(args, f"{name}_root")
    if root is not None and not (root / "harness" / "worker.py").is_file():
        raise HarnessInputError(f"--{name}-root {root}: not an Edge Harness checkout (no harness/worker.py)")
    run_dir = getattr(args, name)
    if not run_dir.is_dir():
        raise HarnessInputError(f"--{name} {run_dir}: not a run folder")
    defaults = Side(name, run_dir)
    return Side(name, run_dir, getattr(args, f"{name}_python") or defaults.python,
                (root or defaults.root).resolve(), env)


def _cmd_ab(args: argparse.Namespace) -> int:
    from harness.run.interleave import DEFAULT_PAIRS, run_ab

    session = run_ab(_side(args, "baseline"), _side(args, "candidate"), args.out,
                     args.pairs if args.pairs is not None else DEFAULT_PAIRS, pin=not args.no_pin)
    print(f"ab: session {session.session_id}: {len(session.jobs)} jobs, {len(session.failed)} failed, "
          f"{len(session.left_out)} left out", file=sys.stderr)
    print(f"harness gate --baseline {session.results['baseline']} --candidate {session.results['candidate']}")
    return EXIT_JOB_FAILED if session.failed else EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from harness import api

    run = api.run(args.suite, models=args.model or (), targets=args.target or (), formats=args.format or (),
                  variants=args.variant or (), artifacts=args.artifact or (), quick=args.quick, out=args.out,
                  cache=args.cache, resume=args.resume, progress=not args.no_progress, cluster=args.cluster,
                  settings=({} if args.start_runs is None else {"start_runs": args.start_runs})
                  | ({} if args.sustained is None else {"sustained_s": args.sustained}))
    if not run.records:
        print("no job ran: nothing to report", file=sys.stderr)
        return EXIT_JOB_FAILED
    counts = ", ".join(f"{n} {status}" for status, n in sorted(run.statuses.items())) or "nothing new"
    print(f"jobs: {counts}; artifacts built {run.artifacts_built}, reused {run.artifacts_reused}"
          + (f"; {run.already_done} already done" if run.already_done else ""), file=sys.stderr)
    print(f"report: {run.html}", file=sys.stderr)
    print(run.results_path)
    return EXIT_JOB_FAILED if any(s not in ("ok", "unsupported") for s in run.statuses) else EXIT_OK


def _cmd_profile(args: argparse.Namespace) -> int:
    from harness import api
    from harness.report.profile import profile_text

    if args.runs < 1:
        raise HarnessInputError(f"--runs must be at least 1, not {args.runs}")
    run = api.run(args.suite, models=args.model or (), targets=args.target or (), formats=args.format or (),
                  variants=args.variant or (), artifacts=args.artifact or (), quick=args.quick, out=args.out,
                  cache=args.cache, progress=not args.no_progress, settings={"profile_runs": args.runs, "start_runs": 0})
    if not run.records:
        print("no job ran: nothing to profile", file=sys.stderr)
        return EXIT_JOB_FAILED
    print(profile_text(run.records), file=sys.stderr)
    for r in run.records:
        why = r.context.get("op_profile_unavailable") or (
            (r.error.splitlines() or [r.status])[0] if r.status != "ok" else "")
        if why:
            print(f"{r.model} {r.variant} {r.format}/{r.runtime} on {r.target}: no profile: {why}", file=sys.stderr)
    print(f"report: {run.html}", file=sys.stderr)
    print(run.results_path)
    return EXIT_JOB_FAILED if any(s not in ("ok", "unsupported") for s in run.statuses) else EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from harness.run.sweep import fronts, load_sweep, run_sweep, write_sweep

    suite, sweep = load_sweep(args.sweep)
    if args.quick:
        suite = dataclasses.replace(suite, settings=dataclasses.replace(suite.settings, **QUICK_SETTINGS))
    out, rows = run_sweep(suite, sweep, out=args.out, cache=args.cache, progress=not args.no_progress,
                          say=lambda line: print(line, file=sys.stderr))
    if not rows:
        print("no job ran: nothing to report", file=sys.stderr)
        return EXIT_JOB_FAILED
    best = fronts(rows, sweep.limits)
    path = write_sweep(out, sweep, rows, best)
    for group in best:
        print(f"{group['model']} @{group['target']} b{group['batch_size']}: front: {'; '.join(group['front'])}",
              file=sys.stderr)
        if sweep.limits:
            print(f"  best within {group['limits']}: {group['best'] or 'no point fits'}", file=sys.stderr)
    print(path)
    return EXIT_OK


def _cmd_optimize(args: argparse.Namespace) -> int:
    from harness import api

    if args.list_knobs:
        from harness.registry import SEARCH_KNOBS
        from harness.run import knobs  # noqa: F401  (registers the built-in knobs)

        for name in SEARCH_KNOBS.names():
            knob = SEARCH_KNOBS.get(name)
            print(f"{name:<16} {knob.description}")
        return EXIT_OK
    if args.resume and args.out:
        raise HarnessInputError("give --resume DIR or --out DIR, not both")
    given = {"min_speedup": args.min_speedup, "min_psnr": args.min_psnr, "min_labels": args.min_labels,
             "max_p50_ms": args.max_p50_ms, "max_p90_ms": args.max_p90_ms, "max_memory_mb": args.max_memory_mb,
             "max_size_mb": args.max_size_mb, "min_throughput": args.min_throughput, "batch": args.batch, "formats": args.format, "knobs": args.knob,
             "methods": args.method, "seed": args.seed}
    found = api.optimize(args.model, args.target, args.time_limit, out=args.resume or args.out,
                         resume=args.resume is not None, cache=args.cache, progress=not args.no_progress,
                         **{k: v for k, v in given.items() if v is not None})
    card = found.card
    if found.status == "interrupted":
        print(f"harness: interrupted; the trials are kept: harness optimize --resume {found.folder}", file=sys.stderr)
        return 130
    chosen = card.get("chosen")
    if chosen:
        print(f"budget met: {chosen['candidate']} {chosen['format']}/{chosen['runtime']}: {chosen['speedup']:.2f}× "
              f"(CI low {chosen['speedup_ci'][0]:.2f}×), PSNR {_db(chosen['psnr_db'])}; file {found.folder / chosen['artifact']}"
              if chosen.get("artifact") else f"budget met: {chosen['candidate']} (file not found in the cache)",
              file=sys.stderr)
        if chosen.get("note"):
            print(f"note: {chosen['note']}", file=sys.stderr)
    else:
        miss = card.get("nearest_miss")
        print(f"budget not met ({card['budget_text']}) in {card['time_spent_s']:.0f} s"
              + (f"; nearest: {miss['candidate']} {miss['format']}/{miss['runtime']}: {miss['reason']}" if miss else "")
              + f"; front: {'; '.join(card['front']) or '–'}", file=sys.stderr)
    print(f"card: {found.html}", file=sys.stderr)
    print(found.folder / "optimize.json")
    return EXIT_OK if chosen else EXIT_JOB_FAILED


def _db(value: Any) -> str:
    return f"{value:.1f} dB" if isinstance(value, (int, float)) else f"{value} dB"


def _cmd_node(args: argparse.Namespace) -> int:
    import json

    from harness.config import paths
    from harness.config.targets import get_target
    from harness.launch.cluster import node_resources, parse_cpus, start_node

    targets = [get_target(paths.targets_dirs(), name) for name in filter(None, args.targets.split(","))]
    cpus = parse_cpus(args.measure_cpus)
    if args.action == "resources":
        print(json.dumps(node_resources(targets, args.build, cpus)))
        return EXIT_OK
    if not args.head and not args.address:
        raise HarnessInputError("harness node start: give --head (a new lab) or --address HOST:PORT (join one)")
    if not targets and not args.build:
        raise HarnessInputError("harness node start: the node would offer nothing: give --targets and/or --build")
    return start_node(None if args.head else args.address, targets, args.build, cpus, args.ray_args)


def _cmd_list(args: argparse.Namespace) -> int:
    from harness.config import paths

    if args.what == "compressors":
        from harness.compress import compressor
        from harness.registry import COMPRESSORS

        for name in COMPRESSORS.names():
            comp = compressor(name)
            params = ", ".join(f"{k}={v!r}" for k, v in comp.params.items()) or "no parameters"
            print(f"{name:16} {comp.stage:6} {comp.description} ({params})")
        return EXIT_OK
    if args.what == "models":
        from harness.zoo import discover_all, get_model

        for name in discover_all():
            spec = get_model(name)
            print(f"{name:16} {spec.kind:10} {spec.description}  [{_origin(spec.source)}]")
    elif args.what == "suites":
        found: dict[str, Path] = {}
        for folder in paths.suites_dirs():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = path
        for name, path in sorted(found.items()):
            print(f"{name:16} [{_origin(str(path))}]")
    else:
        from harness.config.targets import get_target, target_files

        broken = 0
        for name, path in target_files(paths.targets_dirs()).items():
            try:
                t = get_target(paths.targets_dirs(), name)
            except HarnessInputError as exc:  # one bad profile does not hide the others
                broken += 1
                print(f"{name:16} {'broken':8} {'':8} {exc}")
                continue
            print(f"{name:16} {t.reach:8} {t.arch:8} {t.description}  [{_origin(str(path))}]")
        if broken:
            print(f"harness: error: {broken} target profile(s) cannot be used (above)", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK


def _origin(source: str) -> str:
    """Where a model, target or suite comes from: 'built-in' or its file."""
    from harness.config import paths

    path = Path(source)
    for kind in ("models", "targets", "suites"):
        if path.parent == paths.builtin_dir(kind).resolve() or path.parent == paths.builtin_dir(kind):
            return "built-in"
    return str(path)


def _cmd_init(args: argparse.Namespace) -> int:
    from harness.config.starter import write_starter

    for path in write_starter(args.dir):
        print(path)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report

    results = args.results / "results.jsonl" if args.results.is_dir() else args.results
    written = write_report(results, args.out)
    if args.pytest_benchmark:
        from harness.report.pytest_benchmark import write_pytest_benchmark
        from harness.results.store import read_records

        written["pytest_benchmark"] = write_pytest_benchmark(read_records(results), args.pytest_benchmark)
    for path in written.values():
        print(path)
    return EXIT_OK


def _records(paths: list[Path]) -> list:
    from harness.results.store import read_records

    out = []
    for path in paths:
        out.extend(read_records(path / "results.jsonl" if path.is_dir() else path))
    return out


def _cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.analysis.compare import METRICS, compare_runs, comparisons_table, key_label, p_text
    from harness.report.tables import write_csv

    comparisons, status = compare_runs(_records([args.base]), _records([args.candidate]),
                                       args.metric or list(METRICS))
    if not comparisons:
        raise HarnessInputError("no job succeeded in both runs: nothing to compare")
    rows = []
    for c in comparisons:
        ci = f"[{c.ci_low:.3f}, {c.ci_high:.3f}]" if c.ci_low is not None else ""
        p = f"p={p_text(c.p_value)}" if c.p_value is not None else ""
        direction = "worse" if c.worse_by > 0 else "better" if c.worse_by < 0 else "same"
        ratio = f"×{c.ratio:.3f}" if c.ratio is not None else ""
        rows.append(f"{key_label(c.key)}  {c.spec.label}: {c.base:.4g} → {c.candidate:.4g} {c.spec.unit} "
                    f"{ratio} {ci} {p} ({direction}, {c.spec.better} is better) {c.note}".rstrip())
    print("\n".join(rows))
    for what in ("broken", "missing", "new", "fixed"):
        for item in status[what]:
            key = item[0] if what == "broken" else item
            print(f"{key_label(key)}: {what}")
    if args.csv:
        write_csv(pd.DataFrame(comparisons_table(comparisons)), args.csv)
    return EXIT_OK


def _cmd_gate(args: argparse.Namespace) -> int:
    from harness.analysis.gate import junit_xml, load_gate_config, markdown_summary, run_gate

    config = load_gate_config(args.config)
    if args.fail_on_unjudged:
        config = dataclasses.replace(config, fail_on_unjudged=True)
    result = run_gate(_records(args.baseline), _records(args.candidate), config)
    summary = markdown_summary(result)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(summary)
    else:
        print(summary)
    if args.junit:
        args.junit.write_text(junit_xml(result), encoding="utf-8")
    from harness.analysis.gate import UNJUDGED_ADVICE

    if result.untestable:
        print(f"harness: warning: {len(result.untestable)} comparisons are not gated: "
              f"{result.untestable[0].reason}", file=sys.stderr)
    unjudged = result.unjudged_text()
    print(f"gate: {result.headline}: {len(result.regressions)} regressions, {len(result.broken)} broken, "
          f"{len(result.missing)} missing" + (f"; {unjudged}: {UNJUDGED_ADVICE}" if unjudged else ""),
          file=sys.stderr)
    return result.exit_code


def _cmd_history(args: argparse.Namespace) -> int:
    from harness.analysis.gate import load_gate_config
    from harness.analysis.history import new_worsening_steps, series_of, steps_of
    from harness.config import paths
    from harness.report.history import markdown_summary, write_history
    from harness.results.runs import find_runs

    runs = find_runs(args.folders)
    if len(runs) < 2:
        raise HarnessInputError(f"a history needs at least 2 runs; found {len(runs)} under "
                                f"{', '.join(map(str, args.folders))}")
    series = series_of([run.records for run in runs], load_gate_config(args.config), args.metric)
    reports = steps_of(series)
    new = new_worsening_steps(reports, len(runs) - 1)
    written = write_history(runs, series, reports, new, args.out or paths.reports_dir() / "history")
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write(markdown_summary(runs, series, reports, new))
    for r in reports:
        print(f"step: {r.series.label} {r.series.metric.name} at run {r.run + 1} ({runs[r.run].label}): "
              f"{r.before:.4g} -> {r.after:.4g} ({'worse' if r.worse else 'better'})", file=sys.stderr)
    for s in series:
        if s.unconfirmed:
            print(f"not a step (yet): {s.label} {s.metric.name} at run {s.points[-1].run + 1}: {s.unconfirmed[1]}",
                  file=sys.stderr)
    print(f"history: {len(runs)} runs, {len(series)} series, {len(reports)} steps, {len(new)} new worsening; "
          f"report: {written['html']}", file=sys.stderr)
    print(written["markdown"])
    return EXIT_JOB_FAILED if args.fail_on_new_step and new else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:len(argv) - len(extra) - 1] if "--" in argv else argv)
    if extra and args.command != "node":
        parser.error(f"arguments after -- are only for `harness node`: {' '.join(extra)}")
    args.ray_args = extra
    commands = {"run": _cmd_run, "profile": _cmd_profile, "sweep": _cmd_sweep, "optimize": _cmd_optimize, "list": _cmd_list, "node": _cmd_node,
                "report": _cmd_report,
                "compare": _cmd_compare, "gate": _cmd_gate, "history": _cmd_history, "ab": _cmd_ab, "init": _cmd_init}
    try:
        load_plugins()
        with interrupts.watching():
            return commands[args.command](args)
    except HarnessInputError as exc:
        if args.debug:
            raise
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a file the user named cannot be read or written
        if args.debug:
            raise
        print(f"harness: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.command == "ab":
            print(f"harness: interrupted; the whole pairs measured so far are kept in {args.out}", file=sys.stderr)
        else:
            print("harness: interrupted; results measured so far are kept (re-run with --resume)", file=sys.stderr)
        return 130
