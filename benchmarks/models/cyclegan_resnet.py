"""CycleGAN's ResNet generator (Zhu et al. 2017; Johnson et al. 2016): the 256×256 image-to-image generator people
ship (style transfer, photo enhancement). c7s1-64, d128, d256, nine residual blocks at 256 channels, u128, u64,
c7s1-3 with tanh; reflection padding, InstanceNorm. ``ngf`` 64 and 9 blocks: 11.4 M parameters, ~56.9 GMAC per
256×256 image. Used by ``benchmarks/real_size.py`` with seeded random weights (fidelity is judged against the same
weights' fp32 outputs, so trained weights are not needed)."""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(B, 3, H, W) in [-1, 1] → (B, 3, H, W) in [-1, 1]; H and W multiples of 4."""

    def __init__(self, ngf: int = 64, blocks: int = 9) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf, affine=True),
                                   nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * mult * 2, affine=True),
                       nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2, affine=True), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)
