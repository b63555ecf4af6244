"""Change points in a metric's history: where a series of per-run values stepped to a new level (pure).

Method: penalised step fitting by PELT (``ruptures``, least-squares cost) on the series scaled by its own noise.
A relative metric (latency, memory) is fitted in log space, so a 10% step is the same size at 1 ms and at 1 s. The
noise is estimated robustly from successive differences (the MAD of the differences, /√2), so a step itself barely
raises it; the penalty per change point is ``PENALTY_PER_LOG_N`` × ln(n) in those noise units (a BIC-like choice,
checked on synthetic noise in the tests). A fitted change point is kept as a **step** only when the levels on its
two sides (medians of the segments) differ by more than the metric's gate threshold, so history and gate agree on
what counts as a change. A one-run segment between two segments at the same level (within the threshold) is an
**outlier**, not two steps; a one-run segment at the end is a step that only the newest run shows so far.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PENALTY_PER_LOG_N = 4.0
"""Penalty per change point, in units of ln(n) × noise²: higher fits fewer steps."""
NOISE_FLOOR = 1e-3
"""Lowest noise scale (in log units for relative metrics: 0.1%): a perfectly steady series (size, a deterministic
fidelity figure) still needs a real change to step."""


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


def _noise(x: np.ndarray) -> float:
    if len(x) < 3:
        return NOISE_FLOOR
    d = np.diff(x)
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / math.sqrt(2), NOISE_FLOOR)


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
    if n == 0:
        return Fit((), (), (), NOISE_FLOOR)
    if not np.all(np.isfinite(raw)) or (relative and np.any(raw <= 0)):
        raise ValueError("values must be finite (and positive for a relative metric)")
    x = np.log(raw) if relative else raw.copy()
    noise = _noise(x)
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
        if (end - start == 1 and i + 1 < len(segments)
                and abs(_change(before, medians[i + 1], relative)) <= threshold):
            outliers.append(start)  # one run off, then back: not two steps
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
