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
two points whose intervals overlap are tied on latency (see ``harness.pareto``).
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
from harness.pareto import Objective, Point, best_under, pareto_front
from harness.suite import Suite, suite_from_table
from harness.tomlconfig import check_keys, check_list_of, read_toml
from harness.types import CompressionSpec

SEARCHES = ("grid", "random", "optuna")
OBJECTIVES = (Objective("latency_ms", "min"), Objective("psnr_db", "max"), Objective("size_mb", "min"))
LIMIT_KEYS = {o.name: (float, int) for o in OBJECTIVES}
PSNR_CAP_DB = 100.0
"""PSNRs above this are float round-off against the reference (an export of the fp32 model): ties, not wins."""
PSNR_RESOLUTION_DB = 0.1
"""PSNRs this close are ties: the same model in two formats differs by round-off, not by fidelity."""
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


# -- aggregation (pure) --------------------------------------------------------------------------------------
def aggregate(rounds: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Summary rows of each repeated run → one row per (model, target, batch, variant, format, runtime): the
    median of the per-run medians, its interval (lowest CI low to highest CI high), PSNR (inf when identical to
    the reference), size, and how many runs were ok."""
    grouped: dict[tuple, list[Mapping[str, Any]]] = {}
    for frame in rounds:
        for row in frame:
            key = (row["model"], row["target"], row["batch_size"], row["variant"], row["format"], row["runtime"])
            grouped.setdefault(key, []).append(row)
    out = []
    for key, rows in grouped.items():
        ok = [r for r in rows if r["status"] == "ok" and as_number(r.get("latency_p50_ms")) is not None]
        entry: dict[str, Any] = dict(zip(("model", "target", "batch_size", "variant", "format", "runtime"), key))
        entry |= {"runs": len(rows), "runs_ok": len(ok),
                  "error": next((r.get("error") for r in rows if r["status"] != "ok"), "") or ""}
        if ok:
            p50 = [float(r["latency_p50_ms"]) for r in ok]
            lows = [as_number(r.get("latency_ci_low_ms")) or float(r["latency_p50_ms"]) for r in ok]
            highs = [as_number(r.get("latency_ci_high_ms")) or float(r["latency_p50_ms"]) for r in ok]
            psnr = as_number(ok[0].get("psnr_db"))
            entry |= {"latency_ms": statistics.median(p50), "latency_low_ms": min(lows),
                      "latency_high_ms": max(highs), "latency_runs_ms": p50,
                      "psnr_db": math.inf if psnr is None and as_number(ok[0].get("max_abs_error")) == 0 else psnr,
                      "size_mb": as_number(ok[0].get("size_mb")),
                      "frechet_distance": as_number(ok[0].get("frechet_distance")),
                      "label_agreement": as_number(ok[0].get("label_agreement"))}
        out.append(entry)
    return out


def as_number(value: Any) -> float | None:
    """float(value), or None for a missing, non-numeric or NaN value (pandas cells)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def fronts(rows: Sequence[dict[str, Any]], limits: Mapping[str, float]) -> list[dict[str, Any]]:
    """Per (model, target, batch): the Pareto front over the rows that ran ok and have every objective, and
    the fastest point within ``limits``. Marks rows with ``on_front``."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        row["on_front"] = False
        if row.get("latency_ms") is not None and row.get("psnr_db") is not None and row.get("size_mb") is not None:
            groups.setdefault((row["model"], row["target"], row["batch_size"]), []).append(row)
    out = []
    for (model, target, batch), members in groups.items():
        points = [Point(str(i), {"latency_ms": (m["latency_low_ms"], m["latency_high_ms"]),
                                 "psnr_db": _psnr_interval(m["psnr_db"]),
                                 "size_mb": (m["size_mb"], m["size_mb"])})
                  for i, m in enumerate(members)]
        front = pareto_front(points, OBJECTIVES)
        for p in front:
            members[int(p.key)]["on_front"] = True
        best = best_under(points, limits, OBJECTIVES, "latency_ms")
        out.append({"model": model, "target": target, "batch_size": batch,
                    "front": [_label(members[int(p.key)]) for p in front],
                    "best": _label(members[int(best.key)]) if best else None, "limits": dict(limits)})
    return out


def _psnr_interval(psnr: float) -> tuple[float, float]:
    value = min(psnr, PSNR_CAP_DB)
    return value - PSNR_RESOLUTION_DB / 2, value + PSNR_RESOLUTION_DB / 2


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['variant']} {row['format']}/{row['runtime']}"


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
    write_csv(pd.DataFrame([{k: v for k, v in r.items() if k != "latency_runs_ms"} for r in rows]),
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
