"""LiteRT adapter: ``ai_edge_litert.interpreter`` (primary) or ``tflite_runtime`` (fallback)."""
from __future__ import annotations

import importlib
import importlib.util
import re
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.registry import RUNTIMES
from harness.types import Artifact

if TYPE_CHECKING:
    import numpy as np

_PROVIDERS = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))


def _interpreter_module() -> tuple[Any, str]:
    for module, dist in _PROVIDERS:
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            return importlib.import_module(module), dist
    raise RuntimeError("neither 'ai-edge-litert' nor 'tflite-runtime' is installed")


def _arg_number(name: str) -> int:
    found = re.search(r"(\d+)$", name)
    return int(found.group(1)) if found else 0


def open_interpreter(path: str, threads: int = 0) -> Any:
    """A LiteRT interpreter for ``path`` (ai_edge_litert, else tflite_runtime), tensors allocated."""
    module, _ = _interpreter_module()
    interp = module.Interpreter(model_path=path, **({"num_threads": threads} if threads else {}))
    interp.allocate_tensors()
    return interp


def io_details(interp: Any) -> tuple[list[dict], list[dict]]:
    """Input and output tensor details in the order of the model's arguments (args_0, args_1, ...),
    each with its ``name``; the default signature when the model has one."""
    signatures = interp.get_signature_list()
    if not signatures:
        return interp.get_input_details(), interp.get_output_details()
    runner = interp.get_signature_runner(next(iter(signatures)))
    ins, outs = runner.get_input_details(), runner.get_output_details()
    return ([ins[n] | {"name": n} for n in sorted(ins, key=_arg_number)],
            [outs[n] | {"name": n} for n in sorted(outs, key=_arg_number)])


@RUNTIMES.register("litert")
class LiteRTRuntime:
    name = "litert"
    formats = ("tflite",)

    def __init__(self, options: Any) -> None:
        self.options = options
        self._interp: Any = None
        self._in: list[int] = []
        self._out: list[int] = []

    @staticmethod
    def versions() -> dict[str, str]:
        for module, dist in _PROVIDERS:
            try:
                return {dist: version(dist)}
            except PackageNotFoundError:
                continue
        return {}

    @staticmethod
    def missing() -> str | None:
        if any(importlib.util.find_spec(m.split(".")[0]) for m, _ in _PROVIDERS):
            return None
        return "python package 'ai-edge-litert' (or the fallback 'tflite-runtime') is not installed"

    @staticmethod
    def preload() -> None:
        _interpreter_module()

    def load(self, artifact: Artifact) -> None:
        interp = open_interpreter(artifact.path, self.options.threads)
        ins, outs = io_details(interp)
        self._in = [d["index"] for d in ins]
        self._out = [d["index"] for d in outs]
        self._interp = interp

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        interp = self._interp
        for index, array in zip(self._in, inputs.values()):
            interp.set_tensor(index, array)
        interp.invoke()
        return [interp.get_tensor(i) for i in self._out]

    def sync(self) -> None:
        """invoke() returns when outputs are ready on CPU delegates: nothing to wait for."""
