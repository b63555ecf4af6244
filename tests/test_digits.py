"""Digits data, the digits classifier, the Fréchet distance and label agreement (the FID analogue)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from harness.digits import (DigitsImages, classifier, digits, frechet_distance, label_agreement,
                            real_digit_features, real_digits_floor)
from harness.analysis.fidelity import digits_fidelity


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One artifact cache for the module: the classifier is trained once."""
    return tmp_path_factory.mktemp("digits-cache")


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root (fine for well-conditioned covariances)."""
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca) + np.trace(cb)
                 - 2 * np.trace(np.real(linalg.sqrtm(ca @ cb))))


def test_frechet_distance_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 6))
    b = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(_scipy_fd(a, b), rel=1e-9)


def test_frechet_distance_of_one_dimensional_gaussians_is_mean_and_sd_gaps_squared():
    """For 1-D sets: (μa − μb)² + (σa − σb)², with the sample mean and (n − 1) standard deviation."""
    a = np.array([[0.0], [2.0]])  # mean 1, sample variance 2
    b = np.array([[3.0], [5.0], [7.0]])  # mean 5, sample variance 4
    assert frechet_distance(a, b) == pytest.approx((1 - 5) ** 2 + (np.sqrt(2) - 2) ** 2, rel=1e-12)


def test_frechet_distance_is_zero_for_the_same_set_and_finite_for_singular_covariances():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((50, 8))
    a[:, 3] = 0.0  # a dead feature: singular covariance
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    b = a + 0.1
    assert frechet_distance(a, b) == pytest.approx(8 * 0.1 ** 2, rel=1e-6)  # a mean shift only


def test_frechet_distance_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="same width"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_label_agreement_counts_equal_positions():
    assert label_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError):
        label_agreement(np.array([1]), np.array([1, 2]))


def test_digits_images_map_into_and_back_out_of_a_generators_output_space():
    images, _ = digits()
    assert images.shape == (1797, 8, 8) and images.min() == 0.0 and images.max() == 1.0
    space = DigitsImages(size=64, channels=3, value_range=(-1.0, 1.0))
    x = space.to_model(torch.from_numpy(images[:10]))
    assert x.shape == (10, 3, 64, 64) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    back = space.to_digits(x.numpy())
    assert back.shape == (10, 64)
    # Upsampling then area-averaging is a blur (mean error ~0.07 per pixel), mild enough that the digits
    # classifier still reads the round-tripped images as the same digits.
    assert np.mean(np.abs(back - images[:10].reshape(10, 64))) < 0.1
    constant = np.full((2, 1, 28, 28), 0.5, np.float32)  # 28 is not a multiple of 8: adaptive pooling
    np.testing.assert_allclose(DigitsImages(size=28).to_digits(constant), 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        space.to_digits(np.zeros((2, 64)))


def test_the_classifier_is_accurate_and_cached(cache):
    clf = classifier(cache)
    images, labels = digits()
    space = DigitsImages(size=64, channels=3, value_range=(-1.0, 1.0))
    round_trip = space.to_digits(space.to_model(torch.from_numpy(images)).numpy())
    assert np.mean(clf.features_and_labels(round_trip)[1] == labels) > 0.9
    assert clf.accuracy > 0.9  # on the held-out fifth of the digits
    assert any((cache / "weights").glob("digits-classifier-*/classifier.pt"))
    _, predicted = clf.features_and_labels(images.reshape(-1, 64))
    assert np.mean(predicted == labels) > 0.95
    classifier.cache_clear()
    again = classifier(cache)  # loaded from disk, same weights
    f1, _ = clf.features_and_labels(images[:5].reshape(-1, 64))
    f2, _ = again.features_and_labels(images[:5].reshape(-1, 64))
    np.testing.assert_array_equal(f1, f2)


def test_the_fid_analogue_ranks_noise_far_from_digits_and_digits_close(cache):
    images, _ = digits()
    real = real_digit_features(cache)
    clf = classifier(cache)
    half_a, _ = clf.features_and_labels(images[::2].reshape(-1, 64))
    noise, _ = clf.features_and_labels(np.random.default_rng(0).uniform(0, 1, (900, 64)))
    assert frechet_distance(half_a, real) * 5 < frechet_distance(noise, real)
    assert real_digits_floor(cache) * 5 < frechet_distance(noise, real)


def test_digits_fidelity_compares_generated_digits_with_the_reference(cache):
    images, _ = digits()
    space = DigitsImages(size=16, channels=1, value_range=(0.0, 1.0))
    reference = space.to_model(torch.from_numpy(images[:200])).numpy()
    same = {m.metric: m.value for m in digits_fidelity(reference, reference, space, cache)}
    assert same["frechet_distance"] == pytest.approx(0.0, abs=1e-6) and same["label_agreement"] == 1.0
    shuffled = reference[::-1].copy()  # other digits: the same distribution, different labels per latent
    other = {m.metric: m.value for m in digits_fidelity(shuffled, reference, space, cache)}
    assert other["label_agreement"] < 0.5 and other["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    blank = {m.metric: m.value for m in digits_fidelity(np.zeros_like(reference), reference, space, cache)}
    assert blank["frechet_distance"] > 1.0 and blank["frechet_distance_digits"] > same["frechet_distance_digits"]
