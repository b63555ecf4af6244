"""What a compressed ONNX file really contains: the fraction of weights and of compute ops that are int8 or
fp16. A "quantized" model whose compute ops are all still fp32 changed nothing, and the report says so."""
from __future__ import annotations

from collections import Counter
from typing import Any

COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
"""Float ops that carry the multiply-accumulates."""
INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QLinearConvTranspose",
               "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
"""Ops that compute in integers (QOperator format and dynamic quantization)."""
_INT8_TYPES = {2, 3}  # onnx.TensorProto.UINT8, INT8
_FP16 = 10  # onnx.TensorProto.FLOAT16
MIN_WEIGHT_ELEMENTS = 16
"""Initializers (tensors) smaller than this (scales, zero points, shapes) are not counted as weights."""


def onnx_coverage(path: str) -> dict[str, Any]:
    """Fractions of weight elements and of compute ops that are int8 / fp16, with the op counts."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    elements: Counter = Counter()
    for init in graph.initializer:
        n = int(numpy_helper.to_array(init).size) if init.dims else 1
        if n >= MIN_WEIGHT_ELEMENTS:
            elements[_precision(init.data_type)] += n

    def weight_precision(name: str) -> str:
        """Precision of the weight feeding a compute op (through DequantizeLinear or Cast when present)."""
        if name in initializers:
            return _precision(initializers[name].data_type)
        node = producers.get(name)
        if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            return _precision(initializers[node.input[0]].data_type)
        if node is not None and node.op_type == "Cast" and node.input[0] in initializers:
            return _precision(initializers[node.input[0]].data_type)
        return "fp32"

    ops: Counter = Counter()
    for node in graph.node:
        if node.op_type in INTEGER_OPS:
            ops["int8"] += 1
        elif node.op_type in COMPUTE_OPS and len(node.input) > 1:
            ops[weight_precision(node.input[1])] += 1
    return coverage_summary(ops, elements, Counter(node.op_type for node in graph.node))


def coverage_summary(ops: Counter, elements: Counter, op_types: Counter) -> dict[str, Any]:
    """The coverage figures from counts of compute ops and of weight elements per precision (int8/fp16/fp32)."""
    total_ops, total_elements = sum(ops.values()), sum(elements.values())
    return {
        "compute_ops": total_ops,
        "ops_int8_fraction": ops["int8"] / total_ops if total_ops else 0.0,
        "ops_fp16_fraction": ops["fp16"] / total_ops if total_ops else 0.0,
        "weights_int8_fraction": elements["int8"] / total_elements if total_elements else 0.0,
        "weights_fp16_fraction": elements["fp16"] / total_elements if total_elements else 0.0,
        "op_types": dict(sorted(op_types.items())),
    }


def _precision(data_type: int) -> str:
    if data_type in _INT8_TYPES:
        return "int8"
    if data_type == _FP16:
        return "fp16"
    return "fp32"


def quantized_fraction(coverage: dict[str, Any]) -> float:
    """Share of compute ops no longer in fp32 (int8 or fp16)."""
    return coverage.get("ops_int8_fraction", 0.0) + coverage.get("ops_fp16_fraction", 0.0)
