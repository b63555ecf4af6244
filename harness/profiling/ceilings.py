"""A target's measured ceilings for the roofline: peak compute (a float32 GEMM through NumPy's BLAS) and memory
bandwidth (a large array copy, split across as many threads), both at the job's thread count, each the best of
several runs after a warm-up, recorded with the method that measured it. They are what this machine reaches with a
tuned kernel, not a datasheet figure. Both are float32 figures: a job computing in int8 or fp16 is placed against
them with a note saying so (``harness.analysis.roofline.precision_note``)."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
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
    """Threads of both measurements: BLAS threads of the GEMM, copying threads of the bandwidth."""
    peak_method: str
    bandwidth_method: str
    precision: str = "float32"
    """The data type both ceilings were measured in."""
    contention: dict[str, Any] = field(default_factory=dict)
    """How busy the CPUs were apart from the measuring worker (``harness.engine.quiet.BusyWindow`` reading with
    ``contended`` and ``limit_cores``); a contended measurement reads low. Empty where not checked."""

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


def copy_chunks(n: int, threads: int) -> list[slice]:
    """``n`` elements split into ``threads`` contiguous, nearly equal slices (at least one)."""
    parts = max(1, min(threads, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def _parallel_copy(dst: Any, src: Any, pool: ThreadPoolExecutor, chunks: list[slice]) -> Any:
    """One copy of ``src`` into ``dst``, each chunk on a thread of ``pool`` (NumPy releases the GIL while copying)."""
    import numpy as np

    def copy() -> None:
        for future in [pool.submit(np.copyto, dst[c], src[c]) for c in chunks]:
            future.result()

    return copy


def measure_ceilings(threads: int, repeats: int = 5) -> Ceilings:
    """Peak GFLOP/s and bandwidth GB/s on this machine, both with ``threads`` threads (0 = the BLAS library's
    default for the GEMM and every CPU this process may use for the copy). The BLAS thread count is set through
    threadpoolctl where it is installed; otherwise the method says so."""
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
    copiers = threads or len(os.sched_getaffinity(0))
    chunks = copy_chunks(len(src), copiers)
    with ThreadPoolExecutor(max_workers=len(chunks), thread_name_prefix="ceilings-copy") as pool:
        copy_s = _best_seconds(_parallel_copy(dst, src, pool, chunks), repeats)
    return Ceilings(
        peak_gflops=2 * GEMM_N ** 3 / gemm_s / 1e9,
        bandwidth_gbs=2 * COPY_BYTES / copy_s / 1e9,
        threads=threads,
        peak_method=f"float32 GEMM {GEMM_N}³ via NumPy's BLAS, {limit_note}, best of {repeats}",
        bandwidth_method=f"NumPy copy of {COPY_BYTES // 2**20} MiB (read + write counted), {len(chunks)} thread(s) "
                         f"each copying 1/{len(chunks)}, best of {repeats}",
    )
