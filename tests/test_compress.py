"""Compressors on tiny models: what they remove, the shapes they leave, and that the worker can rebuild them."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from harness.compress import compressor, resolve_params
from harness.compress.channels import find_prunable, restructure
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


class _Skip(nn.Module):
    """conv1 → relu → conv2 is a plain chain; conv2 and skip meet in an add; conv3 feeds a GroupNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.skip = nn.Conv2d(1, 8, 1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.out = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(torch.relu(self.conv1(x))) + self.skip(x)
        return self.out(self.norm(self.conv3(h)))


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


def test_channel_pruning_builds_a_thinner_network_with_the_expected_shapes():
    model = _deconv(16)
    thin, info = compressor("prune-channels").compress(model, resolve_params("prune-channels", {"amount": 0.5}), [])
    assert thin[0].weight.shape == (8, 8, 4, 4)  # ConvTranspose weight: (in, out, k, k): 16 → 8 outputs
    assert thin[1].num_features == 8 and thin[1].running_mean.shape == (8,)
    assert thin[3].weight.shape == (8, 4, 4, 4)  # inputs 16 → 8, outputs 8 → 4
    assert thin[3].bias.shape == (4,) and thin[4].num_features == 4
    assert thin[6].weight.shape == (4, 1, 4, 4)  # the output layer keeps its 1 channel
    assert info["channels"] == {"0": {"kept": 8, "of": 16}, "3": {"kept": 4, "of": 8}}
    assert info["parameters"] < info["parameters_before"]
    assert thin(_latents()).shape == model(_latents()).shape == (4, 1, 16, 16)


def test_channel_pruning_computes_what_the_original_computes_without_those_channels():
    """The thinner network equals the original with the removed channels' contributions cut off."""
    model = _deconv(16)
    thin, info = compressor("prune-channels").compress(model, resolve_params("prune-channels", {"amount": 0.5}), [])
    masked = copy.deepcopy(model)
    for producer, consumer in (("0", 3), ("3", 6)):
        keep = thin_keep(info, producer)
        drop = sorted(set(range(masked[consumer].weight.shape[0])) - set(keep))
        assert len(drop) == len(keep)
        with torch.no_grad():
            masked[consumer].weight[drop] = 0  # ConvTranspose weight dim 0 = input channels
    with torch.no_grad():
        np.testing.assert_allclose(thin(_latents()).numpy(), masked(_latents()).numpy(), atol=1e-5)


def thin_keep(info: dict, layer: str) -> list[int]:
    return info["structure"][layer]["keep"]


def test_channel_pruning_keeps_the_largest_l1_channels_and_rounds_to_a_multiple():
    model = _deconv(16)
    _, info = compressor("prune-channels").compress(model, resolve_params("prune-channels", {"amount": 0.6, "multiple": 4}), [])
    keep = thin_keep(info, "0")
    assert len(keep) == 8  # 16 × 0.4 = 6.4 → 6, rounded up to a multiple of 4
    norms = model[0].weight.detach().abs().sum(dim=(0, 2, 3))
    dropped = sorted(set(range(16)) - set(keep))
    assert norms[dropped].max() <= norms[keep].min()


def test_a_skeleton_restructured_from_the_plan_loads_the_pruned_state_dict():
    model = _deconv(16)
    thin, info = compressor("prune-channels").compress(model, resolve_params("prune-channels", {"amount": 0.5}), [])
    skeleton = restructure(_deconv(16), info["structure"])
    skeleton.load_state_dict(thin.state_dict())
    with torch.no_grad():
        assert torch.equal(skeleton.eval()(_latents()), thin(_latents()))


def test_layers_feeding_skip_connections_or_group_norm_are_left_whole_with_the_reason():
    prunable, kept = find_prunable(_Skip())
    assert set(prunable) == {"conv1"}
    assert prunable["conv1"]["consumers"] == ["conv2"]
    assert "add" in kept["conv2"] and "add" in kept["skip"]
    assert "GroupNorm" in kept["conv3"]
    assert "output" in kept["out"]


def test_a_model_with_nothing_to_thin_is_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="no layer can lose channels.*model's output"):
        compressor("prune-channels").compress(model, resolve_params("prune-channels", {}), [])


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
    assert resolve_params("prune-channels", {"amount": 0.25, "multiple": 8}) == {"amount": 0.25, "multiple": 8}
