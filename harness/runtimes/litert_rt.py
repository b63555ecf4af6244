"""LiteRT adapter: ``ai_edge_litert.interpreter`` (primary) or ``tflite_runtime`` (fallback); with a target's
``[litert] api = "compiled"``, ai-edge-litert's ``CompiledModel`` API instead (CPU, XNNPACK), whose packed-weight
cache (``CpuOptions.xnnpack_weight_cache_path``) the start pass uses: the first load packs the weights and writes
the file, the next maps it."""
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
LITERT_APIS = ("interpreter", "compiled")


def _interpreter_module() -> tuple[Any, str]:
    for module, dist in _PROVIDERS:
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            return importlib.import_module(module), dist
    raise RuntimeError("neither 'ai-edge-litert' nor 'tflite-runtime' is installed")


def uses_compiled_model(options: Any) -> bool:
    """Whether a job runs through the CompiledModel API: ``[litert] api = "compiled"``, with XNNPACK (``xnnpack =
    false``, the built-in kernels only, exists in the Interpreter alone, which then runs the job)."""
    return options.litert_api == "compiled" and options.litert_xnnpack


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
    no_start_cache = ("none: the Interpreter this adapter runs reaches no weight cache; LiteRT's XNNPACK weight "
                      "cache needs its CompiledModel API (set [litert] api = \"compiled\" on the target)")
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
        """The Interpreter's module (``[litert] api = "compiled"`` imports its CompiledModel module in ``load``)."""
        _interpreter_module()

    start_cache = ""
    """What the last ``load`` did with the start-up cache ('' = none used)."""

    def load(self, artifact: Artifact) -> None:
        self._compiled, self._interp, self.start_cache = None, None, ""
        if uses_compiled_model(self.options) and not self.preserve_all_tensors:  # the layers pass reads
            self._compiled = CompiledRunner(artifact, self.options)              # tensors through the Interpreter
            self.start_cache = self._compiled.start_cache
            return
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

    _compiled: "CompiledRunner | None" = None

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        if self._compiled is not None:
            return self._compiled.infer(inputs)
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


COMPILED_DTYPES = ("float32", "float16", "int32")
"""The element types a CompiledModel buffer holds that this runner feeds as they are (int8 / uint8 models are
refused: their scales come from the Interpreter; int64 / bool buffers do not exist)."""


class CompiledRunner:
    """One ``.tflite`` through ai-edge-litert's ``CompiledModel`` on the CPU (XNNPACK): its default signature's
    buffers made once at load, each ``infer`` writes the inputs (in the dtypes the model declares), runs and reads
    the outputs back. With ``options.cache_dir`` (the start pass), XNNPACK's weight cache file lives there, one per
    artifact and thread count; ``start_cache`` says whether this load wrote or read it."""

    def __init__(self, artifact: Artifact, options: Any) -> None:
        import numpy as np
        from pathlib import Path

        try:
            from ai_edge_litert.compiled_model import CompiledModel, CpuOptions, HardwareAccelerator, Options
        except ImportError as exc:
            raise RuntimeError(f"[litert] api = \"compiled\" needs ai-edge-litert's CompiledModel API ({exc})") \
                from None
        cache = ""
        self.start_cache = ""
        if options.cache_dir:
            key = (artifact.sha256 or Path(artifact.path).stem)[:16]
            cache = str(Path(options.cache_dir) / f"{key}-t{options.threads}.xnnpack_cache")
            existed = Path(cache).is_file()
        cpu = CpuOptions(num_threads=options.threads, **({"xnnpack_weight_cache_path": cache} if cache else {}))
        try:
            self.model = CompiledModel.from_file(artifact.path, options=Options(
                hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu))
        except TypeError as exc:  # an ai-edge-litert whose CompiledModel takes other arguments
            raise RuntimeError(f"[litert] api = \"compiled\": this ai-edge-litert's CompiledModel does not take CPU "
                               f"options ({exc}); ai-edge-litert 2.3 does") from None
        if cache:
            self.start_cache = ("read: LiteRT's XNNPACK weight cache (packed weights mapped, not packed again)"
                                if existed else
                                "written: LiteRT packed the weights and saved XNNPACK's weight cache"
                                if Path(cache).is_file() else
                                "none: LiteRT wrote no XNNPACK weight cache file (no op of this model packs weights "
                                "through XNNPACK)")
        key = self.model.get_signature_by_index(0)["key"]
        ins = self.model.get_input_tensor_details(key)
        outs = self.model.get_output_tensor_details(key)
        self.in_names = sorted(ins, key=arg_number)
        self.out_names = sorted(outs, key=arg_number)
        self.in_dtypes = [np.dtype(ins[n]["dtype"]) for n in self.in_names]
        self.in_shapes = [tuple(ins[n]["shape"]) for n in self.in_names]
        for name, dtype in zip(self.in_names + self.out_names,
                               self.in_dtypes + [np.dtype(outs[n]["dtype"]) for n in self.out_names]):
            if dtype in (np.dtype(np.int8), np.dtype(np.uint8)):
                raise ValueError(f"[litert] api = \"compiled\": tensor {name!r} is {dtype.name} (a fully integer "
                                 "model); its scale is read through the Interpreter ([litert] api = \"interpreter\")")
            if dtype.name not in COMPILED_DTYPES:
                raise ValueError(f"[litert] api = \"compiled\": tensor {name!r} is {dtype.name}, which the "
                                 "CompiledModel's buffers do not hold; use api = \"interpreter\"")
        self.out_shapes = [tuple(outs[n]["shape"]) for n in self.out_names]
        self.out_dtypes = [np.dtype(outs[n]["dtype"]) for n in self.out_names]
        self.in_buffers = [self.model.create_input_buffer_by_name(key, n) for n in self.in_names]
        self.out_buffers = [self.model.create_output_buffer_by_name(key, n) for n in self.out_names]
        self.in_map = dict(zip(self.in_names, self.in_buffers))  # built once: infer is the timed call
        self.out_map = dict(zip(self.out_names, self.out_buffers))
        self.out_sizes = [int(np.prod(shape)) for shape in self.out_shapes]
        self.key = key

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        import numpy as np

        for i, (buffer, dtype, shape, array) in enumerate(zip(self.in_buffers, self.in_dtypes, self.in_shapes,
                                                              inputs.values())):
            if array.shape != shape:  # a buffer takes any size; the Interpreter's set_tensor checks it
                raise ValueError(f"input {i}: shape {array.shape}, the TFLite model takes {shape}")
            buffer.write(np.ascontiguousarray(array if array.dtype == dtype else conform_input(array, dtype, i)))
        self.model.run_by_name(self.key, self.in_map, self.out_map)
        return [buffer.read(size, dtype).reshape(shape)
                for buffer, size, shape, dtype in zip(self.out_buffers, self.out_sizes, self.out_shapes,
                                                      self.out_dtypes)]
