"""PyTorch eager per-op profile: ``torch.profiler`` around each inference (marked by a ``record_function``), the
top-level ops inside it (``aten::conv_transpose2d``, ``aten::linear`` — not the kernels they call), with their CPU
time including their children; on a CUDA runtime also each op's device time. Time inside the run that no top-level op
accounts for (Python between modules) is its own row, ``python``."""
from __future__ import annotations

import statistics
from typing import Any, Mapping

from harness.profiling.ops import OpProfile, aggregate
from harness.registry import OP_PROFILERS

_RUN = "edge_harness::inference"


def profile_torch(runtime: Any, artifact: Any, inputs: Mapping[str, Any], runs: int) -> OpProfile:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    runtime.load(artifact)
    runtime.infer(inputs)  # warm-up, not profiled
    runtime.sync()
    cuda = runtime.name.endswith("-cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.no_grad(), profile(activities=activities) as prof:
        for _ in range(runs):
            with record_function(_RUN):
                runtime.infer(inputs)
                runtime.sync()
    events = prof.events()
    run_events = [e for e in events if e.name == _RUN]
    rows = []
    provider = "CUDA" if cuda else "CPU"
    for event in events:
        parent = event.cpu_parent
        if parent is None or parent.name != _RUN:
            continue
        ms = (getattr(event, "device_time_total", 0.0) if cuda else event.cpu_time_total) / 1e3
        rows.append((event.name, event.name, provider, ms))
    for run in run_events:
        inside = sum(child.cpu_time_total for child in run.cpu_children) / 1e3
        rows.append(("python", "python", "CPU", max(0.0, run.cpu_time_total / 1e3 - inside)))
    run_ms = [e.cpu_time_total / 1e3 for e in run_events]
    return OpProfile(runtime.name, "torch.profiler (top-level ops of each inference" +
                     (", CUDA device time)" if cuda else ", CPU time)"),
                     len(run_ms), statistics.median(run_ms) if run_ms else 0.0, aggregate(rows, len(run_ms)),
                     ("an op's time includes the ops it calls (aten::linear includes its addmm)",))


for _name in ("torch", "torch-cuda"):
    OP_PROFILERS.register(_name)(profile_torch)
