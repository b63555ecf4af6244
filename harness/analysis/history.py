"""A metric's history across runs: one series per job and metric (the run's value and its confidence interval),
and the steps found in it (``harness.analysis.changepoints``) with the commit range each step lies in (pure)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from harness.analysis.changepoints import Fit, find_steps
from harness.analysis.compare import JobKey, job_key, key_label
from harness.analysis.disturbance import disturbance
from harness.analysis.gate import TIMED_METRICS, GateConfig
from harness.analysis.metrics import CATALOGUE, Metric

CI_KEYS = {"latency_p50": ("latency", "median_ci_low", "median_ci_high"),
           "loop_latency_p50": ("loop_latency", "median_ci_low", "median_ci_high"),
           "gpu_latency_p50": ("gpu_latency", "median_ci_low", "median_ci_high")}
"""Metrics whose records carry a confidence interval of the run's value: (measurement, low key, high key)."""


@dataclass(frozen=True)
class Point:
    run: int
    """Index of the run in the history (oldest first)."""
    value: float
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Series:
    key: JobKey
    metric: Metric
    threshold: float
    points: tuple[Point, ...]
    fit: Fit

    @property
    def label(self) -> str:
        return key_label(self.key)

    def worse(self, change: float) -> bool:
        return change > 0 if self.metric.better == "lower" else change < 0


@dataclass(frozen=True)
class StepReport:
    """A step of one series, placed between two runs of the history."""

    series: Series
    run: int
    """First run at the new level."""
    previous_run: int
    """The run before it in this series (the commit range is previous_run's commit .. run's commit)."""
    before: float
    after: float
    change: float
    runs_after: int

    @property
    def worse(self) -> bool:
        return self.series.worse(self.change)


def _value(metric: Metric, record: object) -> float | None:
    value = metric.value(record)  # type: ignore[arg-type]
    return float(value) if value is not None else None


def series_of(runs: Sequence[Sequence[object]], config: GateConfig | None = None,
              metrics: Sequence[str] | None = None) -> list[Series]:
    """One series per job and gated metric present in at least two runs (``runs``: each run's records, oldest
    first; failed jobs, and timings of passes disturbed by contention or throttling, leave a gap). The threshold of
    each is the gate's (file, overrides, defaults)."""
    config = config or GateConfig()
    found: dict[tuple[JobKey, str], list[Point]] = {}
    wanted = [m for m in CATALOGUE if (metrics is None or m.name in metrics)]
    for index, records in enumerate(runs):
        for record in records:
            if getattr(record, "status", "") != "ok":
                continue
            key = job_key(record)  # type: ignore[arg-type]
            disturbed = bool(disturbance(record))
            for metric in wanted:
                if disturbed and metric.name in TIMED_METRICS:  # a contended or throttled pass: not a level
                    continue
                value = _value(metric, record)
                if value is None or value != value:
                    continue
                ci = None
                if metric.name in CI_KEYS:
                    name, lo, hi = CI_KEYS[metric.name]
                    m = record.measurement(name)  # type: ignore[attr-defined]
                    if m is not None and m.stats and lo in m.stats and hi in m.stats:
                        ci = (float(m.stats[lo]), float(m.stats[hi]))
                found.setdefault((key, metric.name), []).append(Point(index, value, ci))
    out = []
    by_name = {m.name: m for m in CATALOGUE}
    for (key, name), points in sorted(found.items(), key=lambda item: (item[0][0], item[0][1])):
        metric = by_name[name]
        threshold = config.threshold(key, name)
        if threshold is None or len(points) < 2:
            continue
        relative = metric.change == "relative"
        if relative and any(p.value <= 0 for p in points):
            continue
        fit = find_steps([p.value for p in points], threshold, relative=relative)
        out.append(Series(key, metric, threshold, tuple(points), fit))
    return out


def steps_of(series: Sequence[Series]) -> list[StepReport]:
    """Every step of every series, oldest first."""
    out = []
    for s in series:
        for step in s.fit.steps:
            out.append(StepReport(s, s.points[step.index].run, s.points[step.index - 1].run, step.before,
                                  step.after, step.change, step.runs_after))
    return sorted(out, key=lambda r: (r.run, r.series.label, r.series.metric.name))


def new_worsening_steps(reports: Sequence[StepReport], newest_run: int) -> list[StepReport]:
    """Steps for the worse that start at the newest run (what a CI job should stop on)."""
    return [r for r in reports if r.run == newest_run and r.worse]
