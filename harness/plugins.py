"""Plugins: Python files named in ``EDGE_HARNESS_PLUGINS`` (separated by ':') are imported once, in the
harness and in every worker, so they can register runtimes or exporters without editing the harness."""
from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessInputError
from harness.pyfile import import_python_file

_loaded: set[str] = set()


def load_plugins() -> None:
    for entry in filter(None, os.environ.get("EDGE_HARNESS_PLUGINS", "").split(os.pathsep)):
        path = Path(entry).resolve()
        if str(path) in _loaded:
            continue
        _loaded.add(str(path))
        if not path.is_file():
            raise HarnessInputError(f"EDGE_HARNESS_PLUGINS: {path} is not a file")
        import_python_file(path, f"edge_harness_plugin_{path.stem}", "plugin")
