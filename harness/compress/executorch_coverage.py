"""What a lowered ExecuTorch program really contains: its compute ops (convolution, linear, matmul) by the precision
of their weights, and the share of them the XNNPACK delegate took (the rest run on portable kernels, one op at a
time). Read from the edge program after partitioning: each delegate keeps the graph it replaced
(``LoweredBackendModule.original_module``)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from harness.compress.coverage import MIN_WEIGHT_ELEMENTS, coverage_summary

COMPUTE_TARGETS = {"aten.convolution.default": 1, "aten.linear.default": 1, "aten.mm.default": 1,
                   "aten.bmm.default": 1, "aten.addmm.default": 2}
"""Edge-dialect compute ops → the index of their weight argument."""
_DEQUANTIZE = ("quantized_decomposed.dequantize_per_channel", "quantized_decomposed.dequantize_per_tensor",
               "quantized_decomposed.dequantize_per_channel_group", "torchao.dequantize_affine")


def _target_name(node: Any) -> str:
    """'aten.convolution.default' for an EdgeOpOverload / OpOverload node ('' for other nodes)."""
    if node.op != "call_function" or getattr(node.target, "__module__", "") == "_operator":
        return ""  # getitem and other Python operators: bookkeeping, not ops
    name = getattr(node.target, "__name__", "")
    schema = getattr(node.target, "_schema", None) or getattr(getattr(node.target, "_op", None), "_schema", None)
    if schema is not None:
        namespace, _, op = schema.name.partition("::")
        overload = schema.overload_name or "default"
        return f"{namespace}.{op}.{overload}"
    return str(name)


def _dtype_precision(dtype: Any) -> str:
    import torch

    if dtype in (torch.int8, torch.uint8, torch.qint8, torch.quint8):
        return "int8"
    if dtype in (torch.float16, torch.bfloat16):
        return "fp16"
    return "fp32"


def _weight(node: Any) -> tuple[str, int]:
    """(precision, elements) of the tensor a compute op's weight argument comes from: through a dequantize op to its
    stored integer tensor, else the argument itself."""
    source = node
    if node.op == "call_function" and _target_name(node).startswith(_DEQUANTIZE) and node.args:
        source = node.args[0]
    val = getattr(source, "meta", {}).get("val")
    if val is None or not hasattr(val, "dtype"):
        return "fp32", 0
    return _dtype_precision(val.dtype), int(val.numel())


def _count(graph: Any, ops: Counter, elements: Counter, op_types: Counter) -> int:
    """Count one graph's compute ops into ``ops`` / ``elements``; returns how many it has."""
    found = 0
    for node in graph.nodes:
        name = _target_name(node)
        if not name:
            continue
        op_types[name.removesuffix(".default")] += 1
        if name in COMPUTE_TARGETS and len(node.args) > COMPUTE_TARGETS[name]:
            precision, size = _weight(node.args[COMPUTE_TARGETS[name]])
            ops[precision] += 1
            if size >= MIN_WEIGHT_ELEMENTS:
                elements[precision] += size
            found += 1
    return found


def edge_coverage(program: Any) -> dict[str, Any]:
    """Coverage of a partitioned edge ``ExportedProgram``: ``coverage_summary``'s fractions, plus
    ``ops_delegated_fraction`` (compute ops inside a delegate / all compute ops), ``delegates`` (how many delegate
    calls, by backend) and ``portable_ops`` (op types left outside every delegate)."""
    ops: Counter = Counter()
    elements: Counter = Counter()
    op_types: Counter = Counter()
    portable: Counter = Counter()
    backends: Counter = Counter()
    delegated = 0
    for name, module in program.graph_module.named_children():
        original = getattr(module, "original_module", None)
        if original is None:
            continue
        backends[str(getattr(module, "backend_id", "?"))] += 1
        delegated += _count(original.graph, ops, elements, op_types)
    outside = _count(program.graph, ops, elements, portable)
    op_types.update(portable)
    total = delegated + outside
    summary = coverage_summary(ops, elements, op_types)
    portable.pop("executorch_call_delegate", None)
    return {**summary, "ops_delegated_fraction": delegated / total if total else 0.0,
            "delegates": dict(sorted(backends.items())), "portable_ops": dict(sorted(portable.items()))}
