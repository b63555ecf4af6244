"""Device-side timers for the harness's timing loop (the loop stays in ``harness.engine.measure``).

A CUDA event pair brackets each timed inference on the stream the runtime computes on; after the loop's
``sync()`` the GPU time between the two events is read in milliseconds. It is recorded beside the host-side
``perf_counter`` latency, never instead of it: on a launch-bound model the two differ by the Python and
driver overhead that only the host clock sees.

Only runtimes that declare ``event_stream = "torch-current"`` get one: their work runs on PyTorch's
current stream, where the events are recorded. ONNX Runtime's CUDA EP computes on a stream of its own,
so events on PyTorch's stream would not bracket its kernels; it keeps host timing only.
"""
from __future__ import annotations

from typing import Any, Protocol


class DeviceTimer(Protocol):
    """start() before an inference, stop() after it, read_ms() once the device is synchronised."""

    method: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read_ms(self) -> float: ...


class CudaEventTimer:
    """One reusable pair of CUDA events with timing enabled (torch.cuda.Event); read_ms() in ms."""

    method = "cuda-event"

    def __init__(self) -> None:
        import torch

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self._start.record()

    def stop(self) -> None:
        self._end.record()

    def read_ms(self) -> float:
        self._end.synchronize()  # a no-op after the loop's sync(); guards a runtime whose sync() is lazier
        return float(self._start.elapsed_time(self._end))


def device_timer_for(runtime: Any) -> DeviceTimer | None:
    """A device timer for ``runtime``, or None when it has none (CPU runtimes, ONNX Runtime's CUDA EP)."""
    if getattr(runtime, "event_stream", None) == "torch-current":
        return CudaEventTimer()
    return None
