"""Plugins: Python files named in ``EDGE_HARNESS_PLUGINS`` (separated by ':') are imported once, in the
harness and in every worker, so they can register runtimes or exporters without editing the harness."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from harness.errors import HarnessInputError

_loaded: set[str] = set()


def load_plugins() -> None:
    for entry in filter(None, os.environ.get("EDGE_HARNESS_PLUGINS", "").split(os.pathsep)):
        path = Path(entry).resolve()
        if str(path) in _loaded:
            continue
        _loaded.add(str(path))
        if not path.is_file():
            raise HarnessInputError(f"EDGE_HARNESS_PLUGINS: {path} is not a file")
        name = f"edge_harness_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise HarnessInputError(f"EDGE_HARNESS_PLUGINS: {path} is not an importable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except HarnessInputError:
            raise
        except Exception as exc:
            raise HarnessInputError(f"{path}: plugin failed to import: {type(exc).__name__}: {exc}") from exc
