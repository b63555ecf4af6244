"""Unstructured pruning with ``torch.nn.utils.prune``: L1-magnitude and random, made permanent.

Zeroed weights stay in dense tensors, so dense kernels run exactly as fast as before: these variants buy
a smaller *compressed* file (gzip size is reported for every artifact) and nothing else on CPU runtimes.
"""
from __future__ import annotations

import copy
from importlib.metadata import version
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from harness.compress import check_choice, check_fraction
from harness.compress.layers import weight_layers, weight_sparsity
from harness.registry import COMPRESSORS


class _Unstructured:
    stage = "torch"
    params: Mapping[str, Any] = {"amount": 0.5, "scope": "layer", "seed": 0}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {"torch": version("torch")}

    def check(self, params: Mapping[str, Any]) -> None:
        check_fraction(params)
        check_choice(params, "scope", ("layer", "global"))

    global_method: Any = None
    """The torch.nn.utils.prune method class used over all layers at once (scope = global)."""
    layer_function: Any = None
    """The torch.nn.utils.prune function used layer by layer (scope = layer)."""

    def _prune(self, targets: list[tuple[nn.Module, str]], params: Mapping[str, Any]) -> None:
        if params["scope"] == "global":
            prune.global_unstructured(targets, pruning_method=self.global_method, amount=params["amount"])
        else:
            for layer, name in targets:
                self.layer_function(layer, name, amount=params["amount"])

    def compress(self, model: nn.Module, params: Mapping[str, Any], latents: Any) -> tuple[nn.Module, dict]:
        pruned = copy.deepcopy(model)
        targets = [(layer, "weight") for _, layer in weight_layers(pruned)]
        if not targets:
            raise ValueError("the model has no conv, conv-transpose or linear layer to prune")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(params["seed"]))
            self._prune(targets, params)
        for layer, name in targets:
            prune.remove(layer, name)  # make it permanent: a plain dense weight with zeros in it
        return pruned.eval(), {"layers_pruned": len(targets), **weight_sparsity(pruned)}


@COMPRESSORS.register("prune-l1")
class L1Unstructured(_Unstructured):
    """Zero the smallest-|w| fraction ``amount`` of weights, per layer or over all layers (``scope``)."""

    name = "prune-l1"
    description = "unstructured L1-magnitude pruning (torch.nn.utils.prune), dense storage"
    global_method = prune.L1Unstructured
    layer_function = staticmethod(prune.l1_unstructured)


@COMPRESSORS.register("prune-random")
class RandomUnstructured(_Unstructured):
    """Zero a random fraction ``amount`` of each layer's weights (seeded): the baseline pruning must beat."""

    name = "prune-random"
    description = "unstructured random pruning (torch.nn.utils.prune), dense storage"
    global_method = prune.RandomUnstructured
    layer_function = staticmethod(prune.random_unstructured)
