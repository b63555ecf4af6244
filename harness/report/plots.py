"""Geometry for the report's inline SVG plots (pure: numbers in, shapes in 0..1 coordinates out).

Latency distributions are box plots on a log axis (box p25–p75, whiskers p5–p95, a tick at the median);
the Pareto plot puts median latency (log axis) against PSNR vs fp32, marker area ∝ artifact size.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from harness.analysis.sweep_fronts import PSNR_CAP_DB, as_number, fronts
from harness.types import RunRecord


def log_axis(lo: float, hi: float) -> tuple[float, float, list[tuple[float, str]]]:
    """A log axis covering lo..hi (both > 0): (log10 lo, log10 hi, ticks as (position 0..1, label)) at 1-2-5
    steps."""
    lo = max(lo, 1e-9)
    hi = max(hi, lo * 1.0001)
    a, b = math.floor(math.log10(lo) * 10) / 10, math.ceil(math.log10(hi) * 10) / 10
    if b - a < 0.3:
        a, b = a - 0.15, b + 0.15
    ticks = []
    for decade in range(math.floor(a), math.ceil(b) + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** decade
            pos = (math.log10(v) - a) / (b - a)
            if 0 <= pos <= 1:
                ticks.append((pos, f"{v:g}"))
    return a, b, ticks


def _pos(value: float, a: float, b: float) -> float:
    return (math.log10(max(value, 1e-12)) - a) / (b - a)


def latency_boxes(records: Iterable[RunRecord]) -> dict[str, Any]:
    """Box plots of every successful job's latency samples (ms) on one shared log axis."""
    rows = []
    for r in records:
        m = r.measurement("latency")
        if r.status != "ok" or m is None or not m.samples:
            continue
        q = np.percentile(np.asarray(m.samples, dtype=float), [5, 25, 50, 75, 95])
        rows.append({"label": f"{r.model} · {r.variant} · {r.format}/{r.runtime} · b{r.batch_size} · {r.target}",
                     "q": [float(v) for v in q], "n": len(m.samples), "cv": (m.stats or {}).get("cv"),
                     "emulated": "emulated" in m.method, "sort": (r.model, r.batch_size, r.target, float(q[2]))})
    if not rows:
        return {"rows": [], "ticks": []}
    a, b, ticks = log_axis(min(r["q"][0] for r in rows), max(r["q"][4] for r in rows))
    rows.sort(key=lambda r: r["sort"])
    for r in rows:
        r["x"] = [_pos(v, a, b) for v in r["q"]]
    return {"rows": rows, "ticks": ticks}


def _inset(pos: float, margin: float = 0.05) -> float:
    """Keep markers off the plot's edges: 0..1 → margin..1 − margin."""
    return margin + pos * (1 - 2 * margin)


def pareto_plots(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Per model, target and batch size with ≥ 2 measured points: latency × PSNR × size, front marked.

    PSNR above 100 dB (round-off) or missing (outputs identical to the reference) is drawn at 100 dB; a job
    whose outputs went NaN / inf where the reference's did not has no PSNR and is left out.
    """
    rows = []
    for rec in summary.to_dict("records"):
        p50, size = as_number(rec.get("latency_p50_ms")), as_number(rec.get("size_mb"))
        if rec.get("status") != "ok" or p50 is None or size is None or outputs_diverged(rec):
            continue
        psnr = as_number(rec.get("psnr_db"))
        psnr = PSNR_CAP_DB if psnr is None or psnr > PSNR_CAP_DB else psnr
        rows.append({**{k: rec[k] for k in ("model", "target", "batch_size", "variant", "format", "runtime")},
                     "latency_ms": p50, "latency_low_ms": as_number(rec.get("latency_ci_low_ms")) or p50,
                     "latency_high_ms": as_number(rec.get("latency_ci_high_ms")) or p50, "psnr_db": psnr,
                     "size_mb": size})
    fronts(rows, {})
    plots = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["target"], row["batch_size"]), []).append(row)
    for (model, target, batch), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if len(members) < 2:
            continue
        a, b, ticks = log_axis(min(m["latency_ms"] for m in members), max(m["latency_ms"] for m in members))
        y_lo = max(0.0, math.floor(min(m["psnr_db"] for m in members) / 10) * 10 - 10)
        step = 20 if PSNR_CAP_DB - y_lo > 60 else 10
        biggest = max(m["size_mb"] for m in members) or 1.0
        points = [{"label": f"{m['variant']} {m['format']}/{m['runtime']}", "front": m["on_front"],
                   "x": _inset(_pos(m["latency_ms"], a, b)), "y": _inset((m["psnr_db"] - y_lo) / (PSNR_CAP_DB - y_lo)),
                   "r": 3 + 9 * math.sqrt(m["size_mb"] / biggest), "latency_ms": m["latency_ms"],
                   "psnr_db": m["psnr_db"], "size_mb": m["size_mb"]} for m in members]
        y_ticks = [(_inset((v - y_lo) / (PSNR_CAP_DB - y_lo)), f"{v:g}" + ("+" if v == PSNR_CAP_DB else ""))
                   for v in np.arange(PSNR_CAP_DB, y_lo - 1e-9, -step)]
        ticks = [(_inset(pos), label) for pos, label in ticks]
        plots.append({"model": model, "target": target, "batch": batch, "points": points, "x_ticks": ticks,
                      "y_ticks": y_ticks})
    return plots


def best_variants(summary: pd.DataFrame, min_psnr: float, min_labels: float) -> list[dict[str, Any]]:
    """Per model, target and batch: the fastest successful job whose fidelity passes the floors (PSNR ≥
    ``min_psnr`` dB or identical outputs; label agreement ≥ ``min_labels`` where measured), with fp32 ORT's
    median for scale."""
    out = []
    ok = summary[(summary["status"] == "ok") & summary["latency_p50_ms"].notna()] if not summary.empty else summary
    if "disturbed" in ok.columns:  # a latency measured under contention or throttling picks no winner
        ok = ok[ok["disturbed"].fillna("") == ""]
    for (model, target, batch), frame in ok.groupby(["model", "target", "batch_size"], sort=True):
        passing = [r for r in frame.to_dict("records") if _fidelity_ok(r, min_psnr, min_labels)]
        if not passing:
            continue
        best = min(passing, key=lambda r: r["latency_p50_ms"])
        out.append({"model": model, "target": target, "batch": batch, **best})
    return out


def outputs_diverged(row: dict[str, Any]) -> bool:
    """Outputs NaN / inf where the fp32 reference is not, or the other way round: fidelity was measured but no
    error figure exists (``harness.analysis.fidelity``)."""
    return as_number(row.get("nonfinite_outputs")) is not None and as_number(row.get("max_abs_error")) is None


def _fidelity_ok(row: dict[str, Any], min_psnr: float, min_labels: float) -> bool:
    psnr, labels = as_number(row.get("psnr_db")), as_number(row.get("label_agreement"))
    return (not outputs_diverged(row) and (psnr is None or psnr >= min_psnr)
            and (labels is None or labels >= min_labels))


def per_target(summary: pd.DataFrame) -> dict[str, Any]:
    """Median latency of each job across targets (columns), when the run has more than one target."""
    ok = summary[summary["status"] == "ok"] if not summary.empty else summary
    targets: Sequence[str] = sorted(ok["target"].unique()) if not ok.empty else []
    if len(targets) < 2:
        return {"targets": [], "rows": []}
    pivot = ok.pivot_table(index=["model", "variant", "format", "runtime", "batch_size"], columns="target",
                           values="latency_p50_ms", aggfunc="median")
    rows = []
    for index, values in pivot.iterrows():
        rows.append({"job": " · ".join(str(v) for v in index[:4]) + f" · b{index[4]}",
                     "medians": [as_number(values.get(t)) for t in targets]})
    return {"targets": list(targets), "rows": rows}
