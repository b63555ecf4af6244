"""Diffusion samplers as users run them: a noise-predicting denoiser called once per step of a DDIM or DDPM
trajectory, from pure noise to an image. Pure numpy, so the same code runs the fp32 PyTorch reference at
prepare time and any runtime's artifact in the worker (locally, on a board, on a cluster node).

``Sampler`` is what a denoiser model declares: the method, the number of steps, the noise schedule it was
trained with (linear β from ``beta_start`` to ``beta_end`` over ``train_steps``, as in DDPM, Ho et al. 2020),
the names of its image and timestep inputs, and optionally the decoder model its final latents go through. The timesteps are evenly spaced over the training steps
(DDIM's "uniform" skip, Song et al. 2021); DDPM here is the ancestral sampler on that same respaced schedule,
its noise drawn from ``seed`` so that every artifact of a model walks the same path.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

METHODS = ("ddim", "ddpm")


@dataclass(frozen=True)
class Sampler:
    """A sampling loop for a denoiser that predicts the noise ε in ``x_t`` (inputs ``image_input``, ``time_input``;
    the timestep is passed as float32, one per batch item)."""

    method: str = "ddim"
    steps: int = 20
    train_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    image_input: str = "x"
    time_input: str = "t"
    clip: float = 1.0
    """The predicted clean image is clipped to [-clip, clip] at each step (0 = never), as image diffusion does."""
    seed: int = 0
    """DDPM's per-step noise comes from this seed (the same for every artifact of the model)."""
    decoder: str = ""
    """A registered model that turns the loop's final latents into images (a latent diffusion's VAE decoder; one
    input, shaped like the denoiser's image input); '' = the loop's output is the image."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"sampler method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not 1 <= self.steps <= self.train_steps:
            raise ValueError(f"sampler steps must be between 1 and train_steps ({self.train_steps}), not {self.steps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"sampler betas need 0 < beta_start < beta_end < 1, not {self.beta_start}, "
                             f"{self.beta_end}")
        if self.clip < 0:
            raise ValueError(f"sampler clip must be >= 0, not {self.clip}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Sampler":
        """From a request or a project file; unknown keys are an error naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown sampler field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.steps} steps" + (f" + decoder {self.decoder}" if self.decoder else "")


def alpha_bars(sampler: Sampler) -> np.ndarray:
    """ᾱ_t = Π(1 − β_s), s ≤ t, for t = 0 … train_steps − 1 (float64)."""
    betas = np.linspace(sampler.beta_start, sampler.beta_end, sampler.train_steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def timesteps(sampler: Sampler) -> np.ndarray:
    """The trajectory's timesteps, noisiest first: ``steps`` evenly spaced integers ending at 0."""
    return np.round(np.linspace(sampler.train_steps - 1, 0, sampler.steps)).astype(np.int64)


def step_noise(sampler: Sampler, shape: tuple[int, ...], step: int, rows: np.ndarray) -> np.ndarray:
    """DDPM's fresh noise at ``step`` for the images ``rows`` of a sample set (each image's own, seeded by the
    sampler's seed, the step and its row: the same whichever batches a set is generated in; float32)."""
    return np.stack([np.random.default_rng([sampler.seed, step, int(r)]).standard_normal(shape[1:])
                     for r in rows]).astype(np.float32)


def sample(denoise: Callable[[np.ndarray, np.ndarray], np.ndarray], sampler: Sampler, noise: np.ndarray,
           on_step: Callable[[int], None] | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """Run the trajectory from ``noise`` (x_T, float32 N×…) and return the generated images (float32).

    ``denoise(x_t, t)`` returns the predicted noise for a batch (``t``: float32, one per item). ``on_step(i)`` is
    called after step ``i``'s denoiser call. ``rows``: the images' rows in their sample set (default 0…N−1),
    which seed DDPM's per-image noise. The arithmetic is float32 throughout (the same on every NumPy)."""
    abar = alpha_bars(sampler).astype(np.float32)
    ts = timesteps(sampler)
    rows = np.arange(len(noise)) if rows is None else np.asarray(rows)
    one = np.float32(1.0)
    x = noise.astype(np.float32)
    for i, t in enumerate(ts):
        eps = np.asarray(denoise(x, np.full(len(x), float(t), dtype=np.float32)), dtype=np.float32)
        if on_step is not None:
            on_step(i)
        a_t = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else one
        x0 = (x - np.sqrt(one - a_t) * eps) / np.sqrt(a_t)
        if sampler.clip:
            x0 = np.clip(x0, np.float32(-sampler.clip), np.float32(sampler.clip))
        if sampler.method == "ddim" or i + 1 == len(ts):
            # η = 0: the deterministic DDIM step, re-deriving ε from the (clipped) x0 estimate
            eps_hat = (x - np.sqrt(a_t) * x0) / np.sqrt(one - a_t)
            x = np.sqrt(a_prev) * x0 + np.sqrt(one - a_prev) * eps_hat
        else:  # DDPM ancestral step on the respaced schedule: the posterior q(x_prev | x_t, x0)
            beta = one - a_t / a_prev
            mean = (np.sqrt(a_prev) * beta / (one - a_t)) * x0 + (np.sqrt(one - beta) * (one - a_prev) / (one - a_t)) * x
            var = beta * (one - a_prev) / (one - a_t)
            x = mean + np.sqrt(var) * step_noise(sampler, x.shape, i, rows)
        x = x.astype(np.float32)
    return x
