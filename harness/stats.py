"""Pure statistics over latency samples. No I/O, no globals; every function is tested by hand.

Units are whatever the caller passes in (the harness uses milliseconds).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between order statistics (type 7)."""
    xs = sorted(samples)
    if not xs:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(samples: Sequence[float]) -> float:
    if not samples:
        raise ValueError("mean of an empty sample")
    return math.fsum(samples) / len(samples)


def stdev(samples: Sequence[float]) -> float:
    """Sample standard deviation (n − 1 denominator); 0.0 for a single sample."""
    n = len(samples)
    if n < 2:
        return 0.0
    m = mean(samples)
    return math.sqrt(math.fsum((x - m) ** 2 for x in samples) / (n - 1))


def coefficient_of_variation(samples: Sequence[float]) -> float:
    """stdev / mean (a fraction, not a percentage); 0.0 when the mean is 0."""
    m = mean(samples)
    return stdev(samples) / m if m else 0.0


def bootstrap_median_ci(
    samples: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    chunk_elements: int = 4_000_000,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median.

    Deterministic for a given ``seed``. Memory is bounded: resamples are drawn in chunks of at most
    ``chunk_elements`` values, so a million samples does not need a resamples × n matrix at once.
    """
    x = np.asarray(samples, dtype=float)
    n = x.size
    if n == 0:
        raise ValueError("bootstrap of an empty sample")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be within (0, 1)")
    if n == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_elements // n)
    medians = np.empty(resamples)
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        idx = rng.integers(0, n, size=(k, n))
        medians[done : done + k] = np.median(x[idx], axis=1)
        done += k
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(medians, [alpha, 1 - alpha])
    return float(lo), float(hi)


def halves_agree(samples: Sequence[float], tolerance: float) -> bool:
    """Warm-up stability test: do the medians of the first and second halves differ by ≤ tolerance?

    The difference is relative to the second half's median. Needs at least 4 samples.
    """
    n = len(samples)
    if n < 4:
        return False
    half = n // 2
    first = percentile(samples[:half], 50)
    second = percentile(samples[n - half :], 50)
    if second == 0:
        return first == 0
    return abs(first - second) / second <= tolerance


def summarize(samples: Sequence[float], seed: int = 0) -> dict[str, float]:
    """The summary the harness reports for a latency distribution.

    Keys: n, min, max, mean, std, cv, p50, p90, p95, p99, median_ci_low, median_ci_high.
    """
    if not samples:
        raise ValueError("summary of an empty sample")
    lo, hi = bootstrap_median_ci(samples, seed=seed)
    out = {
        "n": float(len(samples)),
        "min": float(min(samples)),
        "max": float(max(samples)),
        "mean": mean(samples),
        "std": stdev(samples),
        "cv": coefficient_of_variation(samples),
    }
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(samples, q)
    out["median_ci_low"] = lo
    out["median_ci_high"] = hi
    return out
