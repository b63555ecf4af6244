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
        try:
            litert_torch.convert(model, args).export(path)
        except Exception as exc:
            raise conversion_error(exc, model) from None


def conversion_error(exc: Exception, model: Any) -> Exception:
    """litert-torch's converter error as one line a user can act on: a convolution it cannot legalize (its MLIR
    dump is many lines) names the transposed convolutions that use ``output_padding``, the pattern seen failing
    (CycleGAN's ``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)``); anything else passes through."""
    from torch import nn

    text = str(exc)
    if "failed to legalize operation 'mhlo.convolution'" not in text:
        return exc
    suspects = [f"{name} ({type(m).__name__}, kernel {tuple(m.kernel_size)}, stride {tuple(m.stride)}, padding "
                f"{tuple(m.padding)}, output_padding {tuple(m.output_padding)})"
                for name, m in model.named_modules()
                if isinstance(m, nn.modules.conv._ConvTransposeNd) and any(m.output_padding)]
    where = "; the transposed convolutions with output_padding: " + ", ".join(suspects[:4]) if suspects else ""
    return ValueError("litert-torch cannot convert a convolution of this model (failed to legalize "
                      f"'mhlo.convolution'){where}: measure it in ONNX or ExecuTorch, or upsample with "
                      "kernel 4, stride 2, padding 1 (no output_padding) or nn.Upsample + Conv2d")
