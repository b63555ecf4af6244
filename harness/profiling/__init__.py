"""Where the time goes, on the worker side: per-op profilers (one per runtime, registered in ``OP_PROFILERS``), the
one map of op names across runtimes onto op families, and the target's measured compute and memory ceilings."""


def op_profiler(runtime: str):
    """The op profiler registered for ``runtime`` (the built-in ones are registered on first use), or None."""
    from harness.profiling import (executorch_ops, litert_ops, onnxruntime_ops,  # noqa: F401  (they register)
                                   torch_ops)
    from harness.registry import OP_PROFILERS

    return OP_PROFILERS.get(runtime) if runtime in OP_PROFILERS else None
