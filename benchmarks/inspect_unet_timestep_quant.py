"""Where int8-static (onnxruntime quantize_static) puts QuantizeLinear on the zoo UNet's timestep path: reads the
quantized ONNX artifact of the int8-static record in benchmarks/results/profile-unet-layers-20261130.jsonl from the
artifact cache. Usage: python benchmarks/inspect_unet_timestep_quant.py"""

from pathlib import Path
import onnx
from onnx import numpy_helper
from harness.results.store import read_records
record = next(r for r in read_records(Path("benchmarks/results/profile-unet-layers-20261130.jsonl")) if r.variant == "int8-static")
model = onnx.load(str(next(Path.home().joinpath(".cache/edge-harness", record.artifact_id).glob("*.onnx"))))
inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
for node in model.graph.node:
    if node.op_type == "QuantizeLinear" and node.input[0] in ("unsqueeze", "mul_1"):
        print(node.name, "scale", float(inits[node.input[1]]))
    if node.op_type in ("Sin", "Cos"):
        print(node.op_type, "reads", node.input[0])
