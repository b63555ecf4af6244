"""Exporters turn a torch model into a deployable file. One contract, registered in EXPORTERS.

An exporter has ``name``, ``format`` (artifact format), ``suffix`` (file extension),
``validation_runtime`` (the runtime that checks the export), ``tool_versions()`` (part of the artifact id)
and ``export(model, inputs, path)`` (which may return a dict of what it found, e.g. ExecuTorch's delegation). The harness validates every export against PyTorch.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import numpy as np

from harness.registry import EXPORTERS

NOT_INSTALLED = "not installed"


def package_version(name: str) -> str:
    """The installed distribution's version, or ``NOT_INSTALLED``: a missing exporter package then fails its
    exports with a clear ImportError (recorded per artifact) instead of stopping the whole model's preparation,
    and installing it later changes the artifact id, so the export is tried again."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return NOT_INSTALLED


class Exporter(Protocol):
    name: str
    format: str
    suffix: str
    validation_runtime: str

    def tool_versions(self) -> dict[str, str]: ...

    def export(self, model: Any, inputs: Mapping[str, np.ndarray], path: str) -> dict[str, Any] | None:
        """Write the file; may return what the export found (kept in the artifact's ``compression``)."""


def exporter_for_format(fmt: str) -> Exporter:
    """The exporter writing ``fmt``: the one registered under that name (importing it alone), else any whose
    ``format`` it is (a plugin's)."""
    if fmt in EXPORTERS and EXPORTERS.get(fmt).format == fmt:
        return EXPORTERS.get(fmt)
    for name in EXPORTERS.names():
        exporter = EXPORTERS.get(name)
        if exporter.format == fmt:
            return exporter
    return EXPORTERS.get(fmt)  # raises the one-line "unknown exporter" error


BUILTIN = {"onnx": "onnx_export", "tflite": "tflite_export", "executorch": "executorch_export"}
"""The built-in exporters and their modules, named lazily: a lookup imports one module."""

for _name, _module in BUILTIN.items():
    EXPORTERS.register_lazy(_name, f"harness.exporters.{_module}")
