"""Output fidelity of a (compressed) generator against the fp32 PyTorch reference, on the same latents, and
the figures a compression step recorded. Pure functions."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from harness.types import Artifact, Measurement


def data_range(reference: np.ndarray) -> tuple[float, str]:
    """The range PSNR is taken over: 1 for outputs in [0, 1] (sigmoid), 2 for outputs in [-1, 1] (tanh) —
    scikit-image's convention for float images — else the reference's own max − min."""
    lo, hi = float(np.min(reference)), float(np.max(reference))
    if lo >= 0.0 and hi <= 1.0:
        return 1.0, "range [0,1]"
    if lo >= -1.0 and hi <= 1.0:
        return 2.0, "range [-1,1]"
    return hi - lo, "range of the reference"


def psnr(output: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (inf when the outputs are identical)."""
    mse = float(np.mean((np.asarray(output, np.float64) - np.asarray(reference, np.float64)) ** 2))
    peak, _ = data_range(reference)
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def output_fidelity(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> list[Measurement] | None:
    """max-abs error and PSNR of all outputs together vs the reference; None when counts or shapes differ.
    PSNR is left out for identical outputs (max-abs error 0 says it)."""
    if len(outputs) != len(reference) or any(np.shape(o) != np.shape(r) for o, r in zip(outputs, reference)):
        return None
    out = np.concatenate([np.ravel(o) for o in outputs]).astype(np.float64)
    ref = np.concatenate([np.ravel(r) for r in reference]).astype(np.float64)
    measurements = [Measurement("max_abs_error", float(np.max(np.abs(out - ref))) if out.size else 0.0, "abs",
                                "vs-torch-fp32")]
    value = psnr(out, ref)
    if math.isfinite(value):
        measurements.append(Measurement("psnr", value, "dB", "vs-torch-fp32", note=data_range(ref)[1]))
    return measurements


_COMPRESSION_FIGURES = {
    "sparsity": ("weight_sparsity", "fraction", "zeros/weights"),
    "parameters": ("parameters", "count", "torch-parameters"),
}
_COVERAGE_FIGURES = ("ops_int8_fraction", "ops_fp16_fraction", "weights_int8_fraction", "weights_fp16_fraction")


def compression_measurements(artifact: Artifact) -> list[Measurement]:
    """What the compression behind ``artifact`` changed, as measurements (sparsity, parameters, coverage)."""
    info: dict[str, Any] = dict(artifact.compression)
    out = [Measurement(metric, float(info[key]), unit, method)
           for key, (metric, unit, method) in _COMPRESSION_FIGURES.items() if key in info]
    coverage = info.get("coverage") if artifact.format == "onnx" else None
    if coverage:
        out.extend(Measurement(key, float(coverage[key]), "fraction", "onnx-graph") for key in _COVERAGE_FIGURES)
    return out
