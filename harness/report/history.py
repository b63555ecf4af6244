"""The history page and its markdown summary: per job and metric a trend (each run's value with its CI, the fitted
levels, the steps with their commit ranges), and the steps as a table a CI job summary can show."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from harness.analysis.history import Series, StepReport, machine_changes
from harness.results.runs import HistoricRun


def _change_text(report: StepReport) -> str:
    if report.series.metric.change == "relative":
        return f"{report.change * 100:+.1f}%"
    return f"{report.change:+.3g} {report.series.metric.unit}"


def commit_range(runs: Sequence[HistoricRun], report: StepReport) -> str:
    before, after = runs[report.previous_run].commit[:10], runs[report.run].commit[:10]
    if before and after:
        return f"{before}..{after}" if before != after else f"{after} (same commit: machine or settings)"
    return f"between runs {report.previous_run + 1} and {report.run + 1}"


def trend(series: Series, runs: int) -> dict[str, Any]:
    """Geometry of one trend plot: x by run index over the history, y over the values and CIs (0..1, 1 = top)."""
    values = [p.value for p in series.points] + [v for p in series.points if p.ci for v in p.ci]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad

    def x(run: int) -> float:
        return (run + 0.5) / max(runs, 1)

    def y(value: float) -> float:
        return 1 - (value - lo) / (hi - lo)

    step_runs = {series.points[s.index].run for s in series.fit.steps}
    outliers = {series.points[i].run for i in series.fit.outliers}
    return {
        "points": [{"x": x(p.run), "y": y(p.value), "value": p.value, "run": p.run,
                    "ci": (y(p.ci[0]), y(p.ci[1])) if p.ci else None, "outlier": p.run in outliers}
                   for p in series.points],
        "levels": [(x(p.run), y(level)) for p, level in zip(series.points, series.fit.levels)],
        "steps": [x(run) - 0.5 / max(runs, 1) for run in sorted(step_runs)],
        "lo": lo, "hi": hi,
    }


def markdown_summary(runs: Sequence[HistoricRun], series: Sequence[Series], reports: Sequence[StepReport],
                     new: Sequence[StepReport]) -> str:
    lines = [f"## Performance history: {len(runs)} runs, {len(series)} series",
             f"From {runs[0].label} to {runs[-1].label}." if runs else "", ""]
    if new:
        lines += [f"**{len(new)} worsening step(s) start at the newest run** ({runs[-1].label}):", ""]
    if reports:
        lines += ["| job | metric | from run | commits | before | after | change | |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        for r in reports:
            mark = "worse" if r.worse else "better"
            if r.runs_after == 1 and r.run == len(runs) - 1:
                mark += ", newest run only so far"
            lines.append(f"| {r.series.label} | {r.series.metric.label} | {r.run + 1} ({runs[r.run].label}) | "
                         f"{commit_range(runs, r)} | {r.before:.4g} | {r.after:.4g} | {_change_text(r)} | {mark} |")
    else:
        lines.append("No step beyond the gate's thresholds in any series.")
    machines = machine_changes([run.records for run in runs])
    if machines:
        lines += ["", f"Measured on more than one CPU model: {len(machines)} job(s), one series per CPU model (runs on "
                      "different CPUs are never compared):", ""]
        lines += [f"- {line}" for line in machines]
    pending = unconfirmed(series)
    if pending:
        lines += ["", f"Not steps (yet): {len(pending)} newest-run change(s) beyond the threshold that the gate's test "
                      "does not find significant:", ""]
        lines += [f"- {item['label']} {item['metric']}: {item['change']} — {item['why']}" for item in pending]
    return "\n".join(lines) + "\n"


def unconfirmed(series: Sequence[Series]) -> list[dict[str, str]]:
    """Newest-run changes beyond the threshold that the gate's test did not confirm (not steps), for people."""
    out = []
    for s in series:
        if s.unconfirmed:
            step, why = s.unconfirmed
            change = f"{step.change * 100:+.1f}%" if s.metric.change == "relative" else \
                f"{step.change:+.3g} {s.metric.unit}"
            out.append({"label": s.label, "metric": s.metric.label, "change": change, "why": why})
    return out


def write_history(runs: Sequence[HistoricRun], series: Sequence[Series], reports: Sequence[StepReport],
                  new: Sequence[StepReport], out_dir: Path) -> dict[str, Path]:
    """index.html (self-contained) and summary.md in ``out_dir``."""
    from harness.report.html import _ENV

    out_dir.mkdir(parents=True, exist_ok=True)
    stepped = {id(r.series) for r in reports}
    shown = sorted(series, key=lambda s: (id(s) not in stepped, s.label, s.metric.name))
    html = _ENV.get_template("history.html.j2").render(
        title=f"Edge Harness history: {len(runs)} runs", runs=runs, new=new, pending=unconfirmed(series),
        reports=[{"r": r, "change": _change_text(r), "commits": commit_range(runs, r)} for r in reports],
        plots=[{"series": s, "trend": trend(s, len(runs)), "stepped": id(s) in stepped} for s in shown],
        n=len(runs))
    paths = {"html": out_dir / "index.html", "markdown": out_dir / "summary.md"}
    paths["html"].write_text(html, encoding="utf-8")
    paths["markdown"].write_text(markdown_summary(runs, series, reports, new), encoding="utf-8")
    return paths
