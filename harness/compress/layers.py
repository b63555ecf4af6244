"""Which layers compressors act on, and counts of what they hold."""
from __future__ import annotations

from typing import Any

from torch import nn

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                 nn.Linear)
"""Layers whose ``weight`` carries the model's multiply-accumulates: what pruning and quantization target."""


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_sparsity(model: nn.Module) -> dict[str, Any]:
    """Zeros among the weights of conv / conv-transpose / linear layers, and among all parameters."""
    total = zeros = 0
    for _, layer in weight_layers(model):
        total += layer.weight.numel()
        zeros += int((layer.weight == 0).sum())
    all_params = parameter_count(model)
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return {"weights": total, "weights_zero": zeros, "sparsity": zeros / total if total else 0.0,
            "parameters": all_params, "parameter_sparsity": all_zeros / all_params if all_params else 0.0}
