"""Eager-mode PyTorch post-training static int8 quantization (``torch.ao.quantization``, fbgemm on x86): the
seed tutorial's recipe. The generator is wrapped between a QuantStub and a DeQuantStub, observers are placed
(per-channel weights for Conv/Linear, per-tensor for ConvTranspose, which fbgemm requires), calibrated on
latents the evaluation never sees, and converted to quantized modules.

The result runs in PyTorch only (no exporter takes eager-quantized modules), so the variant is measured as a
torch artifact. The worker rebuilds it by replaying wrap → prepare → convert on a fresh generator and loading
the saved scales, zero points and packed weights. An op without a quantized kernel — an add or concat of
quantized tensors (skip connections), GroupNorm, SiLU — fails the variant with PyTorch's own message.
"""
from __future__ import annotations

import copy
import warnings
from importlib.metadata import version
from typing import Any, Mapping

import torch
from torch import nn

from harness.compress import check_choice, phase
from harness.compress.layers import parameter_count
from harness.registry import COMPRESSORS

ENGINES = ("fbgemm", "x86", "qnnpack", "onednn")
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _set_engine(engine: str) -> None:
    supported = torch.backends.quantized.supported_engines
    if engine not in supported:
        raise ValueError(f"quantized engine {engine!r} is not available here (this PyTorch has: "
                         f"{', '.join(e for e in supported if e != 'none')})")
    torch.backends.quantized.engine = engine


def _prepared(model: nn.Module, engine: str) -> nn.Module:
    """The model wrapped in Quant/DeQuant stubs with observers in place (eval mode)."""
    import torch.ao.quantization as tq

    _set_engine(engine)
    wrapped = nn.Sequential(tq.QuantStub(), copy.deepcopy(model), tq.DeQuantStub()).eval()
    qconfig = tq.get_default_qconfig(engine)
    wrapped.qconfig = qconfig
    per_tensor = tq.QConfig(activation=qconfig.activation, weight=tq.default_weight_observer)
    for module in wrapped.modules():
        if isinstance(module, _TRANSPOSED):
            module.qconfig = per_tensor
    with warnings.catch_warnings():  # eager mode's deprecation notice (it points to torchao)
        warnings.simplefilter("ignore")
        return tq.prepare(wrapped)


def _converted(prepared: nn.Module) -> nn.Module:
    import torch.ao.quantization as tq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.convert(prepared).eval()


@COMPRESSORS.register("torch-int8")
class EagerStaticInt8:
    """Eager PyTorch static int8 (fbgemm), calibrated on ``calibration_batches`` batches of 16 latents."""

    name = "torch-int8"
    stage = "torch"
    formats = ("torch",)
    description = ("DEPRECATED upstream (eager torch.ao.quantization; PT2E replaces it: pt2e-int8) — the seed "
                   "tutorial's static int8 (fbgemm), calibrated; PyTorch-only")
    params: Mapping[str, Any] = {"engine": "fbgemm", "calibration_batches": 8}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {"torch": version("torch")}

    def check(self, params: Mapping[str, Any]) -> None:
        check_choice(params, "engine", ENGINES)
        if params["calibration_batches"] < 1:
            raise ValueError("calibration_batches must be at least 1")

    def compress(self, model: nn.Module, params: Mapping[str, Any], latents: Any) -> tuple[nn.Module, dict]:
        if latents is None:
            raise ValueError("calibration needs latents (none were given)")
        with phase("placing observers (torch.ao.quantization.prepare)"):
            prepared = _prepared(model, params["engine"])
        with torch.no_grad():
            with phase(f"calibrating the observers on {int(params['calibration_batches'])} batches of 16 latents"):
                for i in range(int(params["calibration_batches"])):
                    prepared(*(torch.from_numpy(a) for a in latents.batch(16, i).values()))
            with phase("converting to quantized modules (torch.ao.quantization.convert)"):
                quantized = _converted(prepared)
            example = [torch.from_numpy(a) for a in latents.batch(2, 10_000).values()]
            with phase("running the int8 model once"):
                quantized(*example)  # an op without a quantized kernel fails here, with PyTorch's message
        from torch.ao.nn.quantized import DeQuantize, Quantize

        quantized_layers = sorted(name for name, m in quantized.named_modules()
                                  if type(m).__module__.startswith("torch.ao.nn.quantized") and hasattr(m, "scale")
                                  and not isinstance(m, (Quantize, DeQuantize)))
        return quantized, {"structure": {"engine": params["engine"]}, "quantized_layers": quantized_layers,
                           "parameters_before": parameter_count(model), "parameters": parameter_count(model),
                           "quantized_engine": params["engine"]}

    @staticmethod
    def restructure(model: nn.Module, structure: Mapping[str, Any]) -> nn.Module:
        return _converted(_prepared(model, structure["engine"]))
