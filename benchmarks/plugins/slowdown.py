"""A test runtime for the gate benchmark: ONNX Runtime with an injected slowdown.

With ``EDGE_HARNESS_SLOWDOWN`` = f > 0 (e.g. 0.15), this plugin replaces the 'onnxruntime' adapter — under the
same name, so a gate matches its jobs to the baseline's — by one that busy-waits f × the duration of each real
inference after it: every call takes (1 + f) times as long. Load it with EDGE_HARNESS_PLUGINS=<this file>.
"""
import os
import time

from harness.registry import RUNTIMES
from harness.runtimes.onnxruntime_rt import OnnxRuntime

SLOWDOWN = float(os.environ.get("EDGE_HARNESS_SLOWDOWN", "0"))

if SLOWDOWN > 0:
    @RUNTIMES.register("onnxruntime", replace=True)
    class SlowedOnnxRuntime(OnnxRuntime):
        def infer(self, inputs):
            start = time.perf_counter_ns()
            outputs = super().infer(inputs)
            until = time.perf_counter_ns() + (time.perf_counter_ns() - start) * SLOWDOWN
            while time.perf_counter_ns() < until:
                pass
            return outputs
