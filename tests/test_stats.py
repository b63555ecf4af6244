import math

import numpy as np
import pytest

from harness import stats


def test_percentile_hand_computed():
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    # positions (n-1)*q: 9 * 0.9 = 8.1 → 9 + 0.1 * (10 - 9)
    assert stats.percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    assert stats.percentile([5, 1, 3], 0) == 1
    assert stats.percentile([5, 1, 3], 100) == 5
    assert stats.percentile([7.0], 99) == 7.0


def test_percentile_agrees_with_numpy_linear():
    rng = np.random.default_rng(1)
    xs = rng.lognormal(size=101).tolist()
    for q in (1, 50, 90, 95, 99):
        assert stats.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_mean_stdev_cv_hand_computed():
    xs = [2, 4, 4, 4, 5, 5, 7, 9]
    assert stats.mean(xs) == 5
    # squared deviations sum to 32; sample variance 32 / 7
    assert stats.stdev(xs) == pytest.approx(math.sqrt(32 / 7))
    assert stats.coefficient_of_variation(xs) == pytest.approx(math.sqrt(32 / 7) / 5)
    assert stats.stdev([3.0]) == 0.0


def test_bootstrap_ci_constant_sample_is_a_point():
    assert stats.bootstrap_median_ci([4.0] * 30) == (4.0, 4.0)


def test_bootstrap_ci_brackets_median_and_is_deterministic():
    rng = np.random.default_rng(7)
    xs = rng.normal(10, 1, size=400).tolist()
    lo, hi = stats.bootstrap_median_ci(xs, seed=3)
    median = stats.percentile(xs, 50)
    assert lo <= median <= hi
    assert (lo, hi) == stats.bootstrap_median_ci(xs, seed=3)
    # The median's standard error for a normal is about 1.2533 * sigma / sqrt(n) = 0.0627;
    # a 95% interval is about ±1.96 of that: width ≈ 0.246. Allow generous slack for the bootstrap.
    assert 0.12 < hi - lo < 0.45


def test_bootstrap_ci_width_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small = rng.exponential(size=100).tolist()
    large = rng.exponential(size=10_000).tolist()
    w_small = np.subtract(*stats.bootstrap_median_ci(small)[::-1])
    w_large = np.subtract(*stats.bootstrap_median_ci(large)[::-1])
    assert w_large < w_small / 4  # ~ sqrt(100) = 10x narrower in theory


def test_bootstrap_chunking_bounds_memory_without_changing_the_answer_much():
    rng = np.random.default_rng(5)
    xs = rng.normal(size=2000).tolist()
    one_chunk = stats.bootstrap_median_ci(xs, resamples=500, chunk_elements=10**9)
    many_chunks = stats.bootstrap_median_ci(xs, resamples=500, chunk_elements=2000 * 7)
    assert many_chunks == pytest.approx(one_chunk, abs=0.03)


def test_halves_agree():
    assert stats.halves_agree([10] * 10, 0.1)
    assert not stats.halves_agree([20] * 5 + [10] * 5, 0.1)  # first half 2x the second
    assert stats.halves_agree([10.5] * 5 + [10] * 5, 0.05)  # exactly 5% apart
    assert not stats.halves_agree([10.6] * 5 + [10] * 5, 0.05)
    # Too few samples to judge: two medians of 2 (or 4) samples agree by chance.
    assert not stats.halves_agree([1, 1, 1], 0.5)
    assert not stats.halves_agree([10, 10, 10, 10], 0.1)
    assert not stats.halves_agree([10] * 9, 0.1)


def test_summarize_hand_computed():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["n"] == 5 and s["min"] == 1 and s["max"] == 5
    assert s["mean"] == 3 and s["p50"] == 3
    assert s["p90"] == pytest.approx(4.6)
    assert s["std"] == pytest.approx(math.sqrt(2.5))
    assert s["median_ci_low"] <= 3 <= s["median_ci_high"]
