"""TFLite quantization with Google's AI Edge Quantizer (``ai-edge-quantizer``), on the exported .tflite file:

- ``tflite-dynamic``: int8 weights, activations quantized on the fly (dynamic range; hybrid kernels).
- ``tflite-weight-only``: int8 weights dequantized to fp32 at load; smaller file, fp32 compute.
- ``tflite-int8``: full integer (static): int8 weights and activations from a calibration run; the model's
  inputs and outputs become int8 too (the LiteRT adapter quantizes and dequantizes them, as an app must).
- ``tflite-fp16``: fp16 weights (float casting), dequantized at load; fp32 compute.

``tflite_coverage`` reads the result back with the LiteRT interpreter: which compute ops take int8 / fp16
weights directly (quantized compute) and which weights are stored int8 / fp16 (possibly only for size).
"""
from __future__ import annotations

import shutil
from collections import Counter
from importlib.metadata import version
from typing import Any, Mapping

from harness.compress import Calibration, phase
from harness.compress.coverage import MIN_WEIGHT_ELEMENTS, coverage_summary
from harness.registry import COMPRESSORS

COMPUTE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL", "CONV_3D"}
"""TFLite ops that carry the multiply-accumulates."""
_WEIGHT_INPUT = 1
"""Index of the weight among a compute op's inputs: (input, weight, bias), or for TRANSPOSE_CONV
(output shape, weight, input, bias) — 1 either way."""


def _versions() -> dict[str, str]:
    return {"ai-edge-quantizer": version("ai-edge-quantizer"), "ai-edge-litert": version("ai-edge-litert")}


def _interpreter(path: str) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPack delegate: the op list is the model's own, not the delegate's partition.
    return Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def tflite_coverage(path: str) -> dict[str, Any]:
    """Fractions of compute ops running on int8 / fp16 weights and of weight elements stored int8 / fp16."""
    import numpy as np

    interp = _interpreter(path)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only Python view of the graph the interpreter offers
    producers = {out: op for op in ops for out in op["outputs"]}

    def precision(dtype: Any) -> str:
        dtype = np.dtype(dtype)
        return "int8" if dtype in (np.dtype(np.int8), np.dtype(np.uint8)) else "fp16" if dtype == np.float16 else "fp32"

    op_counts: Counter = Counter()
    elements: Counter = Counter()
    for op in ops:
        if op["op_name"] not in COMPUTE_OPS or len(op["inputs"]) < 2:
            continue
        weight = op["inputs"][_WEIGHT_INPUT]
        direct = precision(tensors[weight]["dtype"]) if weight in tensors else "fp32"
        op_counts[direct] += 1
        stored, source = direct, weight
        producer = producers.get(weight)
        if producer is not None and producer["op_name"] == "DEQUANTIZE":  # weight-only: stored narrow, fp32 compute
            source = producer["inputs"][0]
            stored = precision(tensors[source]["dtype"]) if source in tensors else "fp32"
        size = int(np.prod(tensors[source]["shape"])) if source in tensors else 0
        if size >= MIN_WEIGHT_ELEMENTS:
            elements[stored] += size
    return coverage_summary(op_counts, elements, Counter(op["op_name"] for op in ops))


class _TFLiteQuantizer:
    stage = "tflite"
    params: Mapping[str, Any] = {}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return _versions()

    def check(self, params: Mapping[str, Any]) -> None:
        pass

    def configure(self, quantizer: Any, params: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def compress_file(self, src: str, dst: str, params: Mapping[str, Any], calibration: Calibration) -> dict:
        from ai_edge_quantizer import quantizer

        qt = quantizer.Quantizer(src)
        self.configure(qt, params)
        calibrated = None
        if qt.need_calibration:
            with phase(f"calibrating (AI Edge Quantizer, {len(calibration)} batches)"):
                calibrated = qt.calibrate(_calibration_data(src, calibration), num_threads=1)
        with phase("quantizing (AI Edge Quantizer)"):
            result = qt.quantize(calibrated, enable_progress_report=False)
        staged = dst + ".part"
        result.export_model(staged, overwrite=True)
        shutil.move(staged, dst)
        return {"coverage": tflite_coverage(dst), "recipe": self.name,
                **({"calibration_batches": len(calibration)} if calibrated is not None else {})}


def _calibration_data(src: str, calibration: Calibration) -> dict[str, list[dict[str, Any]]]:
    """Calibration batches keyed by the model's signature and its input names (args_0, … in argument order), each
    input in the type the file declares (an int64 timestep or label becomes the int32 the export declares, as the
    LiteRT adapter does when it measures)."""
    from harness.runtimes.litert_rt import arg_number, conform_input

    interp = _interpreter(src)
    signatures = interp.get_signature_list()
    key = next(iter(signatures))
    names = sorted(signatures[key]["inputs"], key=arg_number)
    details = interp.get_signature_runner(key).get_input_details()
    return {key: [{name: conform_input(value, details[name]["dtype"], name) for name, value in zip(names, batch.values())}
                  for batch in calibration]}


@COMPRESSORS.register("tflite-dynamic")
class TFLiteDynamic(_TFLiteQuantizer):
    name = "tflite-dynamic"
    description = "TFLite dynamic-range int8 (AI Edge Quantizer): int8 weights, activations quantized on the fly"

    def configure(self, quantizer: Any, params: Mapping[str, Any]) -> None:
        from ai_edge_quantizer import recipe

        quantizer.load_quantization_recipe(recipe.dynamic_wi8_afp32())


@COMPRESSORS.register("tflite-weight-only")
class TFLiteWeightOnly(_TFLiteQuantizer):
    name = "tflite-weight-only"
    description = "TFLite int8 weight-only (AI Edge Quantizer): smaller file, weights dequantized, fp32 compute"

    def configure(self, quantizer: Any, params: Mapping[str, Any]) -> None:
        from ai_edge_quantizer import recipe

        quantizer.load_quantization_recipe(recipe.weight_only_wi8_afp32())


@COMPRESSORS.register("tflite-int8")
class TFLiteFullInteger(_TFLiteQuantizer):
    name = "tflite-int8"
    description = "TFLite full-integer int8 (AI Edge Quantizer, static, calibrated); int8 model inputs/outputs"
    params: Mapping[str, Any] = {"activation_bits": 8, "calibration_batches": 16}

    def check(self, params: Mapping[str, Any]) -> None:
        if params["activation_bits"] not in (8, 16):
            raise ValueError(f"activation_bits must be 8 or 16, not {params['activation_bits']}")
        if params["calibration_batches"] < 1:
            raise ValueError("calibration_batches must be at least 1")

    def configure(self, quantizer: Any, params: Mapping[str, Any]) -> None:
        from ai_edge_quantizer import recipe

        quantizer.load_quantization_recipe(recipe.static_wi8_ai8() if params["activation_bits"] == 8
                                           else recipe.static_wi8_ai16())


@COMPRESSORS.register("tflite-fp16")
class TFLiteFloat16(_TFLiteQuantizer):
    name = "tflite-fp16"
    description = "TFLite fp16 weights (AI Edge Quantizer float casting), dequantized at load, fp32 compute"

    def configure(self, quantizer: Any, params: Mapping[str, Any]) -> None:
        from ai_edge_quantizer import recipe
        from ai_edge_quantizer.qtyping import TFLOperationName

        quantizer.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                         algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
