"""A small UNet denoiser for one diffusion step: (noisy 1×32×32 image, timestep) → predicted noise."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from harness.digits import DigitsImages
from harness.diffusion import Sampler
from harness.training import DigitsTraining
from harness.zoo import register_model
from harness.model_helpers import seeded


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of float timesteps ``t`` (shape N) → (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.temb(emb)[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class UNetDenoiser(nn.Module):
    def __init__(self, base: int = 32, temb: int = 64) -> None:
        super().__init__()
        self.temb_dim = temb
        self.time_mlp = nn.Sequential(nn.Linear(temb, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(1, base, 3, padding=1)
        self.down1 = ResBlock(base, base, temb)  # 32×32
        self.pool1 = nn.Conv2d(base, base, 3, stride=2, padding=1)  # 16×16
        self.down2 = ResBlock(base, base * 2, temb)
        self.pool2 = nn.Conv2d(base * 2, base * 2, 3, stride=2, padding=1)  # 8×8
        self.mid = ResBlock(base * 2, base * 2, temb)
        self.up2 = nn.ConvTranspose2d(base * 2, base * 2, 4, 2, 1)  # 16×16
        self.dec2 = ResBlock(base * 4, base, temb)
        self.up1 = nn.ConvTranspose2d(base, base, 4, 2, 1)  # 32×32
        self.dec1 = ResBlock(base * 2, base, temb)
        self.out = nn.Sequential(nn.GroupNorm(8, base), nn.SiLU(), nn.Conv2d(base, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.temb_dim))
        h0 = self.down1(self.inp(x), emb)
        h1 = self.down2(self.pool1(h0), emb)
        h = self.mid(self.pool2(h1), emb)
        h = self.dec2(torch.cat([self.up2(h), h1], dim=1), emb)
        h = self.dec1(torch.cat([self.up1(h), h0], dim=1), emb)
        return self.out(h)


def make_inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
    """A noisy 32×32 image and a float timestep in [0, 1000) per batch item."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((batch, 1, 32, 32)).astype(np.float32),
        "t": rng.uniform(0, 1000, size=(batch,)).astype(np.float32),
    }


@register_model(
    "unet_denoiser",
    make_inputs=make_inputs,
    seed=0,
    kind="denoiser",
    description="Small UNet denoiser, one diffusion step (1×32×32 + timestep), trained on digits; "
                "also measured over a 20-step DDIM sampling loop",
    builder_kwargs={"base": 32, "temb": 64},
    training=DigitsTraining(DigitsImages(size=32, channels=1, value_range=(-1.0, 1.0)), objective="denoiser",
                            steps=400, lr=1e-3),
    # The schedule it was trained with (harness.training: linear β 1e-4 → 0.02 over 1000 steps), sampled in 20.
    sampler=Sampler("ddim", steps=20, train_steps=1000, beta_start=1e-4, beta_end=0.02, image_input="x",
                    time_input="t"),
)
def build(base: int = 32, temb: int = 64) -> nn.Module:
    return seeded(lambda: UNetDenoiser(base, temb), seed=0)
