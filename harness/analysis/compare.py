"""Compare two sets of run records job by job: per metric the change, its confidence interval and a
significance test, with the direction of "better" known per metric. Pure functions over RunRecords.

A job is identified by model, variant, format, runtime, target and batch size. When a side holds several
records of one job (several results files, or repeats), latency samples are pooled and single values take
their median.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from harness import stats
from harness.analysis.metrics import METRICS, Metric  # noqa: F401  (the catalogue; compared here)
from harness.types import RunRecord

JobKey = tuple[str, str, str, str, str, int]
KEY_FIELDS = ("model", "variant", "format", "runtime", "target", "batch_size")


PAIRED_TEST = "wilcoxon signed-rank over paired rounds"


@dataclass(frozen=True)
class Comparison:
    """One metric of one job, base vs candidate.

    ``worse_by``: how much worse the candidate is, in the metric's change unit (fraction for relative
    metrics, metric unit for absolute ones); negative = better. ``ratio``: candidate / base (None where
    base is 0 or not finite). ``ci_low``/``ci_high``: 95% bootstrap CI of the ratio (sampled metrics only).
    ``p_value``: from ``test`` (None for 'none'). ``min_p``: the smallest p-value that test could give with these
    sample sizes (``stats.smallest_p``; None where it is far below any sensible α).
    """

    key: JobKey
    metric: str
    base: float
    candidate: float
    ratio: float | None
    worse_by: float
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str = "none"
    note: str = ""
    min_p: float | None = None

    @property
    def spec(self) -> Metric:
        return METRICS[self.metric]

    @property
    def paired(self) -> bool:
        """Tested over interleaved pairs of rounds (an A/B session, ``harness ab``), not over separate runs."""
        return self.test == PAIRED_TEST


def p_text(p: float) -> str:
    """A p-value for people: two significant digits, and '<1e-16' below double precision's resolution."""
    return "<1e-16" if p < 1e-16 else f"{p:.2g}"


def job_key(r: RunRecord) -> JobKey:
    return (r.model, r.variant, r.format, r.runtime, r.target, int(r.batch_size))


def key_label(key: JobKey) -> str:
    model, variant, fmt, runtime, target, batch = key
    return f"{model} · {variant} · {fmt}/{runtime} · {target} · b{batch}"


def group_records(records: Iterable[RunRecord]) -> dict[JobKey, list[RunRecord]]:
    """Records by job key, in file order."""
    out: dict[JobKey, list[RunRecord]] = {}
    for r in records:
        out.setdefault(job_key(r), []).append(r)
    return out


MODELLED_NOTE = "modelled energy (CPU time × assumed power): reported, never gated"
NOT_GATED_PREFIXES = ("not comparable", "emulated", "modelled")
"""Comparisons whose note starts so are shown but never fail a gate."""

MIN_ROUNDS_FOR_TEST = 5
"""With at least this many latency rounds (fresh processes) per side, p50 is tested over the rounds' medians:
5 vs 5 completely separated gives p = 0.008, the smallest two-sided p that Mann-Whitney U can reach there."""


def round_medians(records: Sequence[RunRecord], statistic: str = "median", rounds_name: str | None = None,
                  sampled: str = "latency") -> list[float]:
    """Each record's per-round latency medians, or p90s with ``statistic='p90'`` (a record without rounds counts
    as one round; records from before rounds kept their p90 have none for p90). ``rounds_name`` / ``sampled``: the
    per-round measurement and the sampled one of another metric (the GPU's: gpu_latency_round_medians,
    gpu_latency)."""
    out: list[float] = []
    name, key = ("latency_round_p90s", "p90") if statistic == "p90" else ("latency_round_medians", "p50")
    name = rounds_name or name
    for r in records:
        rounds, lat = r.measurement(name), r.measurement(sampled)
        if rounds is not None and rounds.samples:
            out.extend(rounds.samples)
        elif lat is not None and (statistic == "median" or r.measurement("latency_round_medians") is None):
            out.append(lat.stats.get(key, lat.value) if lat.stats else lat.value)
    return out


MIN_PAIRS_FOR_TEST = 6
"""An A/B session (``harness ab``) is tested over its pairs' ratios whatever their number, but only from this many
pairs can it be significant at 0.05: 6 pairs all one way give p = 0.031 (two-sided Wilcoxon signed-rank), 5 give
0.0625."""


def paired_rounds(base: Sequence[RunRecord], cand: Sequence[RunRecord], statistic: str = "median",
                  rounds_name: str | None = None, sampled: str = "latency") -> tuple[list[float], list[float]] | None:
    """The round medians (or p90s) of both sides when they were measured in one A/B session (``harness ab``: one
    record per side, the same session id, one round per side per pair); None otherwise."""
    if len(base) != 1 or len(cand) != 1:
        return None
    a, b = base[0].context.get("ab"), cand[0].context.get("ab")
    if not isinstance(a, dict) or not isinstance(b, dict) or a.get("session") != b.get("session"):
        return None
    base_rounds = round_medians(base, statistic, rounds_name, sampled)
    cand_rounds = round_medians(cand, statistic, rounds_name, sampled)
    if len(base_rounds) != len(cand_rounds) or len(base_rounds) != a.get("pairs"):
        return None
    return base_rounds, cand_rounds


def _worse_by(metric: Metric, base: float, cand: float) -> float:
    sign = 1.0 if metric.better == "lower" else -1.0
    if metric.change == "absolute":
        if math.isinf(base) and math.isinf(cand) and base == cand:
            return 0.0  # e.g. PSNR +inf on both sides: outputs identical to the reference
        return sign * (cand - base)
    if base == 0:
        return 0.0 if cand == 0 else math.inf * sign * (1 if cand > 0 else -1)
    return sign * (cand / base - 1.0)


def compare_metric(metric: Metric, key: JobKey, base: Sequence[RunRecord], cand: Sequence[RunRecord],
                   seed: int = 0) -> Comparison | None:
    """Compare one metric of one job over the ok records of each side (None when a side lacks it)."""
    if metric.unit in ("ms", "ratio") and any(  # a timing (or a ratio of timings) measured under emulation
            "emulated" in m.method for r in (*base, *cand)
            if (m := r.measurement(metric.sampled if metric.unit == "ms" else "latency")) is not None):
        b, c = metric.value(base[0]), metric.value(cand[0])
        if b is None or c is None:
            return None
        return Comparison(key, metric.name, b, c, c / b if b else None, 0.0,
                          note="emulated timing: not a latency claim, never gated")
    base_samples = [x for r in base for x in (metric.samples(r) or ())]
    cand_samples = [x for r in cand for x in (metric.samples(r) or ())]
    statistic = "p90" if metric.name.endswith("_p90") else "median"
    if metric.test != "none" and len(base_samples) >= 2 and len(cand_samples) >= 2 and \
            float(stats.QUANTILE_STATISTICS[statistic](np.asarray(base_samples)[None, :], axis=1)[0]) <= 0:
        return Comparison(key, metric.name, 0.0, metric.value(cand[0]) or 0.0, None, 0.0, test="none",
                          note="the base statistic is 0: no ratio, not tested")
    if metric.test != "none" and len(base_samples) >= 2 and len(cand_samples) >= 2:
        test, note = metric.test, f"{len(base_samples)} vs {len(cand_samples)} samples"
        paired = paired_rounds(base, cand, statistic, metric.rounds, metric.sampled) if metric.rounds else None
        if paired is not None and min(min(paired[0]), min(paired[1])) <= 0:
            return Comparison(key, metric.name, float(np.median(paired[0])), float(np.median(paired[1])), None, 0.0,
                              test="none", note="a round's statistic is 0: no ratio, not tested")
        if paired is not None:
            # Interleaved rounds: each pair shares the machine's moment, so the pairs' ratios are the evidence
            # (and the pooled samples, 10^5 of them for a fast model, need no bootstrap). With too few pairs this
            # is never significant — rather than fall back to the pooled samples, which drift calls significant.
            ratio, lo, hi, p = stats.paired_ratio(*paired, seed=seed)
            min_p = stats.smallest_p("wilcoxon", len(paired[0]))
            test = PAIRED_TEST
            few = f" (fewer than {MIN_PAIRS_FOR_TEST}: never significant)" if len(paired[0]) < MIN_PAIRS_FOR_TEST else ""
            note = f"{len(paired[0])} interleaved pairs of rounds{few} (A/B session), {note}"
        else:
            ratio, lo, hi, p = stats.bootstrap_ratio(base_samples, cand_samples, statistic, seed=seed)
            min_p = stats.smallest_p("bootstrap", len(base_samples), len(cand_samples))
            b = None
            base_rounds, cand_rounds = (round_medians(base, statistic, metric.rounds, metric.sampled),
                                        round_medians(cand, statistic, metric.rounds, metric.sampled)) \
                if metric.rounds else ([], [])  # a metric without per-round figures: its pooled samples
            enough_rounds = min(len(base_rounds), len(cand_rounds)) >= MIN_ROUNDS_FOR_TEST
            if enough_rounds and statistic == "p90" and min(base_rounds) > 0:
                # The process is the unit of replication: the pooled samples of separate runs call any drift
                # between processes significant. The rounds' p90s are the evidence: their median's ratio, its
                # bootstrap CI and a Mann-Whitney U test between them.
                ratio, lo, hi, _ = stats.bootstrap_ratio(base_rounds, cand_rounds, "median", seed=seed)
                p = stats.mann_whitney_p(base_rounds, cand_rounds)
                min_p = stats.smallest_p("mann-whitney-u", len(base_rounds), len(cand_rounds))
                b = float(np.median(base_rounds))
                test = "mann-whitney-u over round p90s"
                note = f"{len(base_rounds)} vs {len(cand_rounds)} rounds, {note}"
            elif metric.test == "mann-whitney-u" and enough_rounds:
                # The process is the unit of replication: test the rounds' medians, not the pooled samples.
                p = stats.mann_whitney_p(base_rounds, cand_rounds)
                min_p = stats.smallest_p("mann-whitney-u", len(base_rounds), len(cand_rounds))
                test = "mann-whitney-u over round medians"
                note = f"{len(base_rounds)} vs {len(cand_rounds)} rounds, {note}"
            elif metric.test == "mann-whitney-u":
                p = stats.mann_whitney_p(base_samples, cand_samples)
                min_p = stats.smallest_p("mann-whitney-u", len(base_samples), len(cand_samples))
            if b is not None:
                return Comparison(key, metric.name, b, b * ratio, ratio, _worse_by(metric, b, b * ratio), lo, hi, p,
                                  test, note=note, min_p=min_p)
        b = float(stats.QUANTILE_STATISTICS[statistic](np.asarray(base_samples)[None, :], axis=1)[0])
        return Comparison(key, metric.name, b, b * ratio, ratio, _worse_by(metric, b, b * ratio), lo, hi, p,
                          test, note=note, min_p=min_p)
    base_values = [v for v in (metric.value(r) for r in base) if v is not None]
    cand_values = [v for v in (metric.value(r) for r in cand) if v is not None]
    if not base_values or not cand_values:
        return None
    b, c = float(np.median(base_values)), float(np.median(cand_values))
    note = ""
    if metric.method is not None:
        methods = {method for r in (*base, *cand) if (method := metric.method(r))}
        if len(methods) > 1:
            return Comparison(key, metric.name, b, c, None, 0.0, test="none",
                              note=f"not comparable: measured by {' vs '.join(sorted(methods))}")
        method = methods.pop() if methods else ""
        # A modelled figure is CPU time × an assumed power (± its error band): latency already gates that time.
        note = MODELLED_NOTE if method == "modelled" else f"method {method}"
    ratio = c / b if b and math.isfinite(b) and math.isfinite(c) else None
    return Comparison(key, metric.name, b, c, ratio, _worse_by(metric, b, c), test="none", note=note)


def compare_runs(base: Iterable[RunRecord], candidate: Iterable[RunRecord],
                 metrics: Sequence[str] = tuple(METRICS)) -> tuple[list[Comparison], dict[str, list]]:
    """Every requested metric of every job that succeeded on both sides.

    Returns (comparisons, status) where status holds job keys by what happened to them:
    'broken' (ok in base, not ok in candidate, with the candidate's record), 'missing' (ok in base, absent
    from the candidate), 'new' (only in the candidate), 'fixed' (not ok in base, ok in the candidate).
    """
    base_groups, cand_groups = group_records(base), group_records(candidate)
    comparisons: list[Comparison] = []
    status: dict[str, list] = {"broken": [], "missing": [], "new": [], "fixed": []}
    for key in sorted(set(base_groups) | set(cand_groups), key=str):
        base_ok = [r for r in base_groups.get(key, []) if r.status == "ok"]
        cand_all = cand_groups.get(key, [])
        cand_ok = [r for r in cand_all if r.status == "ok"]
        if key not in base_groups:
            status["new"].append(key)
        elif base_ok and not cand_all:
            status["missing"].append(key)
        elif base_ok and not cand_ok:
            status["broken"].append((key, cand_all[-1]))
        elif not base_ok and cand_ok:
            status["fixed"].append(key)
        if not base_ok or not cand_ok:
            continue
        for i, name in enumerate(metrics):
            found = compare_metric(METRICS[name], key, base_ok, cand_ok, seed=i)
            if found is not None:
                comparisons.append(found)
    return comparisons, status


def comparisons_table(comparisons: Sequence[Comparison]) -> list[Mapping[str, object]]:
    """Rows for printing or CSV: one per job and metric."""
    return [{
        "model": c.key[0], "variant": c.key[1], "format": c.key[2], "runtime": c.key[3], "target": c.key[4],
        "batch_size": c.key[5], "metric": c.metric, "unit": c.spec.unit, "better": c.spec.better,
        "base": c.base, "candidate": c.candidate, "ratio": c.ratio, "ci_low": c.ci_low, "ci_high": c.ci_high,
        "p_value": c.p_value, "test": c.test, "worse_by": c.worse_by, "note": c.note,
    } for c in comparisons]
