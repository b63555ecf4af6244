"""Convolutional VAE decoder: latent 16 → Linear → 64×7×7 → two ConvTranspose2d → 1×28×28 (sigmoid)."""
from __future__ import annotations

import torch
from torch import nn

from harness.digits import DigitsImages
from harness.training import DigitsTraining
from harness.zoo import register_model
from harness.model_helpers import latent_inputs, seeded


class ConvVAEDecoder(nn.Module):
    def __init__(self, latent_dim: int = 16, width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Linear(latent_dim, width * 7 * 7)
        self.unflatten = nn.Unflatten(1, (width, 7, 7))  # a module, so channel pruning can follow fc → deconv
        self.deconv = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1),  # 14×14
            nn.ReLU(),
            nn.ConvTranspose2d(width // 2, 1, 4, 2, 1),  # 28×28
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.unflatten(self.fc(z)))


@register_model(
    "vae_decoder",
    make_inputs=latent_inputs((16,)),
    seed=0,
    description="Convolutional VAE decoder (latent 16 → 1×28×28), trained on digits",
    builder_kwargs={"latent_dim": 16, "width": 64},
    training=DigitsTraining(DigitsImages(size=28, channels=1, value_range=(0.0, 1.0)), steps=2000),
)
def build(latent_dim: int = 16, width: int = 64) -> nn.Module:
    return seeded(lambda: ConvVAEDecoder(latent_dim, width), seed=0)
