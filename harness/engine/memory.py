"""The memory pass (separate from timing): resident set size after imports, after load, after
inference, and the peak (VmHWM) of load + inference. Sizes in bytes; Linux /proc and psutil."""
from __future__ import annotations

import resource
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import psutil

from harness.types import Measurement


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM to the current RSS (Linux ≥ 4.0). False when not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """VmHWM from /proc/self/status, else ru_maxrss (kilobytes on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gpu_memory_of_process(pid: int, gpu_index: int = 0) -> int | None:
    """GPU memory this process holds (bytes), from NVML's per-process accounting; None when unknown."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory)
    except Exception:  # NVML missing, no driver, no permission, or a container hiding PIDs: unknown
        return None
    return None


def gpu_measurements(runtime: Any) -> tuple[Measurement, ...]:
    """For runtimes on a CUDA device: NVML's per-process GPU memory, else torch's peak allocation."""
    if getattr(runtime, "device", "cpu") != "cuda":
        return ()
    import os
    import sys

    used = gpu_memory_of_process(os.getpid())
    if used is not None:
        return (Measurement("gpu_memory", used, "bytes", "nvml-process"),)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return (Measurement("gpu_memory", torch.cuda.max_memory_allocated(), "bytes",
                            "torch.cuda.max_memory_allocated"),)
    return ()


def run_memory_pass(runtime: Any, artifact: Any, inputs: Mapping[str, np.ndarray], runs: int) -> tuple[Measurement, ...]:
    proc = psutil.Process()
    baseline = proc.memory_info().rss
    was_reset = _reset_peak_rss()
    runtime.load(artifact)
    runtime.sync()
    after_load = proc.memory_info().rss
    for _ in range(runs):
        runtime.infer(inputs)
        runtime.sync()
    after_infer = proc.memory_info().rss
    peak = _peak_rss_bytes()
    peak_method = "vmhwm-since-load" if was_reset else "vmhwm-since-process-start"
    return (
        Measurement("rss_baseline", baseline, "bytes", "psutil-after-imports"),
        Measurement("rss_after_load", after_load, "bytes", "psutil"),
        Measurement("rss_after_inference", after_infer, "bytes", "psutil"),
        Measurement("peak_rss", peak, "bytes", peak_method),
        Measurement("peak_rss_over_baseline", max(0, peak - baseline), "bytes", peak_method),
        *gpu_measurements(runtime),
    )
