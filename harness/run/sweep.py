"""``harness sweep``: search compression hyperparameters, measure every point beside fp32, and give the
noise-aware Pareto front of latency × fidelity × size per model, target and batch, with the best point under
the user's limits.

A sweep file is a suite file (models, targets, formats, batch sizes, settings) with a ``[sweep]`` table:

    [sweep]
    search = "grid"          # grid: every combination | random: `budget` combinations drawn with `seed`
                             # | optuna: `budget` trials of Optuna's multi-objective TPE (latency, PSNR)
    budget = 0               # random/optuna: how many points; grid: refuse to run more than this (0 = no cap)
    repeats = 2              # each point is measured in this many separate runs (fresh workers each time)
    seed = 0
    threads = [1, 2]         # optional: also sweep intra-op threads (each a copy of every target profile)
    [sweep.limits]           # optional: the best point must stay within these
    latency_ms = 1.0
    size_mb = 4.0
    psnr_db = 30.0
    [[sweep.space]]          # one table per compressor; a list is a dimension, a scalar is fixed
    method = "distill"
    amount = [0.5, 0.625, 0.75]

Latency is known to within the bootstrap CIs of the median over the repeated runs (lowest low to highest high);
two points whose intervals overlap are tied on latency (see ``harness.analysis.pareto``).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import HarnessInputError
from harness.analysis.sweep_fronts import OBJECTIVES, PSNR_CAP_DB, aggregate, as_number, fronts  # noqa: F401
from harness.config.suite import Suite, suite_from_table
from harness.config.tomlconfig import check_keys, check_list_of, read_toml
from harness.types import CompressionSpec

SEARCHES = ("grid", "random", "optuna")
LIMIT_KEYS = {o.name: (float, int) for o in OBJECTIVES}
_SWEEP_SCHEMA = {"search": str, "budget": int, "repeats": int, "seed": int, "threads": list, "limits": dict,
                 "space": list}


@dataclass(frozen=True)
class Sweep:
    search: str = "grid"
    budget: int = 0
    repeats: int = 2
    seed: int = 0
    threads: tuple[int, ...] = ()
    limits: Mapping[str, float] = field(default_factory=dict)
    points: tuple[CompressionSpec, ...] = ()
    """The compressed variants chosen by the search (fp32 is always measured beside them); for ``optuna``
    every grid point, of which the study picks ``budget`` one at a time."""
    grid_size: int = 0
    space: tuple[tuple[str, tuple[tuple[str, tuple[Any, ...]], ...]], ...] = ()
    """(method, ((parameter, values), …)) per [[sweep.space]] table: the dimensions Optuna samples."""


def load_sweep(path: Path) -> tuple[Suite, Sweep]:
    """Read a sweep file: the suite part, and the search over ``[[sweep.space]]``."""
    data = read_toml(path)
    raw = data.pop("sweep", None)
    if not isinstance(raw, dict):
        raise HarnessInputError(f"{path}: a sweep file needs a [sweep] table with [[sweep.space]] tables")
    if "variants" in data:
        raise HarnessInputError(f"{path}: a sweep file takes its variants from [[sweep.space]], not [[variants]]")
    suite = suite_from_table(path, data)
    check_keys(path, raw, _SWEEP_SCHEMA, where="sweep")
    search = raw.get("search", "grid")
    if search not in SEARCHES:
        raise HarnessInputError(f"{path}: [sweep] search must be one of {', '.join(SEARCHES)}, not {search!r}")
    budget, repeats, seed = raw.get("budget", 0), raw.get("repeats", 2), raw.get("seed", 0)
    if budget < 0 or repeats < 1 or (search != "grid" and budget < 1):
        raise HarnessInputError(f"{path}: [sweep] needs repeats >= 1 and budget >= 0 "
                                f"(>= 1 for search = {search!r})")
    if search == "optuna" and not (len(suite.models or ()) == 1 and len(suite.targets) == 1
                                   and len(suite.batch_sizes) == 1):
        raise HarnessInputError(f"{path}: an optuna search optimises one model on one target at one batch size: "
                                f"list exactly one of each (models, targets, batch_sizes)")
    threads = raw.get("threads", [])
    check_list_of(path, "sweep.threads", threads, int)
    if any(t < 0 for t in threads):
        raise HarnessInputError(f"{path}: [sweep] threads must be >= 0 (0 = every core)")
    limits = raw.get("limits", {})
    check_keys(path, limits, LIMIT_KEYS, where="sweep.limits")
    grid = expand_space(path, raw.get("space", []))
    if search == "grid" and budget and len(grid) > budget:
        raise HarnessInputError(f"{path}: the grid has {len(grid)} points, over the budget of {budget} "
                                f"(raise the budget or use search = \"random\")")
    points = random.Random(seed).sample(grid, min(budget, len(grid))) if search == "random" else grid
    space = tuple((t["method"], tuple((k, tuple(v if isinstance(v, list) else [v])) for k, v in t.items()
                                      if k != "method")) for t in raw["space"])
    return suite, Sweep(search, budget, repeats, seed, tuple(threads), {k: float(v) for k, v in limits.items()},
                        tuple(points), len(grid), space)


def expand_space(path: Path, tables: list) -> list[CompressionSpec]:
    """Every combination of each ``[[sweep.space]]`` table's list-valued parameters, as variants named
    ``method(param=value, …)``; each combination is checked like a suite variant."""
    from harness.compress import resolve_params

    if not tables:
        raise HarnessInputError(f"{path}: [sweep] has no [[sweep.space]] table (what should it search?)")
    points: list[CompressionSpec] = []
    for i, table in enumerate(tables):
        where = f"sweep.space[{i}]"
        if not isinstance(table, dict) or not isinstance(table.get("method"), str):
            raise HarnessInputError(f"{path}: {where} must be a table with a 'method' (harness list compressors)")
        method = table["method"]
        dims = {k: (v if isinstance(v, list) else [v]) for k, v in table.items() if k != "method"}
        if any(not values for values in dims.values()):
            raise HarnessInputError(f"{path}: {where}: an empty list gives no point")
        for combo in itertools.product(*dims.values()):
            given = dict(zip(dims, combo))
            try:
                params = resolve_params(method, given)
            except HarnessInputError as exc:
                raise HarnessInputError(f"{path}: {where}: {exc}") from None
            name = point_name(method, given)
            if any(p.name == name for p in points):
                raise HarnessInputError(f"{path}: {where}: point {name} appears twice")
            points.append(CompressionSpec(name=name, method=method, params=params))
    return points


def sweep_suite(suite: Suite, sweep: Sweep) -> Suite:
    return dataclasses.replace(suite, variants=sweep.points)


def point_name(method: str, given: Mapping[str, Any]) -> str:
    label = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in given.items())
    return f"{method}({label})" if label else method


def optuna_search(sweep: Sweep, measure: Any) -> list[dict[str, Any]]:
    """Ask Optuna (multi-objective TPE, seeded) for ``sweep.budget`` points one at a time; ``measure(point)``
    runs the suite with that one variant ``repeats`` times and returns its aggregated rows. The objectives are
    the point's fastest latency (any format and runtime) and its PSNR; a point that fails is told as failed.
    Returns every row measured (fp32's from every trial pooled)."""
    try:
        import optuna
    except ImportError:
        raise HarnessInputError("search = \"optuna\" needs the optuna package (pip install optuna)") from None
    from harness.compress import resolve_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=optuna.samplers.TPESampler(seed=sweep.seed))
    rounds: list[list[dict[str, Any]]] = []
    seen: dict[str, tuple[float, float] | None] = {}
    for _ in range(sweep.budget):
        trial = study.ask()
        index = trial.suggest_categorical("space", list(range(len(sweep.space))))
        method, dims = sweep.space[index]
        given = {k: (trial.suggest_categorical(f"{method}.{k}", list(values)) if len(values) > 1 else values[0])
                 for k, values in dims}
        point = CompressionSpec(point_name(method, given), method, resolve_params(method, given))
        if point.name not in seen:  # a point already measured is told its figures again, not re-run
            rows = measure(point)
            rounds.append(rows)
            mine = [r for r in rows if r["variant"] == point.name and r.get("latency_ms") is not None]
            seen[point.name] = (min(r["latency_ms"] for r in mine), min(r["psnr_db"] for r in mine)) \
                if mine and all(r.get("psnr_db") is not None for r in mine) else None
        values = seen[point.name]
        if values is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, [values[0], min(values[1], 1e6)])
    return _merge_trials(rounds)


def _merge_trials(trials: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several trials: each compressed point once; fp32 (measured in every trial) from all of them."""
    merged: dict[tuple, dict[str, Any]] = {}
    for rows in trials:
        for row in rows:
            key = (row["model"], row["target"], row["batch_size"], row["variant"], row["format"], row["runtime"])
            if key not in merged:
                merged[key] = dict(row)
                continue
            base = merged[key]
            runs = base.get("latency_runs_ms", []) + row.get("latency_runs_ms", [])
            base.update(runs=base["runs"] + row["runs"], runs_ok=base["runs_ok"] + row["runs_ok"],
                        latency_runs_ms=runs)
            if runs:
                base["latency_ms"] = statistics.median(runs)
                base["latency_low_ms"] = min(v for v in (base.get("latency_low_ms"), row.get("latency_low_ms"))
                                             if v is not None)
                base["latency_high_ms"] = max(v for v in (base.get("latency_high_ms"), row.get("latency_high_ms"))
                                              if v is not None)
    return list(merged.values())


def thread_targets(targets: Sequence[Any], threads: Sequence[int]) -> list[Any]:
    """Each target profile once per thread count (named ``<target>@<n>t``), or as it is without ``threads``."""
    if not threads:
        return list(targets)
    return [dataclasses.replace(t, name=f"{t.name}@{n}t", threads=n) for t in targets for n in threads]


def run_sweep(suite: Suite, sweep: Sweep, out: Path | None = None, cache: Path | None = None, progress: bool = True,
              say: Any = print) -> tuple[Path, list[dict[str, Any]]]:
    """Measure a sweep: every point (or every Optuna trial) beside fp32, ``sweep.repeats`` separate runs each, on
    every target (× ``sweep.threads``). Returns the sweep folder and the aggregated rows (``aggregate``)."""
    from harness.config import paths
    from harness.config.targets import get_target
    from harness.run.runner import new_run_dir

    out = out or new_run_dir(paths.reports_dir(), f"{suite.name}-sweep")
    targets = thread_targets([get_target(paths.targets_dirs(), t) for t in suite.targets], sweep.threads)
    count = f"{sweep.budget} trials" if sweep.search == "optuna" else f"{len(sweep.points)} points"
    say(f"sweep {suite.name}: {count} ({sweep.search}, grid of {sweep.grid_size}) + fp32, {sweep.repeats} runs "
        f"each, on {', '.join(t.name for t in targets)} → {out}")

    def measure(variants: tuple, folder: Path) -> list[dict[str, Any]]:
        return measure_rounds(dataclasses.replace(suite, variants=variants), folder, sweep.repeats, targets,
                              cache=cache, progress=progress)[0]

    if sweep.search == "optuna":
        trial = iter(range(1, sweep.budget + 1))
        return out, optuna_search(sweep, lambda point: measure((point,), out / f"trial-{next(trial)}"))
    return out, measure(sweep_suite(suite, sweep).variants, out)


def measure_rounds(suite: Suite, folder: Path, repeats: int, targets: Sequence[Any] | None = None,
                   cache: Path | None = None, progress: bool = True, resume: bool = False
                   ) -> tuple[list[dict[str, Any]], list[Path]]:
    """Run ``suite`` ``repeats`` times (fresh workers each time) into ``folder/run-N``, each with its report;
    return the rows aggregated over the runs (``aggregate``) and the runs' results files. The one measuring step
    of ``harness sweep`` and ``harness optimize``. ``resume``: a run folder that exists keeps its jobs."""
    from harness.config import paths
    from harness.report import write_report
    from harness.report.compression import compression_frame
    from harness.report.tables import summary_frame
    from harness.results.store import read_records
    from harness.run.runner import SuiteRunner

    rounds, results_files = [], []
    for i in range(repeats):
        run_dir = folder / f"run-{i + 1}"
        runner = SuiteRunner(suite, out_dir=run_dir, cache_dir=cache or paths.cache_dir(), progress=progress,
                             targets=list(targets) if targets is not None else None,
                             resume=resume and (run_dir / "results.jsonl").exists())
        results = runner.run().results_path
        if results.exists():
            write_report(results)
            rounds.append(compression_frame(summary_frame(read_records(results))).to_dict("records"))
            results_files.append(results)
    return aggregate(rounds), results_files


def write_sweep(out_dir: Path, sweep: Sweep, rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> Path:
    """sweep.json (every point with its runs, the fronts and the best points) and sweep.csv."""
    import pandas as pd

    from harness.report.tables import write_csv

    path = out_dir / "sweep.json"
    path.write_text(json.dumps(_finite({
        "search": sweep.search, "budget": sweep.budget, "repeats": sweep.repeats, "seed": sweep.seed,
        "threads": list(sweep.threads), "grid_size": sweep.grid_size, "points": [p.to_dict() for p in sweep.points],
        "measured": sorted({r["variant"] for r in rows}),
        "rows": rows, "fronts": summary}), indent=1, default=str))
    write_csv(pd.DataFrame([{k: v for k, v in r.items() if not k.endswith("_runs_ms")} for r in rows]),
              out_dir / "sweep.csv")
    return path


def _finite(value: Any) -> Any:
    """JSON has no infinity: an infinite PSNR (outputs identical to the reference) is written as "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf" if value < 0 else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
