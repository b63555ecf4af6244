"""Helpers for model files in models/: deterministic latents and seeded construction."""
from __future__ import annotations

import numpy as np
import torch


def latent_inputs(shape_after_batch: tuple[int, ...], name: str = "z"):
    """Return make_inputs(batch, seed): standard-normal latents, float32, deterministic per seed."""

    def make_inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {name: rng.standard_normal((batch, *shape_after_batch)).astype(np.float32)}

    return make_inputs


def seeded(module_factory, seed: int) -> torch.nn.Module:
    """Build a module with deterministic initial weights for ``seed``, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = module_factory()
    return model.eval()
