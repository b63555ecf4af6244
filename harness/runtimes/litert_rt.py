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


def arg_number(name: str) -> int:
    found = re.search(r"(\d+)$", name)
    return int(found.group(1)) if found else 0


def open_interpreter(path: str, threads: int = 0, preserve_all_tensors: bool = False, xnnpack: bool = True) -> Any:
    """A LiteRT interpreter for ``path`` (ai_edge_litert, else tflite_runtime), tensors allocated;
    ``preserve_all_tensors``: every intermediate tensor stays readable after ``invoke`` (a debugging mode, for
    "where fidelity breaks", never for timing); ``xnnpack=False``: the built-in kernels only, without the default
    XNNPACK delegate."""
    module, _ = _interpreter_module()
    extra: dict[str, Any] = {"num_threads": threads} if threads else {}
    if preserve_all_tensors:
        extra["experimental_preserve_all_tensors"] = True
    if not xnnpack:
        extra["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = module.Interpreter(model_path=path, **extra)
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
    return ([ins[n] | {"name": n} for n in sorted(ins, key=arg_number)],
            [outs[n] | {"name": n} for n in sorted(outs, key=arg_number)])


def _integer_io(detail: Mapping[str, Any]) -> tuple[Any, float, int] | None:
    """(dtype, scale, zero point) of an int8/uint8 model input or output, None for a float one."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    if dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return None
    scale, zero = detail.get("quantization", (0.0, 0))
    return (dtype.type, float(scale), int(zero)) if scale else None


def conform_input(array: Any, dtype: Any, index: int | str) -> Any:
    """An input in the dtype the interpreter declares, where the exporter narrowed it (litert-torch turns an int64
    input, e.g. a diffusion timestep, into int32): integer to integer when every value fits, float64 to float32."""
    import numpy as np

    target = np.dtype(dtype)
    if array.dtype.kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"input {index}: values outside {target.name}, the type the TFLite model takes")
        return array.astype(target)
    if array.dtype.kind == "f" and target.kind == "f":
        return array.astype(target)
    return array  # anything else: LiteRT's own error names the types


@RUNTIMES.register("litert")
class LiteRTRuntime:
    name = "litert"
    no_start_cache = ("none: LiteRT's XNNPACK weight cache is reachable only through its CompiledModel API "
                      "(CpuOptions.xnnpack_weight_cache_path), not the Interpreter this adapter runs")
    formats = ("tflite",)

    def __init__(self, options: Any) -> None:
        self.options = options
        self._interp: Any = None
        self._in: list[int] = []
        self._out: list[int] = []
        self._integer_io = False
        self.preserve_all_tensors = False
        """Set before ``load`` to keep every intermediate tensor readable (``harness.profiling.tensors``)."""

    @property
    def interpreter(self) -> Any:
        """The loaded interpreter (intermediate tensors are read through it)."""
        return self._interp

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
        interp = open_interpreter(artifact.path, self.options.threads, self.preserve_all_tensors,
                                  self.options.litert_xnnpack)
        ins, outs = io_details(interp)
        self._in = [d["index"] for d in ins]
        self._out = [d["index"] for d in outs]
        self._in_quant = [_integer_io(d) for d in ins]
        self._out_quant = [_integer_io(d) for d in outs]
        self._integer_io = any(self._in_quant) or any(self._out_quant)
        self._in_dtypes = [d["dtype"] for d in ins]
        self._interp = interp

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        if self._integer_io:
            return self._infer_integer_io(inputs)
        interp = self._interp
        for index, dtype, array in zip(self._in, self._in_dtypes, inputs.values()):
            interp.set_tensor(index, array if array.dtype == dtype else conform_input(array, dtype, index))
        interp.invoke()
        return [interp.get_tensor(i) for i in self._out]

    def _infer_integer_io(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        """A fully integer model: float32 inputs are quantized and int8 outputs dequantized here, with the
        tensors' own scale and zero point, as an application must (inside the timed call)."""
        import numpy as np

        interp = self._interp
        for index, quant, dtype, array in zip(self._in, self._in_quant, self._in_dtypes, inputs.values()):
            if quant:
                qtype, scale, zero = quant
                info = np.iinfo(qtype)
                array = np.clip(np.round(array / scale) + zero, info.min, info.max).astype(qtype)
            elif array.dtype != dtype:  # an input left unquantized (an int64 timestep the export made int32)
                array = conform_input(array, dtype, index)
            interp.set_tensor(index, array)
        interp.invoke()
        outputs = []
        for index, quant in zip(self._out, self._out_quant):
            out = interp.get_tensor(index)
            if quant:
                _, scale, zero = quant
                out = (out.astype(np.float32) - zero) * np.float32(scale)
            outputs.append(out)
        return outputs

    def sync(self) -> None:
        """invoke() returns when outputs are ready on CPU delegates: nothing to wait for."""
