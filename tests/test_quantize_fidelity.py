"""ONNX quantization coverage (hand-built graphs and real quantizer output), fidelity metrics, and the
report's verdicts on variants."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.compress import calibration_batches, compressor, resolve_params
from harness.compress.coverage import onnx_coverage
from harness.prepare.artifacts import max_abs_error, output_scale
from harness.analysis.fidelity import data_range, output_fidelity, psnr
from harness.report.compression import compression_frame


def _init(name: str, shape: tuple[int, ...], dtype: type) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def test_coverage_counts_int8_fp16_and_fp32_compute_ops_and_weights(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w_fp32"], ["a"]),
        helper.make_node("DequantizeLinear", ["w_int8", "scale", "zp"], ["w_dq"]),
        helper.make_node("ConvTranspose", ["a", "w_dq"], ["b"]),
        helper.make_node("MatMulInteger", ["b_q", "w_int8_2"], ["c"]),
        helper.make_node("Cast", ["w_fp16"], ["w_cast"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["c_f", "w_cast"], ["y"]),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    inits = [_init("w_fp32", (4, 1, 3, 3), np.float32),  # 36 elements
             _init("w_int8", (4, 4, 2, 2), np.int8),  # 64
             _init("w_int8_2", (10, 10), np.uint8),  # 100
             _init("w_fp16", (10, 10), np.float16),  # 100
             _init("scale", (), np.float32), _init("zp", (), np.int8)]  # too small to count as weights
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    cov = onnx_coverage(str(path))
    assert cov["compute_ops"] == 4
    assert cov["ops_int8_fraction"] == 0.5  # ConvTranspose on a dequantized int8 weight, MatMulInteger
    assert cov["ops_fp16_fraction"] == 0.25  # Gemm on a cast fp16 weight
    assert cov["weights_int8_fraction"] == pytest.approx(164 / 300)
    assert cov["weights_fp16_fraction"] == pytest.approx(100 / 300)
    assert cov["op_types"]["Relu"] == 1


def test_initializers_read_by_several_nodes_are_copied_for_the_static_quantizer():
    from harness.compress.onnx_quant import unshare_initializers

    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Conv", ["a", "w"], ["b"]),
             helper.make_node("Add", ["b", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [_init("w", (1, 1, 1, 1), np.float32), _init("w2", (1,), np.float32)])
    assert unshare_initializers(graph) == 1
    assert [list(n.input) for n in graph.node] == [["x", "w"], ["a", "w__copy0"], ["b", "w2"]]
    assert {i.name for i in graph.initializer} == {"w", "w2", "w__copy0"}
    assert unshare_initializers(graph) == 0


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """The tiny deconv generator exported to ONNX (batch 2), plus a Linear-headed MLP for dynamic quantization."""
    import torch
    from torch import nn

    from harness.exporters import exporter_for_format
    from harness.model_helpers import latent_inputs, seeded

    folder = tmp_path_factory.mktemp("quant")
    torch.manual_seed(0)
    deconv = nn.Sequential(nn.ConvTranspose2d(8, 16, 4, 1, 0), nn.ReLU(), nn.ConvTranspose2d(16, 1, 4, 2, 1),
                           nn.Tanh()).eval()
    mlp = seeded(lambda: nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh()), 0)
    out = {}
    for name, model, shape in (("deconv", deconv, (8, 1, 1)), ("mlp", mlp, (8,))):
        make = latent_inputs(shape)
        path = folder / f"{name}.onnx"
        exporter_for_format("onnx").export(model, make(2, 0), str(path))
        out[name] = (str(path), make)
    return folder, out


def _run(path: str, inputs: dict) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, inputs)[0]


@pytest.mark.slow
def test_dynamic_quantization_leaves_a_conv_transpose_generator_untouched_but_quantizes_linear_layers(tiny_onnx):
    folder, models = tiny_onnx
    comp = compressor("quant-dynamic")
    for name, expected_int8 in (("deconv", 0.0), ("mlp", 1.0)):
        src, make = models[name]
        dst = str(folder / f"{name}-dyn.onnx")
        info = comp.compress_file(src, dst, resolve_params("quant-dynamic", {}), [])
        assert info["coverage"]["ops_int8_fraction"] == expected_int8
        same = np.array_equal(_run(src, make(2, 0)), _run(dst, make(2, 0)))
        assert same == (expected_int8 == 0.0)  # untouched graph → identical outputs; quantized → not


def _static(tiny_onnx, fmt: str) -> tuple[dict, str, str, object]:
    """Statically quantize the tiny deconv generator (4 calibration batches): (info, src, dst, make_inputs)."""
    folder, models = tiny_onnx
    src, make = models["deconv"]
    dst = str(folder / f"deconv-static-{fmt}.onnx")
    params = resolve_params("quant-static", {"format": fmt, "calibration_batches": 4})
    return compressor("quant-static").compress_file(src, dst, params, calibration_batches(make, 2, 0, 8)), src, dst, make


@pytest.mark.slow
def test_static_qdq_quantization_quantizes_every_compute_op_and_stays_close(tiny_onnx):
    info, src, dst, make = _static(tiny_onnx, "qdq")
    assert info["calibration_batches"] == 4
    assert info["coverage"]["ops_int8_fraction"] == 1.0
    assert info["coverage"]["weights_int8_fraction"] > 0.9
    assert info["coverage"]["op_types"]["DequantizeLinear"] >= 2
    ref, out = _run(src, make(2, 0)), _run(dst, make(2, 0))
    assert 25.0 < psnr(out, ref) < 80.0  # quantized: close, not identical


@pytest.mark.slow
def test_static_qoperator_quantization_has_no_conv_transpose_and_coverage_says_so(tiny_onnx):
    """A trap measured here: ONNX Runtime's QOperator format has no integer ConvTranspose."""
    info, _, _, _ = _static(tiny_onnx, "qoperator")
    assert info["coverage"]["ops_int8_fraction"] == 0.0
    assert info["coverage"]["op_types"]["ConvTranspose"] == 2


@pytest.mark.slow
def test_fp16_halves_the_weights_and_keeps_fp32_io(tiny_onnx):
    folder, models = tiny_onnx
    src, make = models["deconv"]
    dst = str(folder / "deconv-fp16.onnx")
    info = compressor("fp16").compress_file(src, dst, {}, [])
    assert info["coverage"]["ops_fp16_fraction"] == 1.0 and info["coverage"]["weights_fp16_fraction"] == 1.0
    out = _run(dst, make(2, 0))
    assert out.dtype == np.float32
    assert psnr(out, _run(src, make(2, 0))) > 50.0


def test_psnr_matches_hand_computed_values():
    ref = np.array([0.0, 0.5, 1.0, 0.25], np.float32)  # in [0, 1]: peak 1
    out = ref + np.array([0.1, -0.1, 0.0, 0.0], np.float32)
    mse = (0.01 + 0.01) / 4
    assert psnr(out, ref) == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    tanh_ref = np.array([-1.0, 0.0, 1.0, 0.5])  # in [-1, 1]: peak 2
    assert psnr(tanh_ref + 0.1, tanh_ref) == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-6)
    wide = np.array([0.0, 10.0])  # outside both: its own range
    assert data_range(wide) == (10.0, "range of the reference")
    assert psnr(wide, wide) == math.inf


def test_psnr_agrees_with_scikit_image():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed")
    rng = np.random.default_rng(0)
    for lo in (0.0, -1.0):
        ref = rng.uniform(lo, 1.0, (2, 1, 8, 8))
        out = np.clip(ref + rng.normal(0, 0.05, ref.shape), lo, 1.0)
        assert psnr(out, ref) == pytest.approx(metrics.peak_signal_noise_ratio(ref, out), rel=1e-9)


def test_output_fidelity_reports_max_abs_and_psnr_and_rejects_other_shapes():
    ref = [np.zeros((2, 3), np.float32), np.ones((2,), np.float32)]
    out = [np.full((2, 3), 0.1, np.float32), np.ones((2,), np.float32)]
    measured = {m.metric: m for m in output_fidelity(out, ref)}
    assert measured["max_abs_error"].value == pytest.approx(0.1)
    mse = 6 * 0.01 / 8
    assert measured["psnr"].value == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    assert measured["nonfinite_outputs"].value == 0.0
    # identical: no infinite PSNR
    assert [m.metric for m in output_fidelity(ref, ref)] == ["nonfinite_outputs", "max_abs_error"]
    assert output_fidelity([np.zeros((3, 2))], [np.zeros((2, 3))]) is None
    assert output_fidelity(ref[:1], ref) is None


def test_nonfinite_outputs_are_a_finding_never_a_nan_figure():
    ref = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    # a variant that overflows where the reference is finite: the share is recorded, no error figure at all
    out = ref.copy()
    out[0, 1], out[1, 2] = np.nan, np.inf
    measured = {m.metric: m for m in output_fidelity([out], [ref])}
    assert set(measured) == {"nonfinite_outputs", "nonfinite_mismatch"}
    assert measured["nonfinite_outputs"].value == pytest.approx(2 / 8)
    assert measured["nonfinite_mismatch"].value == pytest.approx(2 / 8)
    assert "2 differ from fp32 PyTorch" in measured["nonfinite_outputs"].note
    # a variant that is finite where the model itself is NaN differs from it too: no error figure either
    ref_nan = ref.copy()
    ref_nan[0, 0] = np.nan
    measured = {m.metric: m for m in output_fidelity([ref], [ref_nan])}
    assert set(measured) == {"nonfinite_outputs", "nonfinite_mismatch"}
    assert measured["nonfinite_outputs"].value == 0.0 and measured["nonfinite_mismatch"].value == 1 / 8
    # the model itself is NaN there, and the variant reproduces it: figures over the finite values
    ref_nan = ref.copy()
    ref_nan[0, 1] = np.nan
    out = ref_nan + 0.01
    measured = {m.metric: m for m in output_fidelity([out], [ref_nan])}
    assert measured["nonfinite_outputs"].value == pytest.approx(1 / 8)
    assert measured["max_abs_error"].value == pytest.approx(0.01, rel=1e-4)
    assert math.isfinite(measured["psnr"].value)
    # -inf against +inf is a difference, NaN against NaN is not
    assert max_abs_error([np.array([np.nan, 1.0])], [np.array([np.nan, 1.0])]) == 0.0
    assert max_abs_error([np.array([np.inf])], [np.array([np.inf])]) == 0.0
    assert max_abs_error([np.array([-np.inf])], [np.array([np.inf])]) == math.inf
    assert max_abs_error([np.array([np.nan])], [np.array([0.0])]) == math.inf
    assert output_scale([np.array([np.nan, -3.0, np.inf])]) == 3.0


def _row(variant, fmt, runtime, p50, lo, hi, **extra):
    base = dict(model="g", target="x86-cpu", batch_size=1, variant=variant, format=fmt, runtime=runtime,
                status="ok", latency_p50_ms=p50, latency_ci_low_ms=lo, latency_ci_high_ms=hi, size_mb=10.0,
                gzip_mb=9.0, max_abs_error=1e-7, psnr_db=150.0, weight_sparsity=None,
                ops_quantized_fraction=None)
    return base | extra


def test_report_computes_speedups_and_flags_the_traps():
    summary = pd.DataFrame([
        _row("fp32", "onnx", "onnxruntime", 1.0, 0.98, 1.02),
        _row("fp32", "tflite", "litert", 8.0, 7.9, 8.1),
        _row("dyn", "onnx", "onnxruntime", 1.01, 0.99, 1.03, ops_quantized_fraction=0.0),  # untouched copy
        _row("qdq", "onnx", "onnxruntime", 2.4, 2.3, 2.5, size_mb=2.5, max_abs_error=0.01, psnr_db=60.0,
             ops_quantized_fraction=1.0),
        _row("l1", "tflite", "litert", 7.9, 7.8, 8.0, gzip_mb=5.0, weight_sparsity=0.5, max_abs_error=0.1, psnr_db=34.0),
        _row("ch", "tflite", "litert", 2.0, 1.9, 2.1, size_mb=3.0, max_abs_error=0.3, psnr_db=27.0),
        _row("ch", "onnx", "onnxruntime", 0.25, 0.24, 0.26, size_mb=3.0, max_abs_error=0.3, psnr_db=27.0),
    ])
    out = compression_frame(summary).set_index(["variant", "format"])
    assert out.loc[("ch", "onnx"), "speedup_vs_fp32_onnxruntime"] == pytest.approx(4.0)
    assert out.loc[("ch", "tflite"), "speedup_vs_fp32_onnxruntime"] == pytest.approx(0.5)
    assert out.loc[("ch", "tflite"), "speedup_vs_fp32_same_runtime"] == pytest.approx(4.0)
    assert out.loc[("qdq", "onnx"), "size_ratio_vs_fp32"] == pytest.approx(0.25)
    assert out.loc[("l1", "tflite"), "gzip_ratio_vs_fp32"] == pytest.approx(5 / 9)
    flags = out["flags"].to_dict()
    assert "no compute op was quantized" in flags[("dyn", "onnx")]
    assert "changed nothing" in flags[("dyn", "onnx")]
    assert "slower than fp32 onnx/onnxruntime (×2.40" in flags[("qdq", "onnx")]
    assert "50% zeros in dense kernels: no speed-up" in flags[("l1", "tflite")]
    assert "PSNR 27.0 dB < 30 dB" in flags[("ch", "onnx")]
    assert flags[("fp32", "onnx")] == ""


def test_a_small_slowdown_inside_the_noise_is_not_flagged():
    summary = pd.DataFrame([
        _row("fp32", "onnx", "onnxruntime", 1.0, 0.9, 1.1),
        _row("v", "onnx", "onnxruntime", 1.04, 1.02, 1.06, max_abs_error=0.01, psnr_db=60.0),  # CIs overlap
        _row("w", "onnx", "onnxruntime", 1.04, 1.11, 1.12, max_abs_error=0.01, psnr_db=60.0),  # under 5%
    ])
    assert set(compression_frame(summary)["flags"]) == {""}
