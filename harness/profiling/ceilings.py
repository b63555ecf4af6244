"""A target's measured ceilings for the roofline: peak compute (a float32 GEMM through NumPy's BLAS at the job's
thread count) and memory bandwidth (a large array copy), each the best of several runs after a warm-up, recorded
with the method that measured it. They are what this machine reaches with a tuned kernel, not a datasheet figure."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

GEMM_N = 1024
"""The GEMM is N×N by N×N float32: 2·N³ FLOP."""
COPY_BYTES = 64 * 2**20
"""The copy moves this many bytes each way (read + write = twice this)."""


@dataclass(frozen=True)
class Ceilings:
    """``peak_gflops`` (GFLOP/s) and ``bandwidth_gbs`` (GB/s, 1e9 bytes), with how each was measured."""

    peak_gflops: float
    bandwidth_gbs: float
    threads: int
    peak_method: str
    bandwidth_method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _best_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up: pages touched, BLAS threads started
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_ceilings(threads: int, repeats: int = 5) -> Ceilings:
    """Peak GFLOP/s and bandwidth GB/s on this machine, with ``threads`` BLAS threads (0 = the library's default).
    The BLAS thread count is set through threadpoolctl where it is installed; otherwise the method says so."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    b = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    out = np.empty_like(a)
    limit_note = f"{threads} BLAS thread(s)" if threads else "the BLAS library's default threads"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
        if threads:
            limit_note = "the BLAS library's default threads (threadpoolctl is not installed to set them)"
    if threadpool_limits is not None and threads:
        with threadpool_limits(limits=threads, user_api="blas"):
            gemm_s = _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    else:
        gemm_s = _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    src = np.ones(COPY_BYTES // 4, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = _best_seconds(lambda: np.copyto(dst, src), repeats)
    return Ceilings(
        peak_gflops=2 * GEMM_N ** 3 / gemm_s / 1e9,
        bandwidth_gbs=2 * COPY_BYTES / copy_s / 1e9,
        threads=threads,
        peak_method=f"float32 GEMM {GEMM_N}³ via NumPy's BLAS, {limit_note}, best of {repeats}",
        bandwidth_method=f"NumPy copy of {COPY_BYTES // 2**20} MiB (read + write counted), one thread, best of "
                         f"{repeats}",
    )
