"""Roofline arithmetic (pure). A job does ``flops`` FLOP and moves ``bytes`` bytes per inference in ``latency_ms``; the
machine's ceilings are ``peak_gflops`` (GFLOP/s) and ``bandwidth_gbs`` (GB/s). Arithmetic intensity = FLOP / byte;
the roof at that intensity is min(peak, intensity × bandwidth); the job's achieved GFLOP/s = FLOP / time. A job
left of the ridge point (intensity < peak / bandwidth) is memory-bound, right of it compute-bound.

The ceilings are float32 figures (``harness.profiling.ceilings``) and a job's FLOPs and bytes are counted on the
float32 PyTorch model its artifact came from: a job computing in int8 or fp16 is placed against them with a
``precision_note`` saying so."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class RooflinePoint:
    intensity: float
    """FLOP per byte moved."""
    achieved_gflops: float
    attainable_gflops: float
    """The roof at this intensity: min(peak, intensity × bandwidth)."""
    peak_fraction: float
    """achieved / peak (0–1)."""
    roof_fraction: float
    """achieved / attainable (0–1): how close the job comes to what its intensity allows."""
    bound: str
    """'memory' left of the ridge point, 'compute' right of it."""


def ridge_point(peak_gflops: float, bandwidth_gbs: float) -> float:
    """The intensity (FLOP/byte) where the memory roof meets the compute roof."""
    return peak_gflops / bandwidth_gbs


def roofline_point(flops: float, bytes_moved: float, latency_ms: float, peak_gflops: float,
                   bandwidth_gbs: float) -> RooflinePoint:
    if flops <= 0 or bytes_moved <= 0 or latency_ms <= 0 or peak_gflops <= 0 or bandwidth_gbs <= 0:
        raise ValueError("roofline: flops, bytes, latency and both ceilings must be positive")
    intensity = flops / bytes_moved
    achieved = flops / (latency_ms / 1e3) / 1e9
    attainable = min(peak_gflops, intensity * bandwidth_gbs)
    return RooflinePoint(intensity, achieved, attainable, achieved / peak_gflops, achieved / attainable,
                         "memory" if intensity < ridge_point(peak_gflops, bandwidth_gbs) else "compute")


def precision_note(compression: Mapping[str, Any], ceilings_precision: str = "float32") -> str:
    """'' for a job computing in ``ceilings_precision``; else one line saying the point of a lower-precision job is a
    float32-equivalent placement. ``compression``: the artifact's ``compression`` (its ``coverage`` shares of int8
    and fp16 compute ops, or the ``quantized_layers`` of a quantized PyTorch model)."""
    coverage = compression.get("coverage") or {}
    shares = [(name, float(coverage.get(f"ops_{name}_fraction") or 0.0)) for name in ("int8", "fp16")]
    lower = [f"{name} ({share:.0%} of compute ops)" for name, share in shares if share > 0]
    if not lower and compression.get("quantized_layers"):
        lower = [f"int8 ({len(compression['quantized_layers'])} quantized layer(s))"]
    if not lower:
        return ""
    return (f"computes in {' and '.join(lower)}, placed against {ceilings_precision} ceilings with the FLOPs and "
            f"bytes of its {ceilings_precision} parent: a {ceilings_precision}-equivalent point, not its own "
            "precision's roof")
