"""The user's project: ``edge-harness.toml``, or ``[tool.edge-harness]`` in ``pyproject.toml``, found from the
current folder upwards. It adds the project's own models, targets and suites to the built-in ones (a project
entry overrides a built-in of the same name) and declares generators by import path (``harness.prepare.declared``).

Keys (paths are relative to the file's folder)::

    models_dir = "bench/models"        # model files (register_model), beside the declared [models.*]
    targets_dir = "bench/targets"      # target profiles
    suites_dir = "bench/suites"        # suites, found by name: harness run --suite NAME
    default_suite = "ci"               # what `harness run` runs without --suite (a name or a path)
    reports_dir = "reports"            # run folders (default: <project>/reports)
    python_path = ["src"]              # folders to import the project's packages from (default: the project
                                       # folder, and src/ when it exists)
    [models.NAME]                      # a generator declared by import path (see harness.prepare.declared)
    [optimize]                         # harness optimize's budget and search (see harness.config.optimize)
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessInputError
from harness.config.cluster import cluster_from_table
from harness.config.tomlconfig import check_keys, check_list_of, read_toml

CONFIG_FILE = "edge-harness.toml"
_SCHEMA = {"models_dir": str, "targets_dir": str, "suites_dir": str, "default_suite": str, "reports_dir": str,
           "cache_dir": str, "python_path": list, "models": dict,
           "cluster": dict, "optimize": dict}


@dataclass(frozen=True)
class Project:
    """A project config file and what it names (absolute paths; None where not given)."""

    source: Path
    root: Path
    models_dir: Path | None = None
    targets_dir: Path | None = None
    suites_dir: Path | None = None
    default_suite: str = ""
    reports_dir: Path | None = None
    cache_dir: Path | None = None
    python_path: tuple[Path, ...] = ()
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """[models.NAME] tables, checked by ``harness.prepare.declared`` when the models are loaded."""
    optimize: Mapping[str, Any] = field(default_factory=dict)
    """[optimize]: ``harness optimize``'s budget and search (``harness.config.optimize``), under the command line's."""
    cluster: Any = None
    """[cluster]: the Ray cluster suites run on by default (``harness.config.cluster``); None = this machine."""


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``edge-harness.toml``, or ``pyproject.toml`` with a ``[tool.edge-harness]`` table, from
    ``start`` (default: the current folder) upwards; ``EDGE_HARNESS_PROJECT`` (a file) takes precedence."""
    forced = os.environ.get("EDGE_HARNESS_PROJECT")
    if forced:
        path = Path(forced).expanduser().resolve()
        if not path.is_file():
            raise HarnessInputError(f"EDGE_HARNESS_PROJECT={forced}: file not found")
        return path
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        config = candidate / CONFIG_FILE
        if config.is_file():
            return config
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and b"[tool.edge-harness" in pyproject.read_bytes():
            return pyproject
    return None


def load_project(path: Path) -> Project:
    """Read and check a project config (one-line errors naming the file)."""
    data = read_toml(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("edge-harness")
        if not isinstance(data, dict):
            raise HarnessInputError(f"{path}: [tool.edge-harness] must be a table")
    check_keys(path, data, _SCHEMA)
    root = path.parent.resolve()

    def folder(key: str) -> Path | None:
        if key not in data:
            return None
        target = (root / data[key]).resolve()
        if not target.is_dir():
            raise HarnessInputError(f"{path}: {key} = {data[key]!r}: folder not found ({target})")
        return target

    python_path = data.get("python_path")
    if python_path is None:
        paths = (root, root / "src") if (root / "src").is_dir() else (root,)
    else:
        check_list_of(path, "python_path", python_path, str)
        paths = tuple((root / p).resolve() for p in python_path)
    models = data.get("models", {})
    for name, table in models.items():
        if not isinstance(table, dict):
            raise HarnessInputError(f"{path}: models.{name} must be a table ([models.{name}])")
    return Project(
        source=path.resolve(), root=root, models_dir=folder("models_dir"), targets_dir=folder("targets_dir"),
        suites_dir=folder("suites_dir"), default_suite=data.get("default_suite", ""),
        reports_dir=(root / data["reports_dir"]).resolve() if "reports_dir" in data else None,
        cache_dir=(root / Path(data["cache_dir"]).expanduser()).resolve() if "cache_dir" in data else None,
        python_path=tuple(paths), models=models,
        cluster=cluster_from_table(path, data["cluster"]) if "cluster" in data else None,
        optimize=_optimize_table(path, data.get("optimize", {})),
    )


def _optimize_table(path: Path, table: Mapping[str, Any]) -> Mapping[str, Any]:
    """[optimize], its keys and types checked now (a bad key is an error before any search starts)."""
    from harness.config.optimize import check_optimize_table

    check_optimize_table(path, table)
    return table


_CACHE: dict[Path | None, Project | None] = {}


def current_project() -> Project | None:
    """The project of the current folder (read once per config file), or None outside a project."""
    config = find_config()
    if config not in _CACHE:
        _CACHE[config] = load_project(config) if config else None
    return _CACHE[config]


def add_import_paths(project: Project) -> None:
    """Make the project's packages importable in this process (model factories, plugins)."""
    for folder in reversed(project.python_path):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
