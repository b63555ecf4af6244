"""The inputs of a loadable artifact (a user's own ONNX, TFLite or ExecuTorch file), read by loading it in a worker."""
from __future__ import annotations

from typing import Any

import numpy as np


def read_signature(fmt: str, path: str) -> list[dict[str, Any]]:
    """Inputs of a loadable artifact, in call order: [{name, shape, dtype}] (run inside a worker)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                 "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
                 "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
        out = []
        for i in session.get_inputs():
            if i.type not in types:
                raise ValueError(f"input {i.name!r} has unsupported type {i.type}")
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            out.append({"name": i.name, "shape": shape, "dtype": types[i.type]})
        return out
    if fmt == "executorch":
        from harness.runtimes.executorch_rt import program_signature

        return program_signature(path)
    from harness.runtimes.litert_rt import io_details, open_interpreter

    ordered, _ = io_details(open_interpreter(path))
    return [{"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
            for d in ordered]
