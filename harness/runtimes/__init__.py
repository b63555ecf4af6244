"""Runtime adapters: load / infer / sync — nothing else. The harness owns warm-up, timing and statistics.

An adapter class has ``name``, ``formats`` (artifact formats it loads), ``versions()`` (for the run
context), ``missing()`` (None when usable, else what is missing, for a clear skip), ``preload()``
(imports the runtime's library, so the worker can time the import apart from the load), and per instance
``load(artifact)``, ``infer(inputs) -> list of arrays`` and ``sync()``. Options arrive in the constructor. An
adapter with a start-up cache uses ``RuntimeOptions.cache_dir`` and, after ``load``, says what it did in
``start_cache`` (e.g. "written: …" or "read: …").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

from harness.registry import RUNTIMES
from harness.types import Artifact


@dataclass(frozen=True)
class RuntimeOptions:
    """Per-job runtime settings. ``threads`` = 0 means every core the worker may use (resolved by the worker)."""

    threads: int = 0
    graph_optimization: str = "all"
    litert_xnnpack: bool = True
    """LiteRT: apply the default XNNPACK delegate (False: the built-in kernels only)."""
    litert_api: str = "interpreter"
    """LiteRT: the classic "interpreter", or the "compiled" CompiledModel API (with its XNNPACK weight cache)."""
    onnx_execution_mode: str = "sequential"
    """ONNX Runtime: "sequential", or "parallel" (independent branches at once, on inter-op threads)."""
    cache_dir: str = ""
    """A folder the runtime may keep its own start-up cache in, where it has one ('' = none): ONNX Runtime's
    optimised model, LiteRT's XNNPACK weight cache. Set by the start pass only (``harness.engine.start``); an adapter
    that used it says how in ``start_cache``."""


class Runtime(Protocol):
    name: str
    formats: tuple[str, ...]

    def __init__(self, options: RuntimeOptions) -> None: ...

    @staticmethod
    def versions() -> dict[str, str]: ...

    @staticmethod
    def missing() -> str | None: ...

    @staticmethod
    def preload() -> None: ...

    def load(self, artifact: Artifact) -> None: ...

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]: ...

    def sync(self) -> None: ...


def runtime_class(name: str) -> type:
    return RUNTIMES.get(name)


def runtimes_for_format(fmt: str) -> list[str]:
    return [n for n in RUNTIMES.names() if fmt in RUNTIMES.get(n).formats]


BUILTIN = {"onnxruntime": "onnxruntime_rt", "litert": "litert_rt", "executorch": "executorch_rt",
           "torch": "torch_eager", "torch-cuda": "cuda", "onnxruntime-cuda": "cuda"}
"""The built-in runtimes and their modules, named lazily: a worker imports the one adapter its job runs."""

for _name, _module in BUILTIN.items():
    RUNTIMES.register_lazy(_name, f"harness.runtimes.{_module}")

if TYPE_CHECKING:
    import numpy as np
