"""Change points in a metric's history: where a series of per-run values stepped to a new level (pure).

Method: penalised step fitting by PELT (``ruptures``, least-squares cost) on the series scaled by its own noise.
A relative metric (latency, memory) is fitted in log space, so a 10% step is the same size at 1 ms and at 1 s. The
noise is estimated robustly from successive differences (the MAD of the differences, /√2), so a step itself barely
raises it; the penalty per change point is ``PENALTY_PER_LOG_N`` × ln(n) in those noise units (a BIC-like choice,
checked on synthetic noise in the tests). A fitted change point is kept as a **step** only when the levels on its
two sides (medians of the segments) differ by more than the metric's gate threshold, so history and gate agree on
what counts as a change. A one-run segment between two others is an **outlier**, not two steps, when the runs after
it come back to the level before it (within the threshold), or when it lies beyond both of its neighbours'
levels (an excursion: one slow run, then a real step): a step after an excursion is measured from the level
before the excursion (1.00, one run at 1.30, then 1.12 is one step of +12%, not +30% then -14%). A one-run segment
between two levels (a ramp) is a step; a one-run segment at the end is a step that only the newest run shows so far.

The noise floor keeps a perfectly steady series (size, a deterministic fidelity figure) from stepping on float
round-off; it is relative to the threshold for an absolute metric, so it never hides a change the gate would fail
(a NaN share going from 0 to 0.002 against a threshold of 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PENALTY_PER_LOG_N = 4.0
"""Penalty per change point, in units of ln(n) × noise²: higher fits fewer steps."""
NOISE_FLOOR = 1e-3
"""Lowest noise scale of a relative metric (log units: 0.1%), and of an absolute metric as a fraction of its
threshold (PSNR, threshold 1 dB: 0.001 dB): a perfectly steady series still needs a real change to step."""
ZERO_THRESHOLD_FLOOR = 1e-12
"""Lowest noise scale of an absolute metric whose threshold is 0 (any change fails, as a new NaN/inf share does), in
the metric's unit: only float round-off is below it."""


def noise_floor(threshold: float, relative: bool) -> float:
    """The lowest noise scale for a metric with this gate ``threshold`` (log units when ``relative``, else the
    metric's unit)."""
    if relative:
        return NOISE_FLOOR
    return NOISE_FLOOR * threshold if threshold > 0 else ZERO_THRESHOLD_FLOOR


@dataclass(frozen=True)
class Step:
    """A change of level starting at run ``index`` (0-based, the first run at the new level)."""

    index: int
    before: float
    after: float
    change: float
    """Relative (after / before - 1) or absolute (after - before), as the metric's ``change`` says."""
    runs_after: int
    """How many runs sit at the new level (1 = only the newest run so far, when ``index`` is the last run)."""


@dataclass(frozen=True)
class Fit:
    steps: tuple[Step, ...]
    outliers: tuple[int, ...]
    levels: tuple[float, ...]
    """The fitted level of each run (its segment's median), for plotting."""
    noise: float
    """The robust noise scale used (log units for relative metrics)."""


def _noise(x: np.ndarray, floor: float) -> float:
    if len(x) < 3:
        return floor
    d = np.diff(x)
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / math.sqrt(2), floor)


def _change(before: float, after: float, relative: bool) -> float:
    if relative:
        return after / before - 1 if before else math.inf
    return after - before


def find_steps(values: Sequence[float], threshold: float, relative: bool = True,
               penalty_per_log_n: float = PENALTY_PER_LOG_N) -> Fit:
    """Steps in ``values`` (one per run, oldest first) larger than ``threshold`` (a fraction when ``relative``,
    else in the metric's unit). Values must be finite (and > 0 when ``relative``)."""
    import ruptures

    raw = np.asarray(values, dtype=float)
    n = len(raw)
    floor = noise_floor(threshold, relative)
    if n == 0:
        return Fit((), (), (), floor)
    if not np.all(np.isfinite(raw)) or (relative and np.any(raw <= 0)):
        raise ValueError("values must be finite (and positive for a relative metric)")
    x = np.log(raw) if relative else raw.copy()
    noise = _noise(x, floor)
    if n < 2:
        return Fit((), (), tuple(raw), noise)
    ends = ruptures.Pelt(model="l2", min_size=1, jump=1).fit((x / noise).reshape(-1, 1)).predict(
        pen=penalty_per_log_n * math.log(n))
    bounds = [0] + [int(e) for e in ends]
    segments = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    segments = _merge_small(raw, segments, threshold, relative)
    levels: list[float] = []
    for start, end in segments:
        levels += [float(np.median(raw[start:end]))] * (end - start)
    medians = [float(np.median(raw[a:b])) for a, b in segments]
    steps, outliers = [], []
    reference = 0  # the segment the next one is compared with (an outlier leaves it in place)
    for i in range(1, len(segments)):
        start, end = segments[i]
        before = medians[reference]
        if end - start == 1 and i + 1 < len(segments) and (
                abs(_change(before, medians[i + 1], relative)) <= threshold  # one run off, then back
                or not min(before, medians[i + 1]) <= medians[i] <= max(before, medians[i + 1])):  # an excursion
            outliers.append(start)  # not two steps: the next segment is compared with the level before this run
            continue
        change = _change(before, medians[i], relative)
        if abs(change) > threshold:
            steps.append(Step(start, before, medians[i], change, end - start))
            reference = i
    return Fit(tuple(steps), tuple(outliers), tuple(levels), noise)


def _merge_small(raw: np.ndarray, segments: list[tuple[int, int]], threshold: float,
                 relative: bool) -> list[tuple[int, int]]:
    """Merge neighbouring segments whose levels differ by no more than ``threshold`` (fitted but too small to be
    a step), until every boundary left is larger than it."""
    merged = list(segments)
    changed = True
    while changed and len(merged) > 1:
        changed = False
        sizes = [abs(_change(float(np.median(raw[a[0]:a[1]])), float(np.median(raw[b[0]:b[1]])), relative))
                 for a, b in zip(merged, merged[1:])]
        smallest = int(np.argmin(sizes))
        if sizes[smallest] <= threshold:
            left, right = merged[smallest], merged[smallest + 1]
            merged[smallest:smallest + 2] = [(left[0], right[1])]
            changed = True
    return merged
