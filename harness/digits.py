"""scikit-learn's bundled handwritten digits (1797 images, 8×8, no download) as a training set for the zoo
generators, and a small digits classifier whose features give a distribution-level fidelity score.

``DigitsImages`` maps digits into a generator's output space (upsampled, replicated over channels, scaled
to its value range) and generator outputs back into the classifier's 8×8 space. ``frechet_distance`` is the
FID formula over the classifier's penultimate-layer features (an FID analogue for 8×8 digits).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 32
"""Width of the classifier's penultimate layer (the feature space of the Fréchet distance)."""
CLASSIFIER_RECIPE = {"hidden": 128, "features": FEATURES, "epochs": 60, "batch": 64, "lr": 3e-3, "seed": 0,
                     "holdout_every": 5, "version": 1}


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


@dataclass(frozen=True)
class DigitsImages:
    """How digits look in a generator's output space: ``channels`` × ``size`` × ``size``, values in
    ``value_range`` (e.g. (-1, 1) for tanh, (0, 1) for sigmoid)."""

    size: int
    channels: int = 1
    value_range: tuple[float, float] = (0.0, 1.0)

    def to_model(self, images01: Any) -> Any:
        """Digits (N, 8, 8) in [0, 1] (torch tensor) → (N, channels, size, size) in the output range."""
        import torch.nn.functional as F

        x = F.interpolate(images01[:, None], size=(self.size, self.size), mode="bilinear", align_corners=False)
        lo, hi = self.value_range
        return (x.clamp(0, 1) * (hi - lo) + lo).expand(-1, self.channels, -1, -1)

    def to_digits(self, outputs: np.ndarray) -> np.ndarray:
        """Generator outputs (N, C, H, W) → (N, 64) in [0, 1]: channel mean, area-averaged to 8×8
        (``adaptive_avg_pool2d``), clipped."""
        import torch
        import torch.nn.functional as F

        out = np.asarray(outputs, np.float32)
        if out.ndim != 4 or min(out.shape[2:]) < 8:
            raise ValueError(f"outputs of shape {out.shape} are not (N, C, H, W) images of at least 8×8")
        lo, hi = self.value_range
        gray = (torch.from_numpy(out).mean(dim=1, keepdim=True) - lo) / (hi - lo)
        small = F.adaptive_avg_pool2d(gray, 8).clamp(0, 1)
        return small.reshape(len(out), 64).numpy().astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (rows = samples):
    ||μa − μb||² + Tr(Σa) + Tr(Σb) − 2 Tr((Σa Σb)^½). 0 for identical sets; units are squared feature units.

    Tr((Σa Σb)^½) is taken as Σ √λ over the eigenvalues λ of the symmetric PSD matrix Σa^½ Σb Σa^½ (the same
    spectrum), which stays finite when covariances are singular (dead ReLU features, few samples)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError("frechet_distance needs two (n ≥ 2, d) feature arrays of the same width")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _psd_sqrt(cov_a)
    eigenvalues = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise clipped to 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of positions where two label arrays agree."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("label_agreement needs two non-empty label arrays of the same shape")
    return float(np.mean(a == b))


class DigitsClassifier:
    """A small MLP (64 → hidden → FEATURES → 10) trained on 4/5 of the digits at first use, cached on disk
    (keyed by its recipe and the torch version); ``accuracy`` is measured on the held-out fifth."""

    def __init__(self, cache_root: Path) -> None:
        import torch
        from torch import nn

        r = CLASSIFIER_RECIPE
        self.body = nn.Sequential(nn.Linear(64, r["hidden"]), nn.ReLU(), nn.Linear(r["hidden"], r["features"]),
                                  nn.ReLU())
        self.head = nn.Linear(r["features"], 10)
        key = hashlib.sha256(json.dumps({"recipe": r, "torch": torch.__version__}, sort_keys=True)
                             .encode()).hexdigest()[:16]
        folder = cache_root / "weights" / f"digits-classifier-{key}"
        weights, meta = folder / "classifier.pt", folder / "classifier.json"
        if weights.is_file() and meta.is_file():
            state = torch.load(weights, weights_only=True)
            self.body.load_state_dict(state["body"])
            self.head.load_state_dict(state["head"])
            self.accuracy = float(json.loads(meta.read_text())["holdout_accuracy"])
        else:
            self.accuracy = self._train()
            folder.mkdir(parents=True, exist_ok=True)
            tmp = weights.with_suffix(".tmp")
            torch.save({"body": self.body.state_dict(), "head": self.head.state_dict()}, tmp)
            tmp.replace(weights)
            meta.write_text(json.dumps({"holdout_accuracy": self.accuracy, "recipe": r}))
        self.body.eval()
        self.head.eval()

    def _train(self) -> float:
        import torch

        r = CLASSIFIER_RECIPE
        images, labels = digits()
        x, y = torch.from_numpy(images.reshape(-1, 64)), torch.from_numpy(labels)
        holdout = torch.arange(len(x)) % r["holdout_every"] == 0
        gen = torch.Generator().manual_seed(r["seed"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r["seed"])
            for layer in (*self.body, self.head):
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
        params = [*self.body.parameters(), *self.head.parameters()]
        opt = torch.optim.Adam(params, lr=r["lr"])
        xt, yt = x[~holdout], y[~holdout]
        with torch.enable_grad():  # also when a caller runs under no_grad
            self._fit(xt, yt, opt, gen)
        with torch.no_grad():
            predicted = self.head(self.body(x[holdout])).argmax(1)
        return float((predicted == y[holdout]).float().mean())

    def _fit(self, xt: Any, yt: Any, opt: Any, gen: Any) -> None:
        import torch

        r = CLASSIFIER_RECIPE
        for _ in range(r["epochs"]):
            order = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), r["batch"]):
                idx = order[i:i + r["batch"]]
                loss = torch.nn.functional.cross_entropy(self.head(self.body(xt[idx])), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def features_and_labels(self, x64: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, FEATURES), predicted labels (N,)) for 8×8 images flattened to (N, 64) in [0, 1]."""
        import torch

        with torch.no_grad():
            f = self.body(torch.as_tensor(np.asarray(x64, np.float32)))
            return f.numpy().astype(np.float64), self.head(f).argmax(1).numpy()


@functools.lru_cache(maxsize=4)
def classifier(cache_root: Path) -> DigitsClassifier:
    return DigitsClassifier(cache_root)


@functools.lru_cache(maxsize=4)
def real_digit_features(cache_root: Path) -> np.ndarray:
    """Classifier features of all 1797 real digits (the 'real data' side of the FID analogue)."""
    images, _ = digits()
    return classifier(cache_root).features_and_labels(images.reshape(-1, 64))[0]


def real_digits_floor(cache_root: Path, n: int = 256, seed: int = 0) -> float:
    """Fréchet distance of ``n`` real digits (drawn with ``seed``) to all of them: the score of a perfect
    generator measured on a sample set of that size, the floor to read the others against."""
    images, _ = digits()
    pick = np.random.default_rng(seed).choice(len(images), n, replace=False)
    features, _ = classifier(cache_root).features_and_labels(images[pick].reshape(n, 64))
    return frechet_distance(features, real_digit_features(cache_root))


if __name__ == "__main__":  # python -m harness.digits: the classifier's accuracy and the FD floor
    from harness.config.paths import cache_dir

    print(f"digits classifier held-out accuracy: {classifier(cache_dir()).accuracy:.3f}")
    print(f"Fréchet distance, 256 real digits vs all 1797: {real_digits_floor(cache_dir()):.2f}")
