"""Brief training of zoo generators on scikit-learn's digits, with the weights cached outside the checkout.

A model file opts in with ``register_model(..., training=DigitsTraining(...))``. Objectives:
- ``vae``: the generator is the decoder of a VAE whose encoder is a small MLP on the 8×8 digit; samples from
  the latent prior then look like digits (a stable, few-minute stand-in for adversarial training).
- ``denoiser``: DDPM noise prediction (linear β schedule, 1000 steps) on digits; the model takes (x_t, t).

The trained state_dict is cached under ``<cache>/weights/<model>-<key>/`` where the key hashes the model
file, its builder kwargs, the training recipe and the torch version; the training curve is stored beside it.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.digits import DigitsImages, digits

OBJECTIVES = ("vae", "denoiser")


@dataclass(frozen=True)
class DigitsTraining:
    """How a zoo generator is trained on digits. ``steps`` Adam steps of ``batch`` images at ``lr``;
    ``beta`` weighs the VAE's KL term against the reconstruction error (mean squared error × 64)."""

    images: DigitsImages
    objective: str = "vae"
    steps: int = 1000
    batch: int = 64
    lr: float = 2e-3
    beta: float = 0.05
    seed: int = 0
    curve_points: int = 25

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown training objective {self.objective!r} (known: {', '.join(OBJECTIVES)})")
        if self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise ValueError("steps and batch must be >= 1 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def weights_key(spec: Any, model: Any = None) -> str:
    """The cache key of a spec's trained weights ('' for a model without training); ``model``: one its builder
    built (its code is part of the key, ``harness.prepare.identity``)."""
    import torch

    from harness.prepare.artifacts import content_id
    from harness.prepare.identity import code_digest

    if spec.training is None:
        return ""
    return content_id(None, "train", {"model": spec.name, "builder_kwargs": dict(spec.builder_kwargs),
                                      "source_sha256": code_digest(spec, model), "training": spec.training.to_dict()},
                      {"torch": torch.__version__})


def build_trained(spec: Any, cache_root: Path) -> tuple[Any, dict[str, Any]]:
    """The spec's generator in eval mode, with the user's checkpoint loaded when it declares one, or trained
    weights when it declares training (trained now, or loaded from the cache), and what is known about them:
    ``{"weights_sha256", "checkpoint"}`` for a checkpoint, ``{}`` for an untrained model, else
    ``{"weights_sha256", "training": recipe, "curve": [[step, loss], ...], "seconds", "cached"}``."""
    import torch

    from harness.hashing import file_sha256

    model = spec.builder(**spec.builder_kwargs)
    if getattr(spec, "checkpoint", None) is not None:
        from harness.prepare.checkpoints import load_checkpoint

        digest = load_checkpoint(model, spec.checkpoint)
        return model.eval(), {"weights_sha256": digest, "checkpoint": spec.checkpoint.to_dict()}
    if spec.training is None:
        return model, {}
    folder = cache_root / "weights" / f"{spec.name}-{weights_key(spec, model)}"
    weights, meta_path = folder / "weights.pt", folder / "training.json"
    cached = weights.is_file() and meta_path.is_file()
    if cached:
        model.load_state_dict(torch.load(weights, weights_only=True))
        meta = json.loads(meta_path.read_text())
    else:
        meta = train(model, spec.training, spec.make_inputs)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(weights)
        meta_path.write_text(json.dumps(meta))
    model.eval()
    return model, {"weights_sha256": file_sha256(weights), "training": spec.training.to_dict(),
                   "curve": meta["curve"], "seconds": meta["seconds"], "cached": cached}


def train(model: Any, recipe: DigitsTraining, make_inputs: Any) -> dict[str, Any]:
    """Train ``model`` in place; return ``{"curve": [[step, loss], ...], "seconds": wall time}``."""
    import torch

    images = torch.from_numpy(digits()[0])
    gen = torch.Generator().manual_seed(recipe.seed)
    example = make_inputs(1, recipe.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        step_fn, extra_params = (_vae_step if recipe.objective == "vae" else _denoiser_step)(model, recipe, example)
    opt = torch.optim.Adam([*model.parameters(), *extra_params], lr=recipe.lr)
    every = max(1, recipe.steps // recipe.curve_points)
    curve: list[list[float]] = []
    model.train()
    t0 = time.perf_counter()
    with torch.enable_grad():  # also when a caller runs under no_grad
        _loop(recipe, images, gen, step_fn, opt, every, curve)
    model.eval()
    return {"curve": curve, "seconds": round(time.perf_counter() - t0, 2)}


def _loop(recipe: DigitsTraining, images: Any, gen: Any, step_fn: Any, opt: Any, every: int,
          curve: list[list[float]]) -> None:
    import torch

    window: list[float] = []
    from harness.prepare import progress

    for step in range(1, recipe.steps + 1):
        progress.report(f"training on digits ({recipe.objective})", step - 1, recipe.steps)
        idx = torch.randint(0, len(images), (recipe.batch,), generator=gen)
        loss = step_fn(images[idx], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        window.append(float(loss.detach()))
        if step % every == 0 or step == recipe.steps:
            curve.append([step, round(float(np.mean(window)), 6)])
            window = []


def _vae_step(model: Any, recipe: DigitsTraining, example: dict[str, np.ndarray]) -> tuple[Any, list[Any]]:
    """A VAE loss closure with ``model`` as decoder and a new MLP encoder (returned as extra parameters)."""
    import torch
    from torch import nn

    if len(example) != 1:
        raise ValueError("the 'vae' objective needs a generator with one latent input")
    latent_shape = next(iter(example.values())).shape[1:]
    latent_dim = int(np.prod(latent_shape))
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 2 * latent_dim))
    lo, hi = recipe.images.value_range

    def step(batch: Any, gen: Any) -> Any:
        mu, logvar = encoder(batch).chunk(2, dim=1)
        z = mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp()
        out = model(z.view(-1, *latent_shape))
        target = recipe.images.to_model(batch)
        reconstruction = (((out - target) / (hi - lo)) ** 2).mean(dim=(1, 2, 3)).mul(64).mean()
        kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)).mean()
        return reconstruction + recipe.beta * kl

    return step, list(encoder.parameters())


def _denoiser_step(model: Any, recipe: DigitsTraining, example: dict[str, np.ndarray]) -> tuple[Any, list[Any]]:
    """A DDPM noise-prediction loss closure for a model called as ``model(x_t, t)``."""
    import torch

    if len(example) != 2:
        raise ValueError("the 'denoiser' objective needs a model with inputs (x_t, t)")
    betas = torch.linspace(1e-4, 0.02, 1000)
    alpha_bar = torch.cumprod(1 - betas, dim=0)

    def step(batch: Any, gen: Any) -> Any:
        x0 = recipe.images.to_model(batch)
        t = torch.randint(0, 1000, (len(x0),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alpha_bar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return ((model(xt, t.float()) - noise) ** 2).mean()

    return step, []
