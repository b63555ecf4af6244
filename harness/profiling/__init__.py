"""Where the time goes, on the worker side: per-op profilers (one per runtime, registered in ``OP_PROFILERS``), the
one map of op names across runtimes onto op families, and the target's measured compute and memory ceilings."""


from harness.registry import OP_PROFILERS

BUILTIN = {"onnxruntime": "onnxruntime_ops", "onnxruntime-cuda": "onnxruntime_ops", "litert": "litert_ops",
           "executorch": "executorch_ops", "torch": "torch_ops", "torch-cuda": "torch_ops"}
"""The built-in op profilers and their modules, named lazily: a profile pass imports its runtime's alone."""

for _name, _module in BUILTIN.items():
    OP_PROFILERS.register_lazy(_name, f"harness.profiling.{_module}")


def op_profiler(runtime: str):
    """The op profiler registered for ``runtime``, or None."""
    return OP_PROFILERS.get(runtime) if runtime in OP_PROFILERS else None
