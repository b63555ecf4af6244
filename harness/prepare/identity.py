"""The identity of a model's code: what an artifact id must change with when the user edits their model.

A model's artifacts (exports, compressions, fp32 references, trained weights and cached *failures*) are keyed by
``code_digest(spec, model)``: a sha256 over

- the file that defines the spec (the model file, or the project config that declares the model);
- the source of every module outside the Python installation that the model runs: the module defining the
  builder or declared factory, the module of every class in the built model's module tree (with their base
  classes), and, followed transitively through each such module's globals, every module it imports or imports a
  function or class from (``from mypkg.blocks import act``, ``import mypkg.blocks as b``);
- for classes the model uses from installed packages (diffusers, timm, ...), the package's name and version.

Why source files and not a digest of the exported program: the id is needed *before* anything is built (to find a
cached artifact, or a cached failure, without building it again), exports can fail (a failure must be keyed too),
and a program digest would change with every tool upgrade for reasons the tool versions already cover. Source is
conservative: an edited comment rebuilds, an edited ``forward`` always does.

The harness's own package is followed only into its model-file API (``harness.model_helpers``, ``digits``,
``training``, ``sampling``) and into the modules that define a class the model contains: the rest of the harness is
the tool, not the model. Modules are named by their import name, not their path, so the same project checked out in
another folder keeps its ids (and a CI cache restored elsewhere still hits).

Not seen: a module imported only inside a function body (``def forward(...): import x``) that defines no class in
the model; code loaded by ``exec`` or from a string.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import site
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

MODEL_FILE_API = frozenset({"harness.model_helpers", "harness.digits", "harness.training", "harness.diffusion"})
"""The harness modules a model file builds on: their source is part of a model's identity when it uses them."""

def code_digest(spec: Any, model: Any = None) -> str:
    """sha256 (hex) of the code ``spec``'s model runs, ``model`` being one built by its builder (its module tree is
    walked; None: only the spec's file and its builder's module and imports)."""
    digest = hashlib.sha256()
    if spec.source and Path(spec.source).is_file():
        digest.update(b"spec-file\0" + _hash_file(spec.source).encode() + b"\0")
    files, packages = model_code(spec, model)
    for name, path in files:
        digest.update(f"module\0{name}\0{_hash_file(path)}\0".encode())
    for package, package_version in packages:
        digest.update(f"package\0{package}\0{package_version}\0".encode())
    return digest.hexdigest()


def model_code(spec: Any, model: Any = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The modules whose source is part of the model's identity, as sorted (import name, file path), and the
    installed packages that define classes in the model, as sorted (distribution name, version)."""
    seeds: list[ModuleType] = []
    installed_seeds: list[ModuleType] = []
    for obj in _builder_objects(spec):
        module = sys.modules.get(getattr(obj, "__module__", "") or "")
        if module is not None:
            seeds.append(module)
    harness_leaves: set[str] = set()
    if model is not None:
        for cls in _model_classes(model):
            module = sys.modules.get(cls.__module__)
            if module is None:
                continue
            if _installed(module):
                installed_seeds.append(module)
            else:
                seeds.append(module)
                if _is_harness(module.__name__):
                    harness_leaves.add(module.__name__)
    found: dict[str, str] = {}
    stack = list(seeds)
    while stack:
        module = stack.pop()
        name = module.__name__
        path = _source_file(module)
        if name in found or path is None or _installed(module):
            continue
        if _is_harness(name) and name not in MODEL_FILE_API and name not in harness_leaves:
            continue
        found[name] = path
        if _is_harness(name):
            continue  # the model-file API is a leaf: the rest of the harness is the tool
        stack.extend(_referenced_modules(module))
    return sorted(found.items()), sorted({_distribution(m) for m in installed_seeds} - {None})  # type: ignore


def _builder_objects(spec: Any) -> list[Any]:
    """The builder, and a declared model's factory (``builder.factory``, set by ``harness.prepare.declared``)."""
    objects = [spec.builder]
    factory = getattr(spec.builder, "factory", None)
    if callable(factory):
        objects.append(factory())
    return objects


def _model_classes(model: Any) -> set[type]:
    classes: set[type] = set()
    modules = model.modules() if hasattr(model, "modules") else [model]
    for m in modules:
        for cls in type(m).__mro__:
            if cls is not object:
                classes.add(cls)
    return classes


def _referenced_modules(module: ModuleType) -> Iterable[ModuleType]:
    """Modules a module imports, or imports a function or class from."""
    for value in list(vars(module).values()):
        if isinstance(value, ModuleType):
            yield value
            continue
        owner = getattr(value, "__module__", None) if (inspect.isclass(value) or inspect.isfunction(value)) else None
        if isinstance(owner, str) and owner in sys.modules:
            yield sys.modules[owner]


def _source_file(module: ModuleType) -> str | None:
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py") or not os.path.isfile(path):
        return None
    return os.path.realpath(path)


def _is_harness(name: str) -> bool:
    return name == "harness" or name.startswith("harness.")


@lru_cache(maxsize=1)
def _installation_roots() -> tuple[str, ...]:
    """Folders of the Python installation: the standard library and every site-packages folder."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = sysconfig.get_paths().get(key)
        if value:
            roots.add(value)
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv without site's helpers
        pass
    return tuple(sorted({os.path.realpath(r) + os.sep for r in roots if r}))


def _installed(module: ModuleType) -> bool:
    """A module of the Python installation (standard library, site-packages) or one with no source file."""
    path = getattr(module, "__file__", None)
    if not path:
        return True
    real = os.path.realpath(path)
    return any(real.startswith(root) for root in _installation_roots())


def _distribution(module: ModuleType) -> tuple[str, str] | None:
    """(distribution, version) of the installed package a module belongs to; None for the standard library."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = module.__name__.split(".")[0]
    for dist in _packages_distributions(packages_distributions).get(top, []):
        try:
            return dist, version(dist)
        except PackageNotFoundError:
            continue
    return None


_DISTRIBUTIONS: dict[str, list[str]] = {}


def _packages_distributions(read: Any) -> dict[str, list[str]]:
    if not _DISTRIBUTIONS:
        _DISTRIBUTIONS.update(read())
    return _DISTRIBUTIONS


def _hash_file(path: str) -> str:
    """sha256 of the file as it is now (never cached: an edit within the same second must count)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
