"""ONNX export with ``torch.onnx.export(dynamo=True)``, checked with ``onnx.checker``."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from harness.exporters import package_version
from harness.registry import EXPORTERS

OPSET = 18


@EXPORTERS.register("onnx")
class OnnxExporter:
    name = "onnx"
    format = "onnx"
    suffix = ".onnx"
    validation_runtime = "onnxruntime"

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {p: package_version(p) for p in ("torch", "onnx", "onnxscript")} | {"opset": str(OPSET)}

    @staticmethod
    def export(model: Any, inputs: Mapping[str, np.ndarray], path: str) -> None:
        import onnx
        import torch

        args = tuple(torch.from_numpy(a) for a in inputs.values())
        torch.onnx.export(
            model,
            args,
            path,
            dynamo=True,
            input_names=list(inputs),
            output_names=["output"],
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
        onnx.checker.check_model(path, full_check=True)
