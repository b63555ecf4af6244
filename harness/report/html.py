"""The HTML view: one self-contained page (inline CSS and SVG, no network), autoescaped by jinja2."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import jinja2
import pandas as pd

from harness.types import RunRecord

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("harness.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


_ENV.filters["fmt"] = _fmt


def latency_bars(summary: pd.DataFrame) -> list[dict]:
    """Bars for an inline SVG chart: median latency with its CI, per successful job."""
    ok = summary[(summary["status"] == "ok") & summary["latency_p50_ms"].notna()]
    bars = []
    for _, row in ok.sort_values(["model", "batch_size", "format", "runtime"]).iterrows():
        p50 = float(row["latency_p50_ms"])
        lo, hi = row.get("latency_ci_low_ms"), row.get("latency_ci_high_ms")
        bars.append({
            "label": f"{row['model']} · {row['format']}/{row['runtime']} · b{row['batch_size']} · {row['target']}",
            "p50": p50,
            "lo": float(lo) if pd.notna(lo) else p50,
            "hi": float(hi) if pd.notna(hi) else p50,
        })
    scale = max((b["hi"] for b in bars), default=1.0) or 1.0
    for b in bars:
        b["w"], b["wlo"], b["whi"] = (b["p50"] / scale, b["lo"] / scale, b["hi"] / scale)
    return bars


def variant_groups(summary: pd.DataFrame) -> list[dict]:
    """Per model, target and batch size: every variant's jobs, fp32 first, when the run has variants."""
    if summary.empty or set(summary["variant"]) <= {"fp32"}:
        return []
    groups = []
    for (model, target, batch), frame in summary.groupby(["model", "target", "batch_size"], sort=True):
        frame = frame.assign(_base=frame["variant"] != "fp32").sort_values(["_base", "variant", "format", "runtime"])
        groups.append({"model": model, "target": target, "batch": batch, "rows": frame.to_dict("records")})
    return groups


def write_html(records: Sequence[RunRecord], summary: pd.DataFrame, path: Path, title: str) -> None:
    contexts = []
    seen = set()
    for r in records:
        keys = ("cpu_model", "cores_available", "threads", "python", "os", "commit", "runtime_versions")
        ctx = {k: r.context.get(k) for k in keys}
        key = repr(sorted(ctx.items()))
        if any(v is not None for v in ctx.values()) and key not in seen:
            seen.add(key)
            contexts.append({"target": r.target, "runtime": r.runtime, **ctx})
    failures = [r for r in records if r.status != "ok"]
    html = _ENV.get_template("report.html.j2").render(
        title=title,
        rows=summary.to_dict("records"),
        variant_groups=variant_groups(summary),
        bars=latency_bars(summary),
        contexts=contexts,
        failures=failures,
        n_ok=sum(1 for r in records if r.status == "ok"),
        n_total=len(records),
    )
    path.write_text(html, encoding="utf-8")
