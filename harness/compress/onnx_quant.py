"""Post-export compression of ONNX files with ONNX Runtime's own tools.

- ``quant-dynamic``: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantized at
  run time). It quantizes MatMul/Gemm-style ops only: a ConvTranspose generator comes out unchanged, and
  the coverage figures say so.
- ``quant-static``: ``quantize_static`` with a calibration reader over latents the evaluation never uses,
  QDQ (or QOperator) format, per-channel weights optional.
- ``fp16``: ``onnxruntime.transformers.float16.convert_float_to_float16`` with fp32 inputs and outputs kept.

Every result carries the coverage of ``harness.compress.coverage``: the share of weights and compute ops
that really became int8 / fp16.
"""
from __future__ import annotations

import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from harness.compress import Calibration, check_choice, phase, refuse_missing_layers
from harness.compress.coverage import onnx_coverage
from harness.registry import COMPRESSORS


RECIPE_VERSION = "2"
"""Bumped when the harness's own steps around ONNX Runtime's quantizer change (2: unshared initializers)."""


def _versions() -> dict[str, str]:
    return {"onnxruntime": version("onnxruntime"), "onnx": version("onnx"), "edge-harness-recipe": RECIPE_VERSION}


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def _preprocessed(src: str, folder: str) -> str:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation) before quantizing, then
    one copy of each initializer per consumer: the static quantizer refuses a weight shared by two ops."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = str(Path(folder) / "preprocessed.onnx")
    quant_pre_process(src, out, skip_symbolic_shape=True)
    model = onnx.load(out)
    if unshare_initializers(model.graph):
        onnx.save(model, out)
    return out


def unshare_initializers(graph: Any) -> int:
    """Give every node its own copy of an initializer several nodes read; returns the copies made."""
    import onnx

    initializers = {init.name: init for init in graph.initializer}
    seen: set[str] = set()
    copies = 0
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name not in initializers:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__copy{copies}"
                graph.initializer.append(copy)
                node.input[i] = copy.name
                copies += 1
            seen.add(name)
    return copies


class _Quantizer:
    stage = "onnx"

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return _versions()


@COMPRESSORS.register("quant-dynamic")
class DynamicQuantization(_Quantizer):
    name = "quant-dynamic"
    description = "ONNX Runtime dynamic int8 quantization (quantize_dynamic)"
    params: Mapping[str, Any] = {"weight_type": "int8", "per_channel": False}

    def check(self, params: Mapping[str, Any]) -> None:
        check_choice(params, "weight_type", ("int8", "uint8"))

    def compress_file(self, src: str, dst: str, params: Mapping[str, Any], calibration: Calibration) -> dict:
        from onnxruntime.quantization import quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp, phase("quantizing (onnxruntime quantize_dynamic)"):
            quantize_dynamic(_preprocessed(src, tmp), dst, weight_type=_quant_type(params["weight_type"]),
                             per_channel=params["per_channel"])
        return {"coverage": onnx_coverage(dst)}


def _reader(batches: Calibration) -> Any:
    """A CalibrationDataReader over a fixed list of input batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[Mapping[str, Any]] = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._batches, None)
            return dict(batch) if batch is not None else None

    return Reader()


@COMPRESSORS.register("quant-static")
class StaticQuantization(_Quantizer):
    name = "quant-static"
    description = "ONNX Runtime static int8 quantization (quantize_static) with calibration"
    params: Mapping[str, Any] = {"format": "qdq", "per_channel": True, "activation_type": "int8",
                                 "weight_type": "int8", "calibrate_method": "minmax", "calibration_batches": 16,
                                 "keep_float_before": [], "keep_float_layers": []}
    """``keep_float_before``: op types (e.g. ``["Sin", "Cos"]``) whose inputs, and every node upstream of them, stay
    float — a diffusion UNet's sinusoidal timestep embedding, whose phases int8 cannot hold.
    ``keep_float_layers``: module paths of the PyTorch model (``"time_mlp.0"``, as the layers pass names them) whose
    nodes stay float, with what feeds them up to the nearest layer with weights (``_feeding``): mixed precision, the layers where fidelity breaks kept out of int8 (``harness optimize``
    finds them)."""

    def check(self, params: Mapping[str, Any]) -> None:
        if not all(isinstance(op, str) and op for op in params["keep_float_before"]):
            raise ValueError("keep_float_before must list ONNX op types (strings), e.g. [\"Sin\", \"Cos\"]")
        if not all(isinstance(path, str) and path for path in params["keep_float_layers"]):
            raise ValueError("keep_float_layers must list module paths (strings), e.g. [\"time_mlp.0\"]")
        check_choice(params, "format", ("qdq", "qoperator"))
        check_choice(params, "activation_type", ("int8", "uint8"))
        check_choice(params, "weight_type", ("int8", "uint8"))
        check_choice(params, "calibrate_method", ("minmax", "entropy", "percentile"))
        if params["calibration_batches"] < 1:
            raise ValueError("calibration_batches must be at least 1")

    def compress_file(self, src: str, dst: str, params: Mapping[str, Any], calibration: Calibration) -> dict:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        batches = list(calibration)[: params["calibration_batches"]]
        reader = _reader(batches)
        with tempfile.TemporaryDirectory() as tmp, \
                phase(f"calibrating and quantizing (onnxruntime quantize_static, {len(batches)} batches)"):
            model = _preprocessed(src, tmp)
            kept = sorted(set(upstream_nodes(model, params["keep_float_before"]))
                          | set(layer_nodes(model, params["keep_float_layers"])))
            quantize_static(
                model, dst, reader, nodes_to_exclude=kept,
                quant_format=QuantFormat.QDQ if params["format"] == "qdq" else QuantFormat.QOperator,
                per_channel=params["per_channel"],
                activation_type=_quant_type(params["activation_type"]),
                weight_type=_quant_type(params["weight_type"]),
                calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                  "percentile": CalibrationMethod.Percentile}[params["calibrate_method"]],
            )
        return {"calibration_batches": len(batches), "coverage": onnx_coverage(dst),
                **({"kept_float": kept} if params["keep_float_before"] or params["keep_float_layers"] else {})}


def upstream_nodes(path: str, op_types: Sequence[str]) -> list[str]:
    """Names of the nodes of type ``op_types`` in an ONNX file and of every node upstream of them."""
    if not op_types:
        return []
    import onnx

    graph = onnx.load(path).graph
    producers = {out: node for node in graph.node for out in node.output}
    stack = [node for node in graph.node if node.op_type in set(op_types)]
    names = {node.name for node in stack}
    while stack:
        for name in stack.pop().input:
            node = producers.get(name)
            if node is not None and node.name not in names:
                names.add(node.name)
                stack.append(node)
    return sorted(names)


def layer_nodes(path: str, layers: Sequence[str]) -> list[str]:
    """Names of the nodes an ONNX file's exporter recorded inside the modules ``layers`` (their scope metadata,
    ``harness.exporters.onnx_probe``); a one-line error naming the layers it has when one is not found."""
    if not layers:
        return []
    import onnx

    from harness.exporters.onnx_probe import node_scopes

    found: dict[str, list[str]] = {layer: [] for layer in layers}
    seen: set[str] = set()
    for node in onnx.load(path).graph.node:
        scopes = node_scopes(node)
        seen.update(scopes)
        for layer in layers:
            if layer in scopes:
                found[layer].append(node.name)
    refuse_missing_layers(found, seen, "the ONNX file")
    names = {name for nodes in found.values() for name in nodes}
    return sorted(names | _feeding(onnx.load(path).graph, names))


COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
"""Ops with weights: where the walk upstream from a layer kept float stops (that layer included)."""


def _feeding(graph: Any, names: set[str]) -> set[str]:
    """The nodes that feed ``names``: upstream through ops without weights (reshapes, activations, adds) up to and
    including the nearest layer with weights. A quantized producer writes its output in int8 (a Q/DQ pair on it),
    so a layer kept float still reads an int8-rounded input unless what feeds it is kept float too."""
    producers = {out: node for node in graph.node for out in node.output}
    by_name = {node.name: node for node in graph.node}
    stack, found = [by_name[n] for n in names if n in by_name], set()
    while stack:
        for tensor in stack.pop().input:
            node = producers.get(tensor)
            if node is None or node.name in names or node.name in found:
                continue
            found.add(node.name)
            if node.op_type not in COMPUTE_OPS:
                stack.append(node)
    return found


@COMPRESSORS.register("fp16")
class Float16(_Quantizer):
    name = "fp16"
    description = "fp16 weights and compute (ONNX Runtime's float16 converter), fp32 inputs/outputs"
    params: Mapping[str, Any] = {}

    def check(self, params: Mapping[str, Any]) -> None:
        """No parameters."""

    def compress_file(self, src: str, dst: str, params: Mapping[str, Any], calibration: Calibration) -> dict:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with phase("converting to float16 (onnxruntime float16 converter)"):
            model = convert_float_to_float16(onnx.load(src), keep_io_types=True)
        onnx.save(model, dst)
        return {"coverage": onnx_coverage(dst)}
