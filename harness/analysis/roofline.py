"""Roofline arithmetic (pure). A job does ``flops`` FLOP and moves ``bytes`` bytes per inference in ``latency_ms``; the
machine's ceilings are ``peak_gflops`` (GFLOP/s) and ``bandwidth_gbs`` (GB/s). Arithmetic intensity = FLOP / byte;
the roof at that intensity is min(peak, intensity × bandwidth); the job's achieved GFLOP/s = FLOP / time. A job
left of the ridge point (intensity < peak / bandwidth) is memory-bound, right of it compute-bound."""
from __future__ import annotations

from dataclasses import dataclass


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
