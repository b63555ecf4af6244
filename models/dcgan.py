"""DCGAN generator: latent 100 → 3×64×64 with ConvTranspose2d + BatchNorm + ReLU (ngf = 64)."""
from __future__ import annotations

import torch
from torch import nn

from harness.zoo import register_model
from harness.model_helpers import latent_inputs, seeded


def _up(cin: int, cout: int, stride: int, padding: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class DCGANGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, ngf: int = 64, channels: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *_up(latent_dim, ngf * 8, 1, 0),  # 4×4
            *_up(ngf * 8, ngf * 4, 2, 1),  # 8×8
            *_up(ngf * 4, ngf * 2, 2, 1),  # 16×16
            *_up(ngf * 2, ngf, 2, 1),  # 32×32
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False),  # 64×64
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Give BatchNorm layers non-trivial running statistics, as a trained generator has."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@register_model(
    "dcgan",
    make_inputs=latent_inputs((100, 1, 1)),
    seed=0,
    description="DCGAN generator (latent 100 → 3×64×64, ngf 64)",
    builder_kwargs={"latent_dim": 100, "ngf": 64},
)
def build(latent_dim: int = 100, ngf: int = 64) -> nn.Module:
    model = seeded(lambda: DCGANGenerator(latent_dim, ngf), seed=0)
    _randomize_batchnorm(model, seed=1)
    return model
