"""Plugins: Python files named in ``EDGE_HARNESS_PLUGINS`` (separated by ':') are imported once per process, so
they can register runtimes, exporters, compressors or energy probes without editing the harness.

Every process entry point loads them — ``harness`` (cli), the Python API, the pytest plugin, each worker and the
prepare child — after the built-in extensions, never as a side effect of importing one extension package (an
exporter plugin used to reach the prepare child only because something there happened to import the runtimes)."""
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
