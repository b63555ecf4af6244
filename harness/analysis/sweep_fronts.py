"""A sweep's results, reduced (pure functions over summary rows): each point's repeated runs aggregated into one
row with its latency interval, and the noise-aware Pareto front (latency × PSNR × size) per model, target and
batch, with the best point within the user's limits. ``harness.run.sweep`` measures; the report draws."""
from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from harness.analysis.metrics import PSNR_CAP_DB
from harness.analysis.pareto import Objective, Point, best_under, pareto_front

OBJECTIVES = (Objective("latency_ms", "min"), Objective("psnr_db", "max"), Objective("size_mb", "min"))
PSNR_RESOLUTION_DB = 0.1
"""PSNRs this close are ties: the same model in two formats differs by round-off, not by fidelity."""


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
                  "error": next((r.get("error") for r in rows if r["status"] != "ok"), "") or "",
                  "status": "ok" if ok else next((r["status"] for r in rows if r["status"] != "ok"), "failed")}
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
            entry |= _extra(ok)
        out.append(entry)
    return out


def _extra(ok: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a budget is judged on beside latency and PSNR: p90 (median of the runs'), peak memory (the highest),
    the sampling loop's latency (median of the runs', their range as its interval) and fidelity, and whether a
    run's timed pass was disturbed (``harness.analysis.disturbance``: the first such note)."""
    def values(column: str) -> list[float]:
        return [v for v in (as_number(r.get(column)) for r in ok) if v is not None]

    p90, memory, loop = values("latency_p90_ms"), values("peak_rss_mb"), values("loop_latency_p50_ms")
    disturbed = next((str(r["disturbed"]) for r in ok if isinstance(r.get("disturbed"), str) and r["disturbed"]), "")
    loop_disturbed = next((str(r["loop_disturbed"]) for r in ok
                           if isinstance(r.get("loop_disturbed"), str) and r["loop_disturbed"]), "")
    out: dict[str, Any] = {"disturbed": disturbed, "loop_disturbed": loop_disturbed,
                           "latency_p90_ms": statistics.median(p90) if p90 else None,
                           "peak_rss_mb": max(memory) if memory else None,
                           "loop_psnr_db": as_number(ok[0].get("loop_psnr_db")),
                           "loop_label_agreement": as_number(ok[0].get("loop_label_agreement"))}
    if loop:
        out |= {"loop_latency_ms": statistics.median(loop), "loop_latency_low_ms": min(loop),
                "loop_latency_high_ms": max(loop), "loop_latency_runs_ms": loop}
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
