"""The seed tutorial's MLP GAN generator: latent 100 → Linear 256 → ReLU → Linear 784 → Tanh, 1×28×28."""
from __future__ import annotations

import torch
from torch import nn

from harness.digits import DigitsImages
from harness.training import DigitsTraining
from harness.zoo import register_model
from harness.model_helpers import latent_inputs, seeded


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, hidden: int = 256, image_size: int = 28) -> None:
        super().__init__()
        self.image_size = image_size
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, image_size * image_size),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, self.image_size, self.image_size)


@register_model(
    "mlp_gan",
    make_inputs=latent_inputs((100,)),
    seed=0,
    description="MLP GAN generator (latent 100 → 256 → 784, 1×28×28), trained on digits",
    builder_kwargs={"latent_dim": 100, "hidden": 256},
    training=DigitsTraining(DigitsImages(size=28, channels=1, value_range=(-1.0, 1.0)), steps=2000),
)
def build(latent_dim: int = 100, hidden: int = 256) -> nn.Module:
    return seeded(lambda: MLPGenerator(latent_dim, hidden), seed=0)
