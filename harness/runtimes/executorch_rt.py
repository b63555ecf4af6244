"""ExecuTorch adapter: a ``.pte`` program through ExecuTorch's Python runtime (``executorch.runtime``), with the
XNNPACK delegate and portable kernels built into the wheel.

Threads: ExecuTorch's Python runtime has no per-program thread setting; XNNPACK's work runs on the process-wide
pthreadpool, which ``portable_lib._unsafe_reset_threadpool(n)`` resizes (the worker is a fresh process per job, so
this is the job's setting). Portable (non-delegated) kernels run on the calling thread only. The Python runtime
imports torch (there is no torch-free Python runtime for ExecuTorch: the standalone runtime is the C++ library an
app links), so its import time and resident memory include torch's.
"""
from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.registry import RUNTIMES
from harness.types import Artifact

if TYPE_CHECKING:
    import numpy as np

SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool"}
"""ExecuTorch ScalarType codes (``TensorInfo.dtype()``) → numpy dtype names."""


def _runtime() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.runtime import Runtime

    return Runtime.get()


def set_threads(threads: int) -> None:
    """Resize the process-wide threadpool XNNPACK runs on (no-op for ``threads`` <= 0)."""
    if threads > 0:
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(int(threads))


def program_signature(path: str) -> list[dict[str, Any]]:
    """The forward method's inputs as [{name, shape, dtype}] (names ``input_0``, … in call order)."""
    meta = _runtime().load_program(path).metadata("forward")
    out = []
    for i in range(meta.num_inputs()):
        info = meta.input_tensor_meta(i)
        code = int(info.dtype())
        if code not in SCALAR_TYPES:
            raise ValueError(f"input {i} has ExecuTorch scalar type {code}, which the harness does not feed")
        out.append({"name": f"input_{i}", "shape": [int(d) for d in info.sizes()], "dtype": SCALAR_TYPES[code]})
    return out


@RUNTIMES.register("executorch")
class ExecuTorchRuntime:
    name = "executorch"
    formats = ("executorch",)

    def __init__(self, options: Any) -> None:
        self.options = options
        self._method: Any = None
        self._program: Any = None
        self.etdump = False
        """Set before ``load`` to record an ETDump of every execution (``harness.profiling.executorch_ops``)."""

    @staticmethod
    def versions() -> dict[str, str]:
        try:
            return {"executorch": version("executorch")}
        except PackageNotFoundError:
            return {}

    @staticmethod
    def missing() -> str | None:
        if importlib.util.find_spec("executorch") is None:
            return "python package 'executorch' is not installed (pip install 'edge-harness[executorch]')"
        return None

    @staticmethod
    def preload() -> None:
        _runtime()

    @property
    def program(self) -> Any:
        """The loaded ``executorch.runtime.Program`` (the op profiler writes its ETDump through it)."""
        return self._program

    def load(self, artifact: Artifact) -> None:
        set_threads(self.options.threads)
        kwargs = {"enable_etdump": True, "debug_buffer_size": 0} if self.etdump else {}
        self._program = _runtime().load_program(artifact.path, **kwargs)
        self._method = self._program.load_method("forward")
        if self._method is None:
            raise ValueError(f"{artifact.path}: the program has no 'forward' method")

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        import torch

        outputs = self._method.execute([torch.from_numpy(a) for a in inputs.values()])
        return [o.numpy() for o in outputs]  # the Python runtime clones outputs out of the planned arena

    def sync(self) -> None:
        """XNNPACK and the portable kernels return only when the outputs are written: nothing to wait for."""
