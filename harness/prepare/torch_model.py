"""Rebuild a torch artifact as an ``nn.Module``: build the generator from its model file, replay the
structural part of each compression step (e.g. thinner layers, or a student built afresh), then load the
saved ``state_dict``.

The same code serves the worker (the PyTorch eager runtime) and the prepare step (exporting a cached
compressed variant), so what is exported is exactly what is measured. No module is ever unpickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from harness.types import Artifact


def own_builder(spec: Any, builder_kwargs: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """``build(**overrides)``: a fresh module from the model's own builder, its ``builder_kwargs`` overlaid."""
    base = dict(spec.builder_kwargs if builder_kwargs is None else builder_kwargs)

    def build(**overrides: Any) -> Any:
        return spec.builder(**{**base, **overrides})

    return build


def rebuilt(rebuild: Mapping[str, Any], build: Callable[..., Any]) -> Any:
    """The module a ``{"rebuild": {"builder", "kwargs"}}`` structure names: ``builder(**kwargs)`` when a
    ``package.module:attr`` builder is named, else the model's own ``build(**kwargs)``."""
    kwargs = dict(rebuild.get("kwargs", {}))
    if rebuild.get("builder"):
        from harness.prepare.declared import import_factory

        return import_factory(rebuild["builder"], "student_builder")(**kwargs)
    return build(**kwargs)


def build_skeleton(recipe: Mapping[str, Any]) -> Any:
    """The generator in the shape the recipe's compression steps give it (weights not yet loaded)."""
    from harness.zoo import get_model, load_model_file

    load_model_file(Path(recipe["source"]))
    spec = get_model(recipe["model"])
    model = spec.builder(**recipe["builder_kwargs"])
    for step in recipe.get("compress", ()):
        structure = step.get("structure")
        if structure and "rebuild" in structure:
            model = rebuilt(structure["rebuild"], own_builder(spec, recipe["builder_kwargs"]))
        elif structure:
            from harness.compress import compressor

            model = compressor(step["method"]).restructure(model, structure)
    return model


def load_torch_artifact(artifact: Artifact) -> Any:
    """The module a torch artifact describes, weights loaded, in eval mode."""
    import torch

    model = build_skeleton(artifact.recipe)
    model.load_state_dict(torch.load(artifact.path, weights_only=True, map_location="cpu"))
    return model.eval()
