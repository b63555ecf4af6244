"""Import a user's Python file (a model or a plugin) as a module, with one-line errors naming the file."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from harness.errors import HarnessInputError


def import_python_file(path: Path, module_name: str, what: str) -> ModuleType:
    """Execute ``path`` as module ``module_name``; any failure is a HarnessInputError: '<path>: <what> ...'."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise HarnessInputError(f"{path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except HarnessInputError:
        raise
    except Exception as exc:  # the user's code: report it in one line (--debug shows the traceback)
        sys.modules.pop(module_name, None)
        raise HarnessInputError(f"{path}: {what} failed to import: {type(exc).__name__}: {exc}") from exc
    return module
