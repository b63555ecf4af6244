"""Compressors on tiny models: what they remove, the shapes they leave, and that the worker can rebuild them
(channel pruning: tests/test_channel_pruning.py)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from harness.compress import compressor, resolve_params
from harness.errors import HarnessInputError


def _deconv(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.ConvTranspose2d(8, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU(),
        nn.ConvTranspose2d(width // 2, 1, 4, 2, 1), nn.Tanh(),
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _latents(n: int = 4) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).standard_normal((n, 8, 1, 1)).astype(np.float32))


@pytest.mark.parametrize("method", ["prune-l1", "prune-random"])
@pytest.mark.parametrize("amount", [0.2, 0.5, 0.9])
def test_unstructured_pruning_zeroes_that_fraction_of_each_layer(method, amount):
    model = _deconv()
    before = copy.deepcopy(model.state_dict())
    pruned, info = compressor(method).compress(model, resolve_params(method, {"amount": amount}), [])
    layers = [m for m in pruned.modules() if isinstance(m, nn.ConvTranspose2d)]
    for layer in layers:
        assert not hasattr(layer, "weight_orig") and not hasattr(layer, "weight_mask")  # made permanent
        zeros = int((layer.weight == 0).sum())
        assert zeros == round(amount * layer.weight.numel())
    assert info["sparsity"] == pytest.approx(amount, abs=0.01)
    assert info["layers_pruned"] == 3
    for key, value in model.state_dict().items():  # the input model is not touched
        assert torch.equal(value, before[key])


def test_l1_pruning_removes_the_smallest_magnitudes():
    model = _deconv()
    pruned, _ = compressor("prune-l1").compress(model, resolve_params("prune-l1", {"amount": 0.5}), [])
    for original, layer in zip(model.modules(), pruned.modules()):
        if isinstance(layer, nn.ConvTranspose2d):
            magnitude = original.weight.abs()
            removed = magnitude[layer.weight == 0]
            kept = magnitude[layer.weight != 0]
            assert removed.max() <= kept.min()


def test_global_l1_pruning_reaches_the_amount_over_all_layers_not_per_layer():
    model = _deconv()
    pruned, info = compressor("prune-l1").compress(model, resolve_params("prune-l1", {"amount": 0.5, "scope": "global"}), [])
    assert info["sparsity"] == pytest.approx(0.5, abs=1e-3)
    per_layer = [float((m.weight == 0).float().mean()) for m in pruned.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert max(per_layer) - min(per_layer) > 0.05


def test_random_pruning_is_seeded():
    model = _deconv()
    params = resolve_params("prune-random", {"amount": 0.5, "seed": 1})
    a, _ = compressor("prune-random").compress(model, params, [])
    b, _ = compressor("prune-random").compress(model, params, [])
    c, _ = compressor("prune-random").compress(model, {**params, "seed": 2}, [])
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize("method, params, message", [
    ("prune-l1", {"amount": 1.5}, "strictly between 0 and 1"),
    ("prune-l1", {"amount": "half"}, "must be float"),
    ("prune-l1", {"ammount": 0.5}, "unknown parameter 'ammount'"),
    ("prune-l1", {"scope": "everywhere"}, "scope must be one of layer, global"),
    ("prune-channels", {"multiple": 0}, "at least 1"),
    ("quant-static", {"per_channel": 1}, "must be bool"),
    ("quant-static", {"calibrate_method": "magic"}, "calibrate_method must be one of"),
    ("nope", {}, "unknown compressor 'nope'"),
])
def test_bad_parameters_are_one_line_input_errors(method, params, message):
    with pytest.raises(HarnessInputError, match=message):
        resolve_params(method, params)


def test_an_int_is_accepted_where_a_float_is_expected_and_then_range_checked():
    with pytest.raises(HarnessInputError, match="strictly between"):  # not "must be float"
        resolve_params("prune-l1", {"amount": 1})
    assert resolve_params("prune-channels", {"amount": 0.25, "multiple": 8}) == {"amount": 0.25, "multiple": 8,
                                                                                  "importance": "l1"}


def test_quant_static_can_keep_a_timestep_embedding_float(tmp_path):
    """``keep_float_before = ["Sin", "Cos"]``: the nodes feeding Sin / Cos (the timestep path) are left out of
    quantization; the convolution beside them is still quantized."""
    import onnx
    from onnx import TensorProto, helper

    from harness.compress import resolve_params
    from harness.compress.onnx_quant import upstream_nodes
    from harness.errors import HarnessInputError

    nodes = [helper.make_node("Unsqueeze", ["t", "axes"], ["u"], name="unsq"),
             helper.make_node("Mul", ["u", "freq"], ["phase"], name="phase_mul"),
             helper.make_node("Sin", ["phase"], ["s"], name="sin"),
             helper.make_node("Cos", ["phase"], ["c"], name="cos"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1]),
                     helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("s", "c", "y")],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
         helper.make_tensor("freq", TensorProto.FLOAT, [1, 2], [1.0, 10.0]),
         helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], [0.1] * 9)])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert upstream_nodes(str(path), ["Sin", "Cos"]) == ["cos", "phase_mul", "sin", "unsq"]
    assert upstream_nodes(str(path), []) == []
    from harness.compress import compressor

    rng = np.random.default_rng(0)
    calibration = [{"t": rng.uniform(0, 1000, 1).astype(np.float32),
                    "x": rng.standard_normal((1, 1, 4, 4)).astype(np.float32)} for _ in range(4)]
    quantized = {}
    for keep in ([], ["Sin", "Cos"]):
        dst = tmp_path / f"q{len(keep)}.onnx"
        params = resolve_params("quant-static", {"keep_float_before": keep, "calibration_batches": 4})
        compressor("quant-static").compress_file(str(path), str(dst), params, calibration)
        quantized[len(keep)] = {n.input[0] for n in onnx.load(str(dst)).graph.node if n.op_type == "QuantizeLinear"}
    assert {"u", "phase"} <= quantized[0] and "x" in quantized[0]  # by default the phases are quantized …
    assert not {"u", "phase"} & quantized[2] and "x" in quantized[2]  # … kept float on request; the conv is not
    assert resolve_params("quant-static", {"keep_float_before": ["Sin", "Cos"]})["keep_float_before"] == ["Sin", "Cos"]
    with pytest.raises(HarnessInputError, match="keep_float_before must list ONNX op types"):
        resolve_params("quant-static", {"keep_float_before": [3]})
