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


def _bootstrap(x: np.ndarray, statistic, resamples: int, rng: np.random.Generator,
               chunk_elements: int = 4_000_000) -> np.ndarray:
    """``statistic`` (a numpy reducer taking ``axis=1``) of ``resamples`` resamples of ``x`` with replacement.

    Memory is bounded: resamples are drawn in chunks of at most ``chunk_elements`` values.
    """
    n = x.size
    per_chunk = max(1, chunk_elements // n)
    out = np.empty(resamples)
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        out[done : done + k] = statistic(x[rng.integers(0, n, size=(k, n))], axis=1)
        done += k
    return out


def robust_cv(samples: Sequence[float]) -> float:
    """1.4826 × median absolute deviation / median: the CV of a normal sample, unmoved by a few outliers.
    0.0 when the median is 0."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("robust CV of an empty sample")
    med = float(np.median(x))
    return 1.4826 * float(np.median(np.abs(x - med))) / med if med else 0.0


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
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be within (0, 1)")
    if x.size == 1:
        return float(x[0]), float(x[0])
    medians = _bootstrap(x, np.median, resamples, np.random.default_rng(seed), chunk_elements)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(medians, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _p90(x: np.ndarray, axis: int) -> np.ndarray:
    return np.percentile(x, 90, axis=axis)


QUANTILE_STATISTICS = {"median": np.median, "p90": _p90}
"""Statistics ``bootstrap_ratio`` can compare, by name."""


def bootstrap_ratio(
    base: Sequence[float],
    candidate: Sequence[float],
    statistic: str = "median",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """Ratio candidate/base of a statistic ('median' or 'p90'), its percentile-bootstrap CI and a two-sided
    bootstrap p-value for "the ratio is 1".

    Each side is resampled independently. Returns (ratio, ci_low, ci_high, p_value); the p-value is
    2·min(share of resampled ratios ≤ 1, share ≥ 1), floored at 1/resamples. Deterministic for ``seed``.
    """
    stat = QUANTILE_STATISTICS[statistic]
    a, b = np.asarray(base, dtype=float), np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be within (0, 1)")
    base_stat = float(stat(a[None, :], axis=1)[0])
    if base_stat <= 0:
        raise ValueError("the base statistic must be positive to form a ratio")
    ratio = float(stat(b[None, :], axis=1)[0]) / base_stat
    rng = np.random.default_rng(seed)
    ratios = _bootstrap(b, stat, resamples, rng) / np.maximum(_bootstrap(a, stat, resamples, rng), 1e-300)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    p = 2 * min(np.mean(ratios <= 1.0), np.mean(ratios >= 1.0))
    return ratio, float(lo), float(hi), float(min(1.0, max(p, 1.0 / resamples)))


def mann_whitney_p(base: Sequence[float], candidate: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (scipy; asymptotic with tie and continuity correction for large
    samples, exact for small ones): do the two samples come from distributions shifted against each other?"""
    from scipy.stats import mannwhitneyu

    if len(base) == 0 or len(candidate) == 0:
        raise ValueError("Mann-Whitney U of an empty sample")
    if np.ptp(np.concatenate([np.asarray(base, float), np.asarray(candidate, float)])) == 0:
        return 1.0  # every value equal: no evidence of a shift (scipy would divide by a zero variance)
    return float(mannwhitneyu(candidate, base, alternative="two-sided").pvalue)


def smallest_p(test: str, n_base: int, n_candidate: int = 0, resamples: int = 2000) -> float:
    """The smallest two-sided p-value ``test`` can give with these sample sizes: the test applied to completely
    separated data ('mann-whitney-u': 2/C(n+m, n) when exact; 'wilcoxon': n pairs all one way, 2/2^n when exact;
    'bootstrap': the floor 1/resamples). A significance level at or below it can never be reached."""
    if test == "mann-whitney-u":
        return mann_whitney_p(np.arange(n_base, dtype=float), np.arange(n_base, n_base + n_candidate, dtype=float))
    if test == "wilcoxon":
        from scipy.stats import wilcoxon

        return float(wilcoxon(np.arange(1, n_base + 1, dtype=float), alternative="two-sided").pvalue)
    if test == "bootstrap":
        return 1.0 / resamples
    raise ValueError(f"unknown test {test!r}")


def paired_ratio(base: Sequence[float], candidate: Sequence[float], confidence: float = 0.95,
                 resamples: int = 2000, seed: int = 0) -> tuple[float, float, float, float]:
    """Paired comparison of two equally long sequences (pair i measured side by side, e.g. interleaved rounds):
    the median of the pairs' ratios candidate_i/base_i, its percentile-bootstrap CI (pairs resampled together)
    and the two-sided Wilcoxon signed-rank p-value of the log ratios (scipy; exact for small n). Pairing takes
    out what the two sides of a pair share: the speed of the machine at that moment.

    Returns (ratio, ci_low, ci_high, p_value). Deterministic for ``seed``.
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(base, dtype=float), np.asarray(candidate, dtype=float)
    if a.size == 0 or a.size != b.size:
        raise ValueError("paired ratio needs two non-empty sequences of equal length")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be within (0, 1)")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("paired ratio needs positive values")
    ratios = b / a
    rng = np.random.default_rng(seed)
    boot = _bootstrap(ratios, np.median, resamples, rng)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    logs = np.log(ratios)
    p = 1.0 if np.all(logs == 0) else float(wilcoxon(logs, alternative="two-sided").pvalue)
    return float(np.median(ratios)), float(lo), float(hi), p


WARMUP_HALF_MIN = 5
"""The fewest samples in each half of the warm-up stability test: two medians of 2 samples agree by chance."""


def halves_agree(samples: Sequence[float], tolerance: float) -> bool:
    """Warm-up stability test: do the medians of the first and second halves differ by ≤ tolerance?

    The difference is relative to the second half's median. Needs ``2 * WARMUP_HALF_MIN`` samples.
    """
    n = len(samples)
    if n < 2 * WARMUP_HALF_MIN:
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
