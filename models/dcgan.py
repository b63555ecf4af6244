"""DCGAN generator: latent 100 → 3×64×64 with ConvTranspose2d + BatchNorm + ReLU (ngf = 64).

Trained briefly on scikit-learn digits (upsampled to 64×64, gray in 3 channels) as the decoder of a VAE:
stable in a couple of minutes on a laptop CPU, where adversarial training is not."""
from __future__ import annotations

import torch
from torch import nn

from harness.digits import DigitsImages
from harness.training import DigitsTraining
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


@register_model(
    "dcgan",
    make_inputs=latent_inputs((100, 1, 1)),
    seed=0,
    description="DCGAN generator (latent 100 → 3×64×64, ngf 64), trained on digits as a VAE decoder",
    builder_kwargs={"latent_dim": 100, "ngf": 64},
    training=DigitsTraining(DigitsImages(size=64, channels=3, value_range=(-1.0, 1.0)), steps=600),
)
def build(latent_dim: int = 100, ngf: int = 64) -> nn.Module:
    return seeded(lambda: DCGANGenerator(latent_dim, ngf), seed=0)
