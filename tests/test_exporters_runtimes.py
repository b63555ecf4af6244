"""Each exporter and runtime on a tiny generator: real exports, real runtimes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from harness.errors import HarnessInputError
from harness.prepare.artifacts import load_outputs
from harness.registry import RUNTIMES
from harness.runtimes import RuntimeOptions, runtime_class, runtimes_for_format
from harness.worker import load_inputs
from tests.helpers import build_all

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tiny_models_dir, shared_cache):
    return build_all(tiny_models_dir, shared_cache, "tiny_gen")


def test_exports_are_valid_and_match_pytorch(built):
    _, base, _, exports = built
    assert base.format == "torch" and base.status == "ok" and base.bytes > 0
    onnx_art, tfl_art = exports["onnx"], exports["tflite"]
    for art in (onnx_art, tfl_art):
        assert art.status == "ok", art.error
        assert art.parent_id == base.id
        assert art.export_max_abs_error is not None and art.export_max_abs_error < 1e-5
        assert len(art.sha256) == 64
    onnx.checker.check_model(onnx_art.path)
    model = onnx.load(onnx_art.path)
    assert [i.name for i in model.graph.input] == ["z"]
    assert any(n.op_type == "ConvTranspose" for n in model.graph.node)
    assert open(tfl_art.path, "rb").read()[4:8] == b"TFL3"  # the flatbuffer file identifier


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "litert"])
def test_each_runtime_loads_infers_and_matches_reference(built, runtime):
    _, base, io, exports = built
    artifact = {"torch": base, "onnxruntime": exports["onnx"], "litert": exports["tflite"]}[runtime]
    rt = runtime_class(runtime)(RuntimeOptions(threads=1))
    assert rt.missing() is None
    rt.preload()
    rt.load(artifact)
    outputs = rt.infer(load_inputs(io.inputs_path))
    rt.sync()
    reference = load_outputs(io.reference_path)
    assert outputs[0].shape == reference[0].shape == (1, 1, 8, 8)
    np.testing.assert_allclose(outputs[0], reference[0], rtol=1e-5, atol=1e-5)
    assert rt.versions()


def test_litert_without_xnnpack_gives_the_same_outputs(built):
    """``litert_xnnpack=False`` (a target's ``[litert] xnnpack = false``): LiteRT's built-in kernels, no delegate."""
    _, _, io, exports = built
    outputs = {}
    for xnnpack in (True, False):
        rt = runtime_class("litert")(RuntimeOptions(threads=1, litert_xnnpack=xnnpack))
        rt.load(exports["tflite"])
        outputs[xnnpack] = rt.infer(load_inputs(io.inputs_path))[0]
        ops = [op["op_name"] for op in rt._interp._get_ops_details()]
        assert ("DELEGATE" in ops) == xnnpack, ops  # the delegate's node is there only when XNNPACK is on
    np.testing.assert_allclose(outputs[False], outputs[True], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs[False], load_outputs(io.reference_path)[0], rtol=1e-4, atol=1e-4)


def test_onnx_runtime_in_parallel_mode_gives_the_same_outputs(built):
    """``onnx_execution_mode="parallel"`` (a target's ``[onnxruntime] execution_mode``): independent branches at
    once, on inter-op threads too; the same numbers."""
    import onnxruntime as ort

    _, _, io, exports = built
    rt = runtime_class("onnxruntime")(RuntimeOptions(threads=2, onnx_execution_mode="parallel"))
    options = rt.session_options()
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL and options.inter_op_num_threads == 2
    rt.load(exports["onnx"])
    np.testing.assert_allclose(rt.infer(load_inputs(io.inputs_path))[0], load_outputs(io.reference_path)[0],
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(HarnessInputError, match="execution mode 'async' is not one of"):
        runtime_class("onnxruntime")(RuntimeOptions(onnx_execution_mode="async"))


def test_runtime_registry_maps_formats():
    assert runtimes_for_format("onnx") == ["onnxruntime", "onnxruntime-cuda"]
    assert runtimes_for_format("tflite") == ["litert"]
    assert runtimes_for_format("torch") == ["torch", "torch-cuda"]
    assert set(RUNTIMES.names()) >= {"torch", "onnxruntime", "litert", "torch-cuda", "onnxruntime-cuda"}


def test_onnxruntime_rejects_unknown_graph_level():
    from harness.errors import HarnessInputError

    with pytest.raises(HarnessInputError, match="graph optimisation"):
        runtime_class("onnxruntime")(RuntimeOptions(graph_optimization="max"))


def test_litert_names_what_is_missing_when_no_tflite_runtime(monkeypatch):
    import importlib.util

    from harness.runtimes import litert_rt

    real = importlib.util.find_spec
    monkeypatch.setattr(litert_rt.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("ai_edge_litert", "tflite_runtime") else real(name, *a))
    assert "ai-edge-litert" in litert_rt.LiteRTRuntime.missing()


def test_export_that_disagrees_with_pytorch_is_marked_failed(diverging_models_dir, tmp_path):
    _, _, _, exports = build_all(diverging_models_dir, tmp_path, "diverging_gen")
    for art in exports.values():
        assert art.status == "failed"
        assert "exceeds tolerance" in art.error
        assert art.export_max_abs_error == pytest.approx(1.0, abs=1e-5)


def test_a_missing_exporter_package_is_named_not_a_crash(monkeypatch):
    """On a machine without litert-torch (the lent GPU image) the tflite exporter's versions still resolve, so the
    export itself fails with an ImportError that the artifact cache records per artifact."""
    import sys

    from harness.exporters import NOT_INSTALLED, package_version
    from harness.exporters.tflite_export import TFLiteExporter

    assert package_version("edge-harness-no-such-package") == NOT_INSTALLED
    assert package_version("torch") not in ("", NOT_INSTALLED)
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # import litert_torch now raises ImportError
    monkeypatch.setattr("harness.exporters.tflite_export.package_version",
                        lambda p: NOT_INSTALLED if p == "litert-torch" else package_version(p))
    assert TFLiteExporter.tool_versions()["litert-torch"] == NOT_INSTALLED
    with pytest.raises(ImportError, match="litert_torch"):
        TFLiteExporter.export(None, {}, "unused.tflite")


def test_a_transposed_conv_litert_cannot_convert_is_named_in_one_line(tmp_path):
    """CycleGAN's upsampling, ConvTranspose2d(k=3, s=2, p=1, output_padding=1): litert-torch fails with a page of MLIR
    ("failed to legalize operation 'mhlo.convolution'"); the error names the layer and what converts (kernel 4,
    stride 2, padding 1: checked here)."""
    import numpy as np
    from torch import nn

    from harness.exporters.tflite_export import TFLiteExporter

    x = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    cyclegan = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 3, 2, 1, output_padding=1))
    with pytest.raises(ValueError) as failed:
        TFLiteExporter.export(cyclegan.eval(), x, str(tmp_path / "a.tflite"))
    message = str(failed.value)
    assert "\n" not in message and "the transposed convolutions with output_padding: 2 (ConvTranspose2d, kernel " \
        "(3, 3), stride (2, 2), padding (1, 1), output_padding (1, 1))" in message, message
    dcgan = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, 2, 1))
    TFLiteExporter.export(dcgan.eval(), x, str(tmp_path / "b.tflite"))
    assert (tmp_path / "b.tflite").stat().st_size > 0


def test_the_same_transposed_conv_under_pt2e_for_tflite_is_named_alike(tmp_path):
    """PT2E int8 for TFLite meets the same converter limit (the 256² CycleGAN in the real-size deep pass): the same one
    line naming the layer, not the converter's page of MLIR."""
    import numpy as np
    import torch
    from torch import nn

    from harness.compress.pt2e import PT2EInt8

    torch.manual_seed(0)
    cyclegan = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 3, 2, 1, output_padding=1))
    x = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    with pytest.raises(ValueError) as failed:
        PT2EInt8().export_file(cyclegan.eval(), x, str(tmp_path / "q.tflite"), "tflite", dict(PT2EInt8.params), [x])
    message = str(failed.value)
    assert message.startswith("litert-torch cannot convert a convolution of this model") and "\n" not in message
    assert "2 (ConvTranspose2d, kernel (3, 3), stride (2, 2), padding (1, 1), output_padding (1, 1))" in message


def test_pt2e_for_tflite_converts_a_graph_as_it_is_unless_the_converter_refuses_a_convs_padding(tmp_path):
    """The explicit-pad rewrite (diffusers' Downsample2D) is a fallback, not the default: a residual block feeding a
    stride-2 conv and a stride-2 depthwise conv, under XNNPACK's annotations, converts as it is and failed with the
    rewrite ("Given groups=8, weight of size [8, 1, 3, 3], expected input … to have 8 channels")."""
    import numpy as np
    import torch
    from torch import nn

    from harness.compress.pt2e import PT2EInt8

    class Downsampling(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.down, self.dw = nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1, groups=8)
            self.out = nn.Conv2d(16, 3, 1)

        def forward(self, x):
            h = self.a(x)
            h = torch.relu(h + self.b(h))
            return self.out(torch.cat([self.down(h), nn.functional.hardtanh(self.dw(h))], 1))

    torch.manual_seed(0)
    calibration = [{"x": np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32)}
                   for i in range(3)]
    for quantizer in ("backend", "xnnpack"):
        info = PT2EInt8().export_file(Downsampling().eval(), calibration[0], str(tmp_path / f"{quantizer}.tflite"),
                                      "tflite", {**PT2EInt8.params, "quantizer": quantizer}, calibration)
        assert info["coverage"]["ops_int8_fraction"] == 1.0 and "explicit_conv_padding" not in info, quantizer
