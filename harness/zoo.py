"""The generator zoo: model files in models/ register ModelSpecs; the harness discovers them.

A user adds a generator by dropping ``models/<name>.py`` that calls ``register_model(...)``;
no other file needs an edit.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessInputError
from harness.pyfile import import_python_file
from harness.registry import MODELS
from harness.types import ModelSpec

_loaded_files: dict[Path, str] = {}
"""Model files imported so far → sha256 of the content imported (an edited file is imported again)."""


def register_model(
    name: str,
    *,
    make_inputs: Callable[[int, int], dict[str, Any]],
    seed: int = 0,
    description: str = "",
    kind: str = "generator",
    builder_kwargs: dict[str, Any] | None = None,
    training: Any = None,
    sampler: Any = None,
    output: str | int | None = None,
    method: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a builder function ``builder(**builder_kwargs) -> nn.Module``. ``training``: a
    ``harness.training.DigitsTraining`` to train the generator briefly on digits (weights cached). ``sampler``: a
    ``harness.diffusion.Sampler`` for a denoiser, whose jobs then also measure the whole sampling loop. ``output`` /
    ``method``: for a model that returns a ``ModelOutput``, dict or tuple, which of its tensors is the image (a name
    or an index; None: the only tensor), and the method to benchmark instead of ``forward``
    (``harness.prepare.outputs``)."""

    def add(builder: Callable[..., Any]) -> Callable[..., Any]:
        source = sys.modules[builder.__module__].__file__ or ""
        spec = ModelSpec(
            name=name,
            builder=_selecting(builder, output, method) if output is not None or method else builder,
            make_inputs=make_inputs,
            seed=seed,
            description=description,
            kind=kind,
            builder_kwargs=dict(builder_kwargs or {}),
            source=str(Path(source).resolve()) if source else "",
            training=training,
            sampler=sampler,
        )
        if name in MODELS and MODELS.get(name).source != spec.source and not is_builtin(MODELS.get(name).source):
            raise HarnessInputError(f"{spec.source}: model {name!r} is already defined in {MODELS.get(name).source}")
        MODELS.register(name, replace=True)(spec)  # same file imported again after an edit
        return builder

    return add


def _selecting(builder: Callable[..., Any], output: str | int | None, method: str) -> Callable[..., Any]:
    """The builder, its model's ``forward`` returning the one tensor ``output`` names, from ``method``."""
    import functools

    @functools.wraps(builder)  # keeps the builder's module: its code is the model's identity
    def build(**kwargs: Any) -> Any:
        from harness.prepare.outputs import with_output

        return with_output(builder(**kwargs), output, method or "forward")

    return build


def is_builtin(source: str) -> bool:
    """A model from the shipped zoo (a project's model of the same name overrides it)."""
    from harness.config.paths import is_builtin_model

    return is_builtin_model(source)


def load_model_file(path: Path) -> list[str]:
    """Import one model file (``*.py``), or a project config's declared models (``*.toml``); return the names it
    registered. A file that registers none is an error."""
    path = path.resolve()
    if path.suffix == ".toml":
        return _load_project_models(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read model file: {exc.strerror}") from None
    if _loaded_files.get(path) == digest:
        return [n for n in MODELS.names() if MODELS.get(n).source == str(path)]
    import_python_file(path, f"edge_harness_models.{path.stem}", "model file")
    _loaded_files[path] = digest
    added = sorted(n for n in MODELS.names() if MODELS.get(n).source == str(path))
    if not added:
        raise HarnessInputError(f"{path}: defines no generator (decorate a builder with register_model)")
    return added


def _load_project_models(path: Path) -> list[str]:
    from harness.prepare.declared import register_declared
    from harness.config.project import add_import_paths, load_project

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if _loaded_files.get(path) == digest:
        return [n for n in MODELS.names() if MODELS.get(n).source == str(path)]
    project = load_project(path)
    add_import_paths(project)
    names = register_declared(path, project.models)
    _loaded_files[path] = digest
    return names


def discover(models_dir: Path | list[Path], project_config: Path | None = None) -> list[str]:
    """Import every ``*.py`` of the folders, in order (files starting with '_' are helpers, not models), then a
    project config's declared models; a later source overrides a built-in model of the same name."""
    names: list[str] = []
    for folder in (models_dir if isinstance(models_dir, list) else [models_dir]):
        if not folder.is_dir():
            raise HarnessInputError(f"models folder not found: {folder}")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            names.extend(load_model_file(path))
    if project_config is not None:
        names.extend(load_model_file(project_config))
    return list(dict.fromkeys(names))


def discover_all() -> list[str]:
    """Every model this folder's harness sees: the built-in zoo, the project's model files and declared models."""
    from harness.config.paths import models_dirs
    from harness.config.project import current_project

    project = current_project()
    if project is not None:
        from harness.config.project import add_import_paths

        add_import_paths(project)  # a project model file may import the project's package
    return discover(models_dirs(), project.source if project and project.models else None)


def get_model(name: str) -> ModelSpec:
    return MODELS.get(name)

