"""ONNX Runtime per-op profile: the session's own profiler (``SessionOptions.enable_profiling``), whose trace has one
``Node`` event per node run (its op type, and the execution provider that ran it) and one ``model_run`` event per
inference. The adapter loads the artifact exactly as for timing (same providers, threads, graph optimisation), with
profiling switched on; the warm-up run is left out of the profile."""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any, Mapping

from harness.profiling.ops import OpProfile, aggregate
from harness.registry import OP_PROFILERS

_SUFFIX = "_kernel_time"


def read_trace(events: list[dict[str, Any]], runs: int) -> tuple[list[tuple[str, str, str, float]], list[float]]:
    """(node events as (name, op type, provider, ms), each run's ms) for the last ``runs`` ``model_run``s of an
    ONNX Runtime trace (times in the trace are µs)."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[-runs:]
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in model_runs]
    nodes = []
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith(_SUFFIX):
            continue
        if any(start <= e["ts"] <= end for start, end in windows):
            args = e.get("args", {})
            nodes.append((e["name"][:-len(_SUFFIX)], str(args.get("op_name", "?")),
                          str(args.get("provider", "?")), e["dur"] / 1e3))
    return nodes, [e["dur"] / 1e3 for e in model_runs]


def profile_onnxruntime(runtime: Any, artifact: Any, inputs: Mapping[str, Any], runs: int) -> OpProfile:
    with tempfile.TemporaryDirectory(prefix="edge-harness-ort-profile-") as tmp:
        base = runtime.session_options

        def with_profiling() -> Any:
            options = base()
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "ort")
            return options

        runtime.session_options = with_profiling
        runtime.load(artifact)
        for _ in range(runs + 1):  # the first is the warm-up, left out below
            runtime.infer(inputs)
            runtime.sync()
        trace = runtime.session.end_profiling()
        events = json.loads(Path(trace).read_text())
    nodes, run_ms = read_trace(events, runs)
    return OpProfile(runtime.name, "ONNX Runtime session profiling (Node events)", len(run_ms),
                     statistics.median(run_ms) if run_ms else 0.0, aggregate(nodes, len(run_ms)),
                     ("each node's kernel time; fused nodes (FusedConv, an activation folded into a Conv) count once",))


for _name in ("onnxruntime", "onnxruntime-cuda"):
    OP_PROFILERS.register(_name)(profile_onnxruntime)
