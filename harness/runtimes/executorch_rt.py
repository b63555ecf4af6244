"""ExecuTorch adapter: a ``.pte`` program through ExecuTorch's C++ runtime as the wheel builds it for Python (the
pybind module ``executorch.extension.pybindings._C``, with the XNNPACK delegate and the portable kernels), loaded
with the same verification as the public ``executorch.runtime.Runtime``, which wraps this module. The wrapper is
not used because importing it imports the whole ``executorch.exir`` compiler stack (``benchmarks/executorch_runtime.py``:
4.2 s and 354 MB peak resident for ``Runtime.get()`` against 1.1 s and 221 MB for this module, torch included,
medians of 5 fresh processes), which would count against every job's import time and peak memory though no app
on a board carries it.

Threads: ExecuTorch's Python runtime has no per-program thread setting; XNNPACK's work runs on the process-wide
pthreadpool, which ``_unsafe_reset_threadpool(n)`` resizes (the worker is a fresh process per job, so
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


def _module() -> Any:
    """The runtime's pybind module (imports torch first: the module links against it)."""
    import torch  # noqa: F401
    from executorch.extension.pybindings import _C

    return _C


def load_program(path: str, etdump: bool = False) -> Any:
    """An ``ExecuTorchProgram`` from a .pte file, verified for internal consistency (as ``Runtime.load_program``
    does); with ``etdump``, every execution is traced for ``write_etdump_result_to_file``."""
    module = _module()
    return module._load_program(path, enable_etdump=etdump, debug_buffer_size=0,
                                program_verification=module.Verification.InternalConsistency)


def set_threads(threads: int) -> None:
    """Resize the process-wide threadpool XNNPACK runs on (no-op for ``threads`` <= 0)."""
    if threads > 0:
        _module()._unsafe_reset_threadpool(int(threads))


def program_signature(path: str) -> list[dict[str, Any]]:
    """The forward method's inputs as [{name, shape, dtype}] (names ``input_0``, … in call order)."""
    meta = load_program(path).method_meta("forward")
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
    no_start_cache = ("none: ExecuTorch's XNNPACK packed-weight cache is a C++ backend option its Python runtime "
                      "does not expose; the .pte is memory-mapped")
    formats = ("executorch",)

    def __init__(self, options: Any) -> None:
        self.options = options
        self._method: Any = None
        self._program: Any = None
        self._from_numpy: Any = None
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
            return "python package 'executorch' is not installed (it runs with torch beside it)"
        return None

    @staticmethod
    def preload() -> None:
        _module()

    @property
    def program(self) -> Any:
        """The loaded ``ExecuTorchProgram`` (the op profiler writes its ETDump through it)."""
        return self._program

    def load(self, artifact: Artifact) -> None:
        set_threads(self.options.threads)
        self._program = load_program(artifact.path, etdump=self.etdump)
        if "forward" not in {self._program.get_method_name(i) for i in range(self._program.num_methods())}:
            raise ValueError(f"{artifact.path}: the program has no 'forward' method")
        self._method = self._program.load_method("forward")
        import torch

        self._from_numpy = torch.from_numpy  # bound once: infer is the timed call

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        outputs = self._method([self._from_numpy(a) for a in inputs.values()])  # clone_outputs=True: copied out
        return [o.numpy() for o in outputs]                                       # of the memory-planned arena

    def sync(self) -> None:
        """XNNPACK and the portable kernels return only when the outputs are written: nothing to wait for."""
