"""Intermediate tensors of one inference, read from the runtime that ran it, for "where fidelity breaks":
PyTorch eager — every leaf module's output (forward hooks, keyed by module path); ONNX Runtime — every output of
the artifact (the harness sends a probe copy whose layer boundaries are extra outputs, ``exporters/onnx_probe``);
LiteRT — every float tensor an op wrote, kept by ``experimental_preserve_all_tensors`` (keyed by tensor name: the
converter's module scope chains)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


TENSOR_RUNTIMES = ("torch", "torch-cuda", "onnxruntime", "onnxruntime-cuda", "litert")
"""Runtimes whose intermediate tensors are read (ExecuTorch's would need its ETDump debug buffer: not read yet)."""


def unsupported_note(runtime: str) -> str:
    return f"reading intermediate tensors is not supported for the runtime {runtime!r}"


def intermediate_tensors(runtime: Any, artifact: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{name: float32 array} of one inference on ``inputs``; a runtime it cannot read is a ValueError naming it."""
    name = runtime.name
    if name in ("torch", "torch-cuda"):
        return _torch(runtime, artifact, inputs)
    if name in ("onnxruntime", "onnxruntime-cuda"):
        runtime.load(artifact)
        outputs = runtime.infer(inputs)
        names = [o.name for o in runtime.session.get_outputs()]
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, outputs)
                if np.asarray(v).dtype.kind == "f"}
    if name == "litert":
        return _litert(runtime, artifact, inputs)
    raise ValueError(unsupported_note(name))


def _torch(runtime: Any, artifact: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    runtime.load(artifact)
    found: dict[str, np.ndarray] = {}
    handles = []
    for path, module in runtime.model.named_modules():
        if path and not any(True for _ in module.children()):
            def record(module: Any, args: Any, out: Any, path: str = path) -> None:
                tensor = out[0] if isinstance(out, (tuple, list)) and out else out
                if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                    found[path] = tensor.detach().float().cpu().numpy().copy()
            handles.append(module.register_forward_hook(record))
    try:
        runtime.infer(inputs)
        runtime.sync()
    finally:
        for handle in handles:
            handle.remove()
    return found


def _litert(runtime: Any, artifact: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float tensors the model's ops wrote, in the order the ops run (the last op of a module is its output)."""
    runtime.preserve_all_tensors = True
    runtime.load(artifact)
    runtime.infer(inputs)
    interp = runtime.interpreter
    details = {d["index"]: d for d in interp.get_tensor_details()}
    found: dict[str, np.ndarray] = {}
    for op in interp._get_ops_details():
        if op["op_name"] == "DELEGATE":
            continue
        for index in op["outputs"]:
            detail = details.get(int(index))
            if detail is None or np.dtype(detail["dtype"]).kind != "f":
                continue
            try:
                found[detail["name"]] = np.asarray(interp.get_tensor(detail["index"]), dtype=np.float32).copy()
            except ValueError:  # a tensor a delegate kept to itself
                continue
    return found


def fused_activations(path: str) -> dict[str, str]:
    """{output tensor name: activation} for the ops of a .tflite file that apply one after their own work (a
    FULLY_CONNECTED with a fused RELU writes relu(x·W + b) under the Linear module's name); {} when the schema
    reader (``ai_edge_litert.schema_py_generated``) is not installed."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return {}
    model = schema.Model.GetRootAsModel(open(path, "rb").read(), 0)
    option_names = {v: k for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
    activation_names = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
    out: dict[str, str] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            table, cls = op.BuiltinOptions(), getattr(schema, option_names.get(op.BuiltinOptionsType(), ""), None)
            if table is None or cls is None:
                continue
            options = cls()
            options.Init(table.Bytes, table.Pos)
            if not hasattr(options, "FusedActivationFunction"):
                continue
            activation = activation_names.get(options.FusedActivationFunction(), "NONE")
            if activation != "NONE":
                for j in range(op.OutputsLength()):
                    out[graph.Tensors(op.Outputs(j)).Name().decode(errors="replace")] = activation
    return out
