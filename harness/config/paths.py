"""Where models, targets, suites, reports and the artifact cache are.

Built-ins ship with the package (``harness/_builtin/{models,targets,suites}`` in a wheel; the checkout's
top-level folders when run from a checkout). A user's project (``harness.config.project``: ``edge-harness.toml`` or
``[tool.edge-harness]``, found from the current folder upwards) adds its own folders on top; an entry of the
project overrides a built-in of the same name. ``EDGE_HARNESS_MODELS`` / ``EDGE_HARNESS_TARGETS`` replace the
built-in folder, ``EDGE_HARNESS_REPORTS`` / ``EDGE_HARNESS_CACHE`` the reports folder and the cache.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
"""The ``harness`` package folder."""
PROJECT_ROOT = PACKAGE_DIR.parent
"""The checkout (from a checkout), or the site-packages folder holding the package (installed)."""


def is_checkout() -> bool:
    """Running from a source checkout (its top-level folders are the built-ins) rather than an installed wheel."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "targets").is_dir()


def builtin_dir(kind: str) -> Path:
    """The shipped ``models``, ``targets`` or ``suites`` folder."""
    packaged = PACKAGE_DIR / "_builtin" / kind
    return packaged if packaged.is_dir() else PROJECT_ROOT / kind


def _project():
    from harness.config.project import current_project

    return current_project()


def is_builtin_model(source: str) -> bool:
    """Whether a model file is one of the shipped zoo (a project's model of the same name overrides it)."""
    return bool(source) and Path(source).parent == builtin_dir("models").resolve()


def models_dir() -> Path:
    """The built-in generator folder; EDGE_HARNESS_MODELS replaces it."""
    return Path(os.environ.get("EDGE_HARNESS_MODELS", builtin_dir("models")))


def models_dirs() -> list[Path]:
    """Folders of model files, later ones overriding earlier ones by model name."""
    project = _project()
    return [models_dir()] + ([project.models_dir] if project and project.models_dir else [])


def targets_dir() -> Path:
    """The built-in target-profile folder; EDGE_HARNESS_TARGETS replaces it."""
    return Path(os.environ.get("EDGE_HARNESS_TARGETS", builtin_dir("targets")))


def targets_dirs() -> list[Path]:
    """Folders of target profiles, later ones overriding earlier ones by name."""
    project = _project()
    return [targets_dir()] + ([project.targets_dir] if project and project.targets_dir else [])


def suites_dirs() -> list[Path]:
    project = _project()
    return [builtin_dir("suites")] + ([project.suites_dir] if project and project.suites_dir else [])


def find_suite(name_or_path: str | Path | None) -> Path:
    """A suite file: a path as given, else a name looked up in the project's suites, then the built-ins; None =
    the project's ``default_suite``, else the built-in default."""
    from harness.errors import HarnessInputError

    if name_or_path is None:
        project = _project()
        if project and project.default_suite:
            return find_suite(project.default_suite) if not (project.root / project.default_suite).is_file() \
                else project.root / project.default_suite
        return builtin_dir("suites") / "default.toml"
    path = Path(name_or_path)
    if path.suffix == ".toml" or os.sep in str(name_or_path) or path.is_file():
        return path
    for folder in reversed(suites_dirs()):
        if (folder / f"{name_or_path}.toml").is_file():
            return folder / f"{name_or_path}.toml"
    known = sorted({p.stem for folder in suites_dirs() for p in folder.glob("*.toml")})
    raise HarnessInputError(f"no suite {str(name_or_path)!r} (known: {', '.join(known)}; or give a .toml path)")


def default_suite() -> Path:
    return find_suite(None)


def reports_dir() -> Path:
    """Run folders: EDGE_HARNESS_REPORTS, else the project's reports_dir (default <project>/reports), else the
    checkout's reports/, else ./reports."""
    if "EDGE_HARNESS_REPORTS" in os.environ:
        return Path(os.environ["EDGE_HARNESS_REPORTS"])
    project = _project()
    if project:
        return project.reports_dir or project.root / "reports"
    return PROJECT_ROOT / "reports" if is_checkout() else Path.cwd() / "reports"


def cache_dir() -> Path:
    """Content-addressed artifact cache, outside the checkout by default (survives fresh clones)."""
    if "EDGE_HARNESS_CACHE" in os.environ:
        return Path(os.environ["EDGE_HARNESS_CACHE"])
    project = _project()
    if project and project.cache_dir:
        return project.cache_dir
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-harness"
