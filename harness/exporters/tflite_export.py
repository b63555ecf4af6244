"""TFLite / LiteRT export with ``litert_torch.convert``."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from harness.exporters import package_version
from harness.registry import EXPORTERS


@EXPORTERS.register("tflite")
class TFLiteExporter:
    name = "tflite"
    format = "tflite"
    suffix = ".tflite"
    validation_runtime = "litert"

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {p: package_version(p) for p in ("torch", "litert-torch", "ai-edge-litert")}

    @staticmethod
    def export(model: Any, inputs: Mapping[str, np.ndarray], path: str) -> None:
        import litert_torch
        import torch

        args = tuple(torch.from_numpy(a) for a in inputs.values())
        litert_torch.convert(model, args).export(path)
