"""TFLite quantization (AI Edge Quantizer) on a tiny exported generator: what each recipe quantizes, as read
back from the file, and that the LiteRT adapter runs each result with float inputs and outputs."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from harness.compress import calibration_batches, compressor, resolve_params
from harness.analysis.fidelity import psnr
from harness.model_helpers import latent_inputs
from harness.runtimes import RuntimeOptions, runtime_class
from harness.types import Artifact

pytestmark = pytest.mark.slow
MAKE = latent_inputs((8,))


class _FcDeconv(nn.Module):
    """Linear → Unflatten → ConvT → ReLU → ConvT → tanh (1×16×16): FULLY_CONNECTED and TRANSPOSE_CONV ops."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16 * 4 * 4)
        self.net = nn.Sequential(nn.Unflatten(1, (16, 4, 4)), nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z))


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    from harness.exporters import exporter_for_format

    folder = tmp_path_factory.mktemp("tflite-quant")
    torch.manual_seed(0)
    model = _FcDeconv().eval()
    path = folder / "fp32.tflite"
    inputs = MAKE(2, 0)
    exporter_for_format("tflite").export(model, inputs, str(path))
    return folder, str(path)


def _run(path: str) -> np.ndarray:
    rt = runtime_class("litert")(RuntimeOptions(threads=1))
    rt.load(Artifact(id="x", format="tflite", path=path, bytes=0, model="m", variant="v", batch_size=2,
                     parent_id=None, recipe={}))
    (out,) = rt.infer(MAKE(2, 0))
    return np.asarray(out, np.float32)


def _quantize(tiny_tflite, method: str, **params) -> tuple[dict, str, np.ndarray]:
    folder, src = tiny_tflite
    dst = str(folder / f"{method}.tflite")
    info = compressor(method).compress_file(src, dst, resolve_params(method, params), calibration_batches(MAKE, 2, 0, 4))
    return info, dst, _run(src)


def test_dynamic_range_quantizes_every_compute_op(tiny_tflite):
    info, dst, ref = _quantize(tiny_tflite, "tflite-dynamic")
    cov = info["coverage"]
    assert cov["compute_ops"] == 3 and cov["ops_int8_fraction"] == 1.0 and cov["weights_int8_fraction"] == 1.0
    assert 25.0 < psnr(_run(dst), ref) < 80.0


def test_weight_only_stores_int8_but_computes_in_fp32(tiny_tflite):
    info, dst, ref = _quantize(tiny_tflite, "tflite-weight-only")
    cov = info["coverage"]
    assert cov["ops_int8_fraction"] == 0.0 and cov["weights_int8_fraction"] == 1.0
    assert cov["op_types"]["DEQUANTIZE"] == 3
    assert 25.0 < psnr(_run(dst), ref) < 80.0


def test_full_integer_quantization_runs_with_float_inputs_through_the_adapter(tiny_tflite):
    info, dst, ref = _quantize(tiny_tflite, "tflite-int8", calibration_batches=4)
    assert info["calibration_batches"] == 4
    assert info["coverage"]["ops_int8_fraction"] == 1.0
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=dst)
    assert interp.get_input_details()[0]["dtype"] == np.int8  # int8 IO: the adapter converts
    out = _run(dst)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert 15.0 < psnr(out, ref) < 80.0


def test_fp16_casts_the_weights(tiny_tflite):
    info, dst, ref = _quantize(tiny_tflite, "tflite-fp16")
    cov = info["coverage"]
    assert cov["weights_fp16_fraction"] == 1.0 and cov["ops_int8_fraction"] == 0.0
    assert psnr(_run(dst), ref) > 60.0  # fp16 weights: nearly exact


def test_tflite_variants_load_in_suites_and_refuse_an_onnx_parent(tmp_path):
    from harness.errors import HarnessInputError
    from harness.config.suite import load_suite

    path = tmp_path / "s.toml"
    path.write_text('name = "t"\n[[variants]]\nmethod = "tflite-int8"\ncalibration_batches = 2\n'
                    '[[variants]]\nmethod = "fp16"\n[[variants]]\nmethod = "tflite-fp16"\nafter = "fp16"\n')
    with pytest.raises(HarnessInputError, match="tflite-fp16 works on a tflite file, but 'fp16' is an onnx file"):
        load_suite(path)
    path.write_text('name = "t"\n[[variants]]\nmethod = "tflite-int8"\nactivation_bits = 4\n')
    with pytest.raises(HarnessInputError, match="activation_bits must be 8 or 16"):
        load_suite(path)
