"""LiteRT per-op profile. The ``ai_edge_litert`` Python API exposes no op profiler (its Interpreter has none, its
CompiledModel neither); the LiteRT C API in the same wheel (``libLiteRt.so``) does: a CompiledModel made with the
runtime option ``enable_profiling = true`` gives its profiler's events — one per op a CPU kernel ran (``[Builtin]``,
the op's TFLite node) and one per operator XNNPACK ran inside its delegate partitions (``[Delegate]``, XNNPACK's own
op names: ``Convolution (NHWC, F32) IGEMM``, ``Deconvolution … Subconv2D``). That is what this module reads, through
``ctypes``, on the CPU accelerator (XNNPACK where it applies, builtin kernels elsewhere — the Interpreter's default
too). Event times are whole microseconds. The API's structs are not part of the Python package's documented surface:
a LiteRT whose library lacks a symbol gives a clear "unavailable", never a guess."""
from __future__ import annotations

import ctypes
import importlib.util
import re
import statistics
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.profiling.ops import OpProfile, aggregate
from harness.registry import OP_PROFILERS

_BUILTIN_OP, _DELEGATE_OP = 2, 8
"""LiteRT profiler event types: an op run by a builtin CPU kernel; an operator inside a delegate (XNNPACK)."""
_HW_CPU = 1

_XNNPACK_FAMILIES = (
    ("deconvolution", "conv-transpose"), ("depthwise convolution", "conv"), ("convolution", "conv"),
    ("fully connected", "matmul"), ("batch matrix multiply", "matmul"), ("tanh", "activation"),
    ("sigmoid", "activation"), ("leaky relu", "activation"), ("clamp", "activation"), ("elu", "activation"),
    ("hardswish", "activation"), ("gelu", "activation"), ("softmax", "activation"),
    ("add", "elementwise"), ("multiply", "elementwise"), ("subtract", "elementwise"), ("divide", "elementwise"),
    ("maximum", "elementwise"), ("minimum", "elementwise"), ("square", "elementwise"), ("copysign", "elementwise"),
    ("concatenate", "concat"), ("copy", "layout"), ("transpose", "layout"), ("reshape", "layout"),
    ("slice", "layout"), ("convert", "quantize"), ("resize", "resize"), ("mean", "reduce"), ("sum", "reduce"),
    ("pooling", "reduce"), ("constant pad", "pad"),
)


def xnnpack_op_type(name: str) -> str:
    """An op type for an XNNPACK operator name (``Deconvolution (NHWC, F32) Subconv2D`` → ``XNNPACK Deconvolution``),
    mapped onto the op families through ``xnnpack_family``."""
    return "XNNPACK " + re.split(r"\s*\(", name.split("/", 1)[-1], maxsplit=1)[0].strip()


def xnnpack_family(op_type: str) -> str:
    lowered = op_type.lower()
    return next((family for key, family in _XNNPACK_FAMILIES if key in lowered), "other")


class _Usage(ctypes.Structure):
    _fields_ = [("total", ctypes.c_size_t), ("in_use", ctypes.c_size_t), ("private", ctypes.c_size_t)]


class _Event(ctypes.Structure):
    _fields_ = [("tag", ctypes.c_char_p), ("event_type", ctypes.c_int), ("start_us", ctypes.c_uint64),
                ("elapsed_us", ctypes.c_uint64), ("begin_mem", _Usage), ("end_mem", _Usage),
                ("meta1", ctypes.c_uint64), ("meta2", ctypes.c_uint64), ("source", ctypes.c_int)]


_FUNCTIONS = ("LiteRtCreateEnvironment", "LiteRtDestroyEnvironment", "LiteRtCreateModelFromFile",
              "LiteRtDestroyModel", "LiteRtCreateOptions", "LiteRtDestroyOptions",
              "LiteRtSetOptionsHardwareAccelerators", "LiteRtCreateOpaqueOptions", "LiteRtAddOpaqueOptions",
              "LiteRtCreateCompiledModel", "LiteRtDestroyCompiledModel", "LiteRtCompiledModelGetProfiler",
              "LiteRtStartProfiler", "LiteRtStopProfiler", "LiteRtGetNumProfilerEvents", "LiteRtGetProfilerEvents",
              "LiteRtGetModelSignature", "LiteRtGetNumSignatureInputs", "LiteRtGetNumSignatureOutputs",
              "LiteRtGetSignatureInputName", "LiteRtGetSignatureInputTensorByIndex",
              "LiteRtGetSignatureOutputTensorByIndex", "LiteRtGetRankedTensorType",
              "LiteRtGetCompiledModelInputBufferRequirements", "LiteRtGetCompiledModelOutputBufferRequirements",
              "LiteRtCreateManagedTensorBufferFromRequirements", "LiteRtDestroyTensorBuffer",
              "LiteRtRunCompiledModel", "LiteRtLockTensorBuffer", "LiteRtUnlockTensorBuffer",
              "LiteRtGetTensorBufferPackedSize")


def library() -> tuple[Any, str | None]:
    """(``libLiteRt.so`` loaded, None) or (None, why it cannot be used)."""
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or not spec.submodule_search_locations:
        return None, "LiteRT op profiling needs 'ai-edge-litert' (its libLiteRt.so C API); tflite-runtime has none"
    path = Path(list(spec.submodule_search_locations)[0]) / "libLiteRt.so"
    if not path.is_file():
        return None, f"this ai-edge-litert has no {path.name} (LiteRT's C API, which holds the op profiler)"
    lib = ctypes.CDLL(str(path))
    missing = [name for name in _FUNCTIONS if not hasattr(lib, name)]
    if missing:
        return None, f"{path.name} lacks {', '.join(missing[:3])}: this LiteRT's C API has no op profiler we know"
    for name in _FUNCTIONS:
        getattr(lib, name).restype = ctypes.c_int
    return lib, None


class _Session:
    """A profiling CompiledModel and its tensor buffers (released on ``close``)."""

    def __init__(self, lib: Any, path: str, threads: int) -> None:
        self.lib, self.handles = lib, []
        vp = ctypes.c_void_p
        self.env, self.model, self.options, self.compiled = vp(), vp(), vp(), vp()
        self._check(lib.LiteRtCreateEnvironment(0, None, ctypes.byref(self.env)), "creating the environment")
        self._check(lib.LiteRtCreateModelFromFile(self.env, path.encode(), ctypes.byref(self.model)),
                    "loading the model")
        self._check(lib.LiteRtCreateOptions(ctypes.byref(self.options)), "creating options")
        self._check(lib.LiteRtSetOptionsHardwareAccelerators(self.options, _HW_CPU), "choosing the CPU")
        self._opaque("runtime_options_string", "enable_profiling = true\n")
        if threads:
            self._opaque("xnnpack", f"num_threads = {int(threads)}\n")
        self._check(lib.LiteRtCreateCompiledModel(self.env, self.model, self.options, ctypes.byref(self.compiled)),
                    "compiling the model")
        self.profiler = vp()
        self._check(lib.LiteRtCompiledModelGetProfiler(self.compiled, ctypes.byref(self.profiler)),
                    "getting the profiler")
        signature = vp()
        self._check(lib.LiteRtGetModelSignature(self.model, ctypes.c_size_t(0), ctypes.byref(signature)),
                    "reading the signature")
        n_in, n_out = ctypes.c_size_t(), ctypes.c_size_t()
        lib.LiteRtGetNumSignatureInputs(signature, ctypes.byref(n_in))
        lib.LiteRtGetNumSignatureOutputs(signature, ctypes.byref(n_out))
        names = []
        for i in range(n_in.value):
            name = ctypes.c_char_p()
            lib.LiteRtGetSignatureInputName(signature, ctypes.c_size_t(i), ctypes.byref(name))
            names.append((name.value or b"").decode())
        self.input_names = names
        self.inputs = [self._buffer(signature, i, True) for i in range(n_in.value)]
        self.outputs = [self._buffer(signature, i, False) for i in range(n_out.value)]

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"LiteRT C API: {what} failed (status {status})")

    def _opaque(self, identifier: str, payload: str) -> None:
        libc = ctypes.CDLL(None)
        libc.strdup.restype, libc.strdup.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        opaque = ctypes.c_void_p()
        free = ctypes.cast(libc.free, ctypes.c_void_p)
        self._check(self.lib.LiteRtCreateOpaqueOptions(identifier.encode(), ctypes.c_void_p(libc.strdup(
            payload.encode())), free, ctypes.byref(opaque)), f"creating the {identifier} options")
        self._check(self.lib.LiteRtAddOpaqueOptions(self.options, opaque), f"adding the {identifier} options")

    def _buffer(self, signature: Any, index: int, is_input: bool) -> Any:
        lib, vp = self.lib, ctypes.c_void_p
        tensor = vp()
        by_index = lib.LiteRtGetSignatureInputTensorByIndex if is_input else lib.LiteRtGetSignatureOutputTensorByIndex
        self._check(by_index(signature, ctypes.c_size_t(index), ctypes.byref(tensor)), "reading a tensor")
        tensor_type = ctypes.create_string_buffer(1024)  # LiteRtRankedTensorType, opaque to us
        self._check(lib.LiteRtGetRankedTensorType(tensor, tensor_type), "reading a tensor type")
        requirements = vp()
        get = (lib.LiteRtGetCompiledModelInputBufferRequirements if is_input
               else lib.LiteRtGetCompiledModelOutputBufferRequirements)
        self._check(get(self.compiled, ctypes.c_size_t(0), ctypes.c_size_t(index), ctypes.byref(requirements)),
                    "reading buffer requirements")
        buffer = vp()
        self._check(lib.LiteRtCreateManagedTensorBufferFromRequirements(self.env, tensor_type, requirements,
                                                                         ctypes.byref(buffer)), "making a buffer")
        self.handles.append(buffer)
        return buffer

    def fill(self, index: int, data: bytes) -> bool:
        """Copy ``data`` into input ``index`` when its size matches (else leave zeros); True when copied."""
        size, address = ctypes.c_size_t(), ctypes.c_void_p()
        self.lib.LiteRtGetTensorBufferPackedSize(self.inputs[index], ctypes.byref(size))
        self._check(self.lib.LiteRtLockTensorBuffer(self.inputs[index], ctypes.byref(address), 1), "locking")
        try:
            fits = len(data) == size.value
            ctypes.memmove(address, data if fits else bytes(size.value), size.value)
        finally:
            self.lib.LiteRtUnlockTensorBuffer(self.inputs[index])
        return fits

    def run(self) -> None:
        ins = (ctypes.c_void_p * len(self.inputs))(*self.inputs)
        outs = (ctypes.c_void_p * len(self.outputs))(*self.outputs)
        self._check(self.lib.LiteRtRunCompiledModel(self.compiled, ctypes.c_size_t(0), ctypes.c_size_t(len(ins)), ins,
                                                    ctypes.c_size_t(len(outs)), outs), "running the model")

    def events(self) -> list[tuple[int, bytes, int, int]]:
        """The profiler's events as (type, tag, elapsed µs, meta1), copied out: their tags belong to the compiled
        model and go with it."""
        count = ctypes.c_int()
        self._check(self.lib.LiteRtGetNumProfilerEvents(self.profiler, ctypes.byref(count)), "counting events")
        events = (_Event * count.value)()
        self._check(self.lib.LiteRtGetProfilerEvents(self.profiler, count, events), "reading events")
        return [(e.event_type, bytes(e.tag or b""), int(e.elapsed_us), int(e.meta1)) for e in events]

    def close(self) -> None:
        for buffer in self.handles:
            self.lib.LiteRtDestroyTensorBuffer(buffer)
        for destroy, handle in (("LiteRtDestroyCompiledModel", self.compiled), ("LiteRtDestroyModel", self.model),
                                ("LiteRtDestroyEnvironment", self.env)):
            if handle:
                getattr(self.lib, destroy)(handle)


def _arg_number(name: str) -> int:
    found = re.search(r"(\d+)$", name)
    return int(found.group(1)) if found else 0


def profile_litert(runtime: Any, artifact: Any, inputs: Mapping[str, np.ndarray], runs: int) -> OpProfile:
    lib, why = library()
    if lib is None:
        return OpProfile(runtime.name, "unavailable", 0, 0.0, notes=(why,))
    session = _Session(lib, artifact.path, getattr(runtime.options, "threads", 0))
    notes = []
    try:
        arrays = list(inputs.values())
        order = sorted(range(len(session.input_names)), key=lambda i: _arg_number(session.input_names[i]))
        for array, index in zip(arrays, order):
            if not session.fill(index, np.ascontiguousarray(array).tobytes()):
                notes.append(f"input {session.input_names[index]} is not the float layout the job feeds: profiled "
                             "on zeros")
        session.run()  # warm-up, not profiled
        lib.LiteRtStartProfiler(session.profiler)
        for _ in range(runs):
            session.run()
        lib.LiteRtStopProfiler(session.profiler)
        events = session.events()
    finally:
        session.close()
    rows, invokes = [], []
    for event_type, raw_tag, elapsed_us, meta1 in events:
        if event_type == 1 and raw_tag == b"Invoke":
            invokes.append(elapsed_us / 1e3)
        if event_type not in (_BUILTIN_OP, _DELEGATE_OP):
            continue
        tag = raw_tag.decode(errors="replace")
        if event_type == _BUILTIN_OP:
            name, op_type, provider = f"node {meta1}", tag, "CPU builtin kernels"
        else:
            name, op_type, provider = f"xnnpack op {meta1}", xnnpack_op_type(tag), "XNNPACK delegate"
        rows.append((name, op_type, provider, elapsed_us / 1e3))
    ops = aggregate(rows, runs, family=lambda t: xnnpack_family(t) if t.startswith("XNNPACK ") else None)
    notes.append("event times are whole microseconds; XNNPACK's operators are its own (fused, folded), not the "
                 "TFLite graph's nodes")
    run_ms = statistics.median(invokes) if len(invokes) == runs else sum(op.total_ms for op in ops) / max(runs, 1)
    return OpProfile(runtime.name, "LiteRT C API profiler (CompiledModel, CPU accelerator; libLiteRt.so via ctypes)",
                     runs, run_ms, ops, tuple(notes))


OP_PROFILERS.register("litert")(profile_litert)
