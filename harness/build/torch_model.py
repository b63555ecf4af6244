"""Rebuild a torch artifact as an ``nn.Module``: build the generator from its model file, replay the
structural part of each compression step (e.g. thinner layers), then load the saved ``state_dict``.

The same code serves the worker (the PyTorch eager runtime) and the prepare step (exporting a cached
compressed variant), so what is exported is exactly what is measured. No module is ever unpickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from harness.types import Artifact


def build_skeleton(recipe: Mapping[str, Any]) -> Any:
    """The generator in the shape the recipe's compression steps give it (weights not yet loaded)."""
    from harness.zoo import get_model, load_model_file

    load_model_file(Path(recipe["source"]))
    spec = get_model(recipe["model"])
    model = spec.builder(**recipe["builder_kwargs"])
    for step in recipe.get("compress", ()):
        if step.get("structure"):
            from harness.compress import compressor

            model = compressor(step["method"]).restructure(model, step["structure"])
    return model


def load_torch_artifact(artifact: Artifact) -> Any:
    """The module a torch artifact describes, weights loaded, in eval mode."""
    import torch

    model = build_skeleton(artifact.recipe)
    model.load_state_dict(torch.load(artifact.path, weights_only=True, map_location="cpu"))
    return model.eval()
