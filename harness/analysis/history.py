"""A metric's history across runs: one series per job and metric (the run's value and its confidence interval),
and the steps found in it (``harness.analysis.changepoints``) with the commit range each step lies in (pure).

Runs of one job measured on different CPU models (the record's ``context["cpu_model"]``) are never mixed in one
series: each CPU model gets its own series, labelled with the model (``Series.machine``), so a change of machine is
not read as a step and a step on one machine is not hidden by the other's level."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harness.analysis.changepoints import Fit, Step, find_steps
from harness.analysis.compare import MIN_ROUNDS_FOR_TEST, JobKey, compare_metric, job_key, key_label, p_text
from harness.analysis.disturbance import OTHER_PASSES, PASS_OF_METRIC, disturbance
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
    unconfirmed: tuple[Step, str] | None = None
    """A change beyond the threshold that only the newest run shows and the gate's own test does not find
    significant (the newest run's rounds against the previous level's): not a step, and why."""
    machine: str = ""
    """The CPU model of this series' runs when the job was measured on more than one ('' when on one only, or
    'CPU model not recorded'): each CPU model is a series of its own."""

    @property
    def label(self) -> str:
        return key_label(self.key) + (f" · on {self.machine}" if self.machine else "")

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
    """The run's figure as the gate compares it: a p90 over at least 5 rounds is the median of the rounds' p90s
    (one noisy round moves the pooled p90 but not the run's level), anything else the record's value."""
    if metric.name.endswith("_p90") and metric.rounds:
        rounds = record.measurement(metric.rounds)  # type: ignore[attr-defined]
        if rounds is not None and len(rounds.samples or ()) >= MIN_ROUNDS_FOR_TEST:
            return float(np.median(rounds.samples))
    value = metric.value(record)  # type: ignore[arg-type]
    return float(value) if value is not None else None


UNKNOWN_MACHINE = "CPU model not recorded"


def machine_of(record: object) -> str:
    """The CPU model a record was measured on (its context's ``cpu_model``), or ``UNKNOWN_MACHINE``."""
    context = getattr(record, "context", None) or {}
    return str(context.get("cpu_model") or "").strip() or UNKNOWN_MACHINE


def series_of(runs: Sequence[Sequence[object]], config: GateConfig | None = None,
              metrics: Sequence[str] | None = None) -> list[Series]:
    """One series per job, gated metric and CPU model present in at least two runs (``runs``: each run's records,
    oldest first; failed jobs, and timings of passes disturbed by contention or throttling, leave a gap). A job
    measured on several CPU models has one series per model, each labelled with it (``Series.machine``); runs on
    different CPUs are never compared. The threshold of each is the gate's (file, overrides, defaults)."""
    config = config or GateConfig()
    found: dict[tuple[JobKey, str, str], list[Point]] = {}
    kept: dict[tuple[JobKey, str, str], dict[int, list[object]]] = {}
    machines: dict[JobKey, set[str]] = {}
    wanted = [m for m in CATALOGUE if (metrics is None or m.name in metrics)]
    for index, records in enumerate(runs):
        for record in records:
            if getattr(record, "status", "") != "ok":
                continue
            key = job_key(record)  # type: ignore[arg-type]
            machine = machine_of(record)
            machines.setdefault(key, set()).add(machine)
            disturbed = {timed for timed in ("latency", *OTHER_PASSES) if disturbance(record, timed)}
            for metric in wanted:
                timed = PASS_OF_METRIC.get(metric.name, "latency" if metric.name in TIMED_METRICS else "")
                if timed in disturbed:  # a contended or throttled pass: not a level
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
                found.setdefault((key, metric.name, machine), []).append(Point(index, value, ci))
                kept.setdefault((key, metric.name, machine), {}).setdefault(index, []).append(record)
    out = []
    by_name = {m.name: m for m in CATALOGUE}
    for (key, name, machine), points in sorted(found.items(), key=lambda item: item[0]):
        metric = by_name[name]
        threshold = config.threshold(key, name)
        if threshold is None or len(points) < 2:
            continue
        relative = metric.change == "relative"
        if relative and any(p.value <= 0 for p in points):
            continue
        fit = find_steps([p.value for p in points], threshold, relative=relative)
        fit, unconfirmed = _confirm_newest(metric, key, points, fit, kept[(key, name, machine)], config.alpha,
                                           len(runs) - 1)
        out.append(Series(key, metric, threshold, tuple(points), fit, unconfirmed,
                          machine if len(machines[key]) > 1 else ""))
    return out


def _confirm_newest(metric: Metric, key: JobKey, points: Sequence[Point], fit: Fit, records: dict[int, list[object]],
                    alpha: float, newest_run: int) -> tuple[Fit, tuple[Step, str] | None]:
    """A step that only the newest run shows must also be significant by the gate's test: the newest run's records
    against those of the level before it (all its runs, pooled). Otherwise it is not a step yet (the next run
    decides); metrics without a test (one value per run) keep the step."""
    if not fit.steps or fit.steps[-1].index != len(points) - 1 or points[-1].run != newest_run:
        return fit, None
    step = fit.steps[-1]
    start = fit.steps[-2].index if len(fit.steps) > 1 else 0
    before = [r for p in points[start:step.index] if p.run not in {points[i].run for i in fit.outliers}
              for r in records[p.run]]
    comparison = compare_metric(metric, key, before, records[points[-1].run])  # type: ignore[arg-type]
    if comparison is None or comparison.p_value is None or comparison.p_value < alpha:
        return fit, None
    levels = fit.levels[:step.index] + (fit.levels[step.index - 1],)
    why = f"newest run only, not significant ({comparison.test}, p={p_text(comparison.p_value)} ≥ α={alpha:g})"
    return dataclasses.replace(fit, steps=fit.steps[:-1], levels=levels), (step, why)


def machine_changes(runs: Sequence[Sequence[object]]) -> list[str]:
    """For people: each job whose ok records span more than one CPU model, with the runs (1-based) on each; their
    series are split by CPU model (a model with a single run has no series, and is listed here all the same)."""
    found: dict[JobKey, dict[str, set[int]]] = {}
    for index, records in enumerate(runs):
        for record in records:
            if getattr(record, "status", "") == "ok":
                key = job_key(record)  # type: ignore[arg-type]
                found.setdefault(key, {}).setdefault(machine_of(record), set()).add(index + 1)
    return [f"{key_label(key)}: " + "; ".join(f"{machine} (runs {', '.join(map(str, sorted(on)))})"
                                              for machine, on in sorted(by.items(), key=lambda item: min(item[1])))
            for key, by in sorted(found.items()) if len(by) > 1]


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
