"""An ONNX artifact with its layer boundaries exposed as extra graph outputs, for "where fidelity breaks". The
exporter (``torch.onnx.export(dynamo=True)``) records each node's module scope (``pkg.torch.onnx.name_scopes``); a
module's boundary is the output of the last node in its scope. Quantizers keep those nodes and their metadata (the
Q/DQ nodes they add have none), so a quantized model is probed the same way."""
from __future__ import annotations

import ast
from pathlib import Path

SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def _module_path(scopes: str) -> str:
    try:
        parts = ast.literal_eval(scopes)
    except (ValueError, SyntaxError):
        return ""
    # ['', 'net', 'net.1', '_native_batch_norm…']: the enclosing modules' paths, outermost first, then the op
    return str(parts[-2]) if isinstance(parts, list) and len(parts) > 2 else ""


def node_scopes(node: object) -> list[str]:
    """The module paths enclosing an ONNX node (outermost first; [] without the exporter's scope metadata)."""
    meta = {p.key: p.value for p in getattr(node, "metadata_props", ())}
    try:
        parts = ast.literal_eval(meta.get(SCOPES_KEY, "[]"))
    except (ValueError, SyntaxError):
        return []
    return [str(p) for p in parts[:-1]] if isinstance(parts, list) else []


def probe_onnx(source: str | Path, target: str | Path) -> dict[str, str]:
    """Write ``source`` with every module's boundary tensor added as a graph output to ``target``; return
    {tensor name: module path} for every boundary (in graph order), the model's own outputs included."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    graph = model.graph
    try:  # each boundary's own element type (an fp16 model's tensors are float16)
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        types = {v.name: v.type.tensor_type.elem_type for v in inferred if v.type.tensor_type.elem_type}
    except Exception:  # an inference the checker cannot do: float, the common case
        types = {}
    last: dict[str, str] = {}
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        path = _module_path(meta.get(SCOPES_KEY, ""))
        if path and node.output and node.output[0]:
            last[path] = node.output[0]
    existing = {o.name for o in graph.output}
    added: dict[str, str] = {}
    for path, tensor in last.items():
        if tensor not in added:
            if tensor not in existing:  # a boundary that is already a model output is read as one
                graph.output.append(helper.make_tensor_value_info(tensor, types.get(tensor, TensorProto.FLOAT), None))
            added[tensor] = path
    onnx.save(model, str(target))
    return added
