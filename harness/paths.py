"""Where the project's folders are: models/, targets/, suites/, reports/ and the artifact cache."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    """Folder of generator files; override with EDGE_HARNESS_MODELS."""
    return Path(os.environ.get("EDGE_HARNESS_MODELS", PROJECT_ROOT / "models"))


def targets_dir() -> Path:
    """Folder of target-profile TOML files; override with EDGE_HARNESS_TARGETS."""
    return Path(os.environ.get("EDGE_HARNESS_TARGETS", PROJECT_ROOT / "targets"))


def default_suite() -> Path:
    return PROJECT_ROOT / "suites" / "default.toml"


def reports_dir() -> Path:
    return Path(os.environ.get("EDGE_HARNESS_REPORTS", PROJECT_ROOT / "reports"))


def cache_dir() -> Path:
    """Content-addressed artifact cache, outside the checkout by default (survives fresh clones)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-harness"
    return Path(os.environ.get("EDGE_HARNESS_CACHE", default))
