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


START_PARTS = (("interpreter_ms", "interpreter"), ("import_ms", "runtime import"), ("load_ms", "load"),
               ("first_inference_ms", "first inference"))
"""The parts of a start, in the order they happen, and their legend names (``harness.engine.start``)."""


def start_bars(records: Iterable[RunRecord]) -> dict[str, Any]:
    """Cold and warm start per job as stacked bars on one linear axis (ms from the process's creation): each part's
    median over the start pass's processes; the cold/warm ratio of the medians, the cache each runtime used."""
    rows = []
    for r in records:
        cold, warm = r.measurement("cold_start"), r.measurement("warm_start")
        if r.status != "ok" or cold is None or warm is None:
            continue
        label = f"{r.model} · {r.variant} · {r.format}/{r.runtime} · b{r.batch_size} · {r.target}"
        start = r.context.get("start") or {}
        for kind, m in (("cold", cold), ("warm", warm)):
            parts = [(name, float((m.stats or {}).get(key, 0.0))) for key, name in START_PARTS]
            rows.append({"label": label, "kind": kind, "parts": parts, "total": m.value, "n": len(m.samples or ()),
                         "emulated": "emulated" in m.method, "cache": (start.get(kind) or {}).get("cache", ""),
                         "page_cache": ", ".join(sorted(set((start.get(kind) or {}).get("page_cache", [])))),
                         "ratio": cold.value / warm.value if kind == "cold" and warm.value else None})
    if not rows:
        return {"rows": [], "ticks": [], "legend": [name for _, name in START_PARTS]}
    top = max(max(row["total"], sum(v for _, v in row["parts"])) for row in rows)
    step = 10.0 ** math.floor(math.log10(top)) if top > 0 else 1.0
    step = next(m * step for m in (0.2, 0.5, 1.0, 2.0) if top / (m * step) <= 6)
    end = math.ceil(top / step) * step
    ticks = [(i * step / end, f"{i * step:g}") for i in range(int(round(end / step)) + 1)]
    for row in rows:
        x, spans = 0.0, []
        for name, value in row["parts"]:
            spans.append({"name": name, "x": x / end, "w": value / end, "ms": value})
            x += value
        row["spans"] = spans
    return {"rows": rows, "ticks": ticks, "legend": [name for _, name in START_PARTS]}


SUSTAINED_SERIES = (("p50_ms", "p50 ms"), ("temp_c", "°C"), ("freq_mhz", "MHz"))
"""What the sustained figure draws per window, one small panel each: latency, the hottest zone, the CPU clock."""


def sustained_views(records: Iterable[RunRecord]) -> dict[str, Any]:
    """Sustained mode: per job, each series over the run as a polyline (x, y in 0..1; y = 1 at the series' top) with
    its range, the first/last p50 and their ratio; per model, target and batch, the jobs whose ranking by p50 at
    steady state differs from the ranking at the start (``harness.engine.sustained.rank_changes``)."""
    from harness.engine.sustained import rank_changes

    jobs, groups = [], {}
    for r in records:
        found = r.context.get("sustained") or {}
        windows = found.get("windows") or []
        m = r.measurement("sustained_latency")
        if r.status != "ok" or not windows or m is None:
            continue
        label = f"{r.model} · {r.variant} · {r.format}/{r.runtime} · b{r.batch_size} · {r.target}"
        end = max(w["start_s"] for w in windows) + found.get("window_s", 10.0)
        panels = []
        for key, unit in SUSTAINED_SERIES:
            points = [(w["start_s"] + found.get("window_s", 10.0) / 2, w[key]) for w in windows if w.get(key)]
            if len(points) < 1:
                panels.append({"unit": unit, "points": "", "lo": None, "hi": None})
                continue
            lo, hi = min(v for _, v in points), max(v for _, v in points)
            span = (hi - lo) or max(abs(hi) * 0.05, 1e-9)
            base = lo if hi > lo else lo - span / 2
            panels.append({"unit": unit, "lo": lo, "hi": hi, "points": " ".join(
                f"{t / end:.4f},{1 - (v - base) / span:.4f}" for t, v in points)})
        stats = m.stats or {}
        jobs.append({"label": label, "panels": panels, "windows": len(windows), "duration_s": end,
                     "first_p50": stats.get("first_p50"), "last_p50": stats.get("last_p50"),
                     "ratio": (r.measurement("sustained_ratio").value if r.measurement("sustained_ratio") else None),
                     "temp": " → ".join(f"{windows[i]['temp_c']:.0f}" for i in (0, -1) if windows[i].get("temp_c")),
                     "freq": " → ".join(f"{windows[i]['freq_mhz']:.0f}" for i in (0, -1) if windows[i].get("freq_mhz")),
                     "contended": found.get("contended_windows", 0),
                     "emulated": "emulated" in m.method})
        if stats.get("first_p50") and stats.get("last_p50"):
            group = groups.setdefault((r.model, r.target, r.batch_size), ({}, {}))
            name = f"{r.variant} {r.format}/{r.runtime}"
            group[0][name], group[1][name] = stats["first_p50"], stats["last_p50"]
    rankings = [{"model": model, "target": target, "batch": batch, "jobs": len(first),
                 "changes": rank_changes(first, last)}
                for (model, target, batch), (first, last) in sorted(groups.items(), key=str) if len(first) > 1]
    return {"jobs": jobs, "rankings": rankings}


PARETO_BOX = {"w": 560, "h": 260, "left": 50, "top": 10, "right": 20, "bottom": 40}
"""The Pareto plot's frame in px: plot area w × h, margins around it (axis labels left and below)."""
LABEL_FONT_PX = 11.0
"""Font size of plot labels (px), as the report's CSS sets it."""
_NARROW, _WIDE = set("fijlrtI .,:;/|!'()[]-"), set("mwMW%@")


def label_width_px(text: str, font_px: float = LABEL_FONT_PX) -> float:
    """An upper bound on ``text``'s rendered width (px): per-character widths of DejaVu Sans, the widest common
    sans-serif (system-ui falls back to it on Linux), rounded up."""
    return font_px * sum(0.42 if c in _NARROW else 1.0 if c in _WIDE else 0.8 if c.isupper() else 0.65
                         for c in text)


def _box_hits_circle(box: tuple[float, float, float, float], cx: float, cy: float, r: float) -> bool:
    nx, ny = min(max(cx, box[0]), box[2]), min(max(cy, box[1]), box[3])
    return (nx - cx) ** 2 + (ny - cy) ** 2 < r * r


def _boxes_meet(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _segment_hits_box(seg: tuple[float, float, float, float], box: tuple[float, float, float, float]) -> bool:
    """Whether the segment crosses the box's inside (Liang–Barsky clipping)."""
    x1, y1, x2, y2 = seg
    t0, t1 = 0.0, 1.0
    for p, q in ((x1 - x2, x1 - box[0]), (x2 - x1, box[2] - x1), (y1 - y2, y1 - box[1]), (y2 - y1, box[3] - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return t1 - t0 > 1e-9


_DIRECTIONS = tuple((round(math.cos(math.radians(a)), 3), round(-math.sin(math.radians(a)), 3))
                    for a in (0, 180, 45, -45, 135, -135, 90, -90, 22.5, -22.5, 157.5, -157.5, 67.5, -67.5, 112.5,
                              -112.5))
"""Where a label may go from its marker (unit vectors, y down), in the order tried: right, left, the diagonals,
above, below, then the directions between."""
_GAPS_PX = (2.0, 8.0, 16.0, 28.0, 44.0, 64.0, 90.0, 120.0, 160.0)
"""Distances (px) from the marker's edge tried, nearest first; beyond the first two a leader line is drawn."""


def place_labels(markers: Sequence[tuple[float, float, float]], texts: Sequence[str], owners: Sequence[int],
                 bounds: tuple[float, float, float, float], font_px: float = LABEL_FONT_PX,
                 pad_px: float = 1.0) -> list[dict[str, Any] | None]:
    """Label placement without overprinting (deterministic, greedy in the given order). ``markers``: every
    marker's (cx, cy, r) in px; ``texts[k]`` labels marker ``owners[k]``; ``bounds``: (left, top, right, bottom)
    px the labels must stay in. Each label gets the nearest free spot around its marker (direction, then distance:
    ``_DIRECTIONS`` × ``_GAPS_PX``), one that covers no label, leader line or other marker if there is one, else
    one that covers no label or leader; far spots get a leader line. Returns per label {"x": left, "y": baseline,
    "box": (left, top, right, bottom), "leader": (x1, y1, x2, y2) or None} in px, or None where no spot is free
    (the caller lists those)."""
    ascent, descent = 0.93 * font_px, 0.24 * font_px  # DejaVu Sans' ascent and descent, a little rounded up
    height = ascent + descent
    taken: list[tuple[float, float, float, float]] = []
    leaders: list[tuple[float, float, float, float]] = []
    out: list[dict[str, Any] | None] = []
    for text, owner in zip(texts, owners):
        cx, cy, r = markers[owner]
        width = label_width_px(text, font_px)
        spots = []
        for gap in _GAPS_PX:
            for dx, dy in _DIRECTIONS:
                ex, ey = cx + dx * (r + gap), cy + dy * (r + gap)  # the anchor point the box touches
                left = ex if dx > 0.1 else ex - width if dx < -0.1 else ex - width / 2
                top = ey if dy > 0.1 else ey - height if dy < -0.1 else ey - height / 2
                box = (left, top, left + width, top + height)
                leader = None
                if gap > _GAPS_PX[1]:
                    nx, ny = min(max(cx, box[0]), box[2]), min(max(cy, box[1]), box[3])
                    dist = math.hypot(nx - cx, ny - cy)
                    leader = (cx + (nx - cx) * r / dist, cy + (ny - cy) * r / dist, nx, ny)
                spots.append((box, leader))
        padded = [(b[0] - pad_px, b[1] - pad_px, b[2] + pad_px, b[3] + pad_px) for b in taken]

        def free(box: tuple[float, float, float, float], leader: Any, avoid_markers: bool) -> bool:
            if box[0] < bounds[0] or box[1] < bounds[1] or box[2] > bounds[2] or box[3] > bounds[3]:
                return False
            if any(_boxes_meet(box, other) for other in padded):
                return False
            if any(_segment_hits_box(seg, box) for seg in leaders):
                return False
            if leader is not None and any(_segment_hits_box(leader, other) for other in padded):
                return False
            return not avoid_markers or not any(_box_hits_circle(box, *m) for i, m in enumerate(markers)
                                                if i != owner)

        choice = next((s for s in spots if free(*s, avoid_markers=True)), None) \
            or next((s for s in spots if free(*s, avoid_markers=False)), None)
        if choice is None:
            out.append(None)
            continue
        box, leader = choice
        taken.append(box)
        if leader is not None:
            leaders.append(leader)
        out.append({"x": box[0], "y": box[1] + ascent, "box": box, "leader": leader})
    return out


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
        g = PARETO_BOX
        for pt in points:
            pt["cx"], pt["cy"] = g["left"] + pt["x"] * g["w"], g["top"] + g["h"] - pt["y"] * g["h"]
        front = sorted((i for i, pt in enumerate(points) if pt["front"]),
                       key=lambda i: (points[i]["cx"], -points[i]["cy"]))  # left to right, then bottom up
        placed = place_labels([(pt["cx"], pt["cy"], pt["r"]) for pt in points], [points[i]["label"] for i in front],
                              front, (g["left"], 0.0, g["left"] + g["w"] + g["right"], g["top"] + g["h"]))
        labels = [dict(spot, text=points[i]["label"]) for i, spot in zip(front, placed) if spot is not None]
        unlabelled = [points[i]["label"] for i, spot in zip(front, placed) if spot is None]
        y_ticks = [(_inset((v - y_lo) / (PSNR_CAP_DB - y_lo)), f"{v:g}" + ("+" if v == PSNR_CAP_DB else ""))
                   for v in np.arange(PSNR_CAP_DB, y_lo - 1e-9, -step)]
        ticks = [(_inset(pos), label) for pos, label in ticks]
        plots.append({"model": model, "target": target, "batch": batch, "points": points, "x_ticks": ticks,
                      "y_ticks": y_ticks, "labels": labels, "unlabelled": unlabelled, "box": g})
    return plots


def best_variants(summary: pd.DataFrame, min_psnr: float, min_labels: float) -> list[dict[str, Any]]:
    """Per model, target and batch: the fastest successful job whose fidelity passes the floors (PSNR ≥
    ``min_psnr`` dB or identical outputs; label agreement ≥ ``min_labels`` where measured), with fp32 ORT's
    median for scale."""
    out = []
    ok = summary[(summary["status"] == "ok") & summary["latency_p50_ms"].notna()] if not summary.empty else summary
    if "disturbed" in ok.columns:  # a latency measured under contention or throttling picks no winner
        ok = ok[ok["disturbed"].fillna("") == ""]
    if "fits" in ok.columns:  # a variant that does not fit its target's memory or storage is no winner there
        ok = ok[ok["fits"].fillna("") != "does not fit"]
    for (model, target, batch), frame in ok.groupby(["model", "target", "batch_size"], sort=True):
        passing = [r for r in frame.to_dict("records") if _fidelity_ok(r, min_psnr, min_labels)]
        if not passing:
            continue
        best = min(passing, key=lambda r: r["latency_p50_ms"])
        out.append({"model": model, "target": target, "batch": batch, **best})
    return out


def best_variant_gaps(summary: pd.DataFrame, min_psnr: float, min_labels: float) -> list[dict[str, Any]]:
    """Per model, target and batch that ``best_variants`` finds no winner for: why, from its jobs (failed, no
    latency median, latency pass disturbed, below the fidelity floors: PSNR in dB, label agreement as a share),
    and what to do about it, as one line ``why``."""
    if summary.empty:
        return []
    won = {(b["model"], b["target"], b["batch"]) for b in best_variants(summary, min_psnr, min_labels)}
    gaps = []
    for (model, target, batch), frame in summary.groupby(["model", "target", "batch_size"], sort=True):
        if (model, target, batch) in won:
            continue
        rows = [r | {"disturbed": r.get("disturbed") if isinstance(r.get("disturbed"), str) else ""}
                for r in frame.to_dict("records")]
        failed = [r for r in rows if r["status"] != "ok"]
        untimed = [r for r in rows if r["status"] == "ok" and as_number(r.get("latency_p50_ms")) is None]
        timed = [r for r in rows if r["status"] == "ok" and as_number(r.get("latency_p50_ms")) is not None]
        too_big = [r for r in timed if r.get("fits") == "does not fit"]
        timed = [r for r in timed if r.get("fits") != "does not fit"]
        disturbed = [r for r in timed if r.get("disturbed")]
        unfaithful = [r for r in timed if not r.get("disturbed") and not _fidelity_ok(r, min_psnr, min_labels)]
        counts: dict[str, int] = {}
        for r in failed:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        bar = (f"PSNR ≥ {min_psnr:g} dB or identical outputs, digit labels agree on ≥ {min_labels:.0%} where "
               "measured")
        quiet = ("re-run on a quiet machine: stop the other load, or set quiet_wait_s / contention_retries in the "
                 "suite's [settings]")
        fit_bar = "its target's [fit] memory or storage (see Will it fit)"
        if len(failed) == len(rows):
            why = f"no job succeeded ({statuses}): see Failures below"
        elif len(too_big) == len(rows):
            why = f"no job fits {fit_bar}: {_tightest(too_big)}"
        elif len(disturbed) == len(rows):
            why = (f"every job's latency pass was disturbed ({len(rows)} of {len(rows)}; first: "
                   f"{disturbed[0]['disturbed']}): {quiet}")
        elif len(unfaithful) == len(rows):
            why = f"no job passed the fidelity bar ({bar}): {_closest(unfaithful)}"
        else:
            parts = [statuses] if failed else []
            parts += [f"{len(untimed)} without a latency median"] if untimed else []
            parts += [f"{len(too_big)} do not fit {fit_bar}"] if too_big else []
            parts += [f"{len(disturbed)} disturbed (first: {disturbed[0]['disturbed']})"] if disturbed else []
            parts += [f"{len(unfaithful)} below the fidelity bar ({_closest(unfaithful)})"] if unfaithful else []
            why = "no job qualifies: " + "; ".join(parts) + (f"; {quiet}" if disturbed else "")
        gaps.append({"model": model, "target": target, "batch": batch, "why": why})
    return gaps


def _tightest(rows: list[dict[str, Any]]) -> str:
    """The job that comes nearest to fitting, in words."""
    def over(r: dict[str, Any]) -> float:
        rooms = [as_number(r.get(k)) for k in ("fit_memory_headroom", "fit_storage_headroom")]
        return min((x for x in rooms if x is not None), default=float("-inf"))

    best = max(rows, key=over)
    return f"nearest {best['variant']} {best['format']}/{best['runtime']}, {-over(best):.0%} over"


def _closest(rows: list[dict[str, Any]]) -> str:
    """The unfaithful job nearest the fidelity bar, in words."""
    def name(r: dict[str, Any]) -> str:
        return f"{r['variant']} {r['format']}/{r['runtime']}"

    psnr = [r for r in rows if as_number(r.get("psnr_db")) is not None]
    if psnr:
        top = max(psnr, key=lambda r: r["psnr_db"])
        return f"best PSNR {top['psnr_db']:.1f} dB, by {name(top)}"
    labels = [r for r in rows if as_number(r.get("label_agreement")) is not None]
    if labels:
        top = max(labels, key=lambda r: r["label_agreement"])
        return f"best label agreement {top['label_agreement']:.0%}, by {name(top)}"
    return f"outputs NaN / inf where fp32's are not, in {name(rows[0])}"


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
