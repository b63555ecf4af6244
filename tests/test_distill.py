"""Training on digits, distillation and the depthwise-separable variant (students from builder arguments:
tests/test_channel_pruning.py)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from harness.compress import LatentSource, compressor, resolve_params
from harness.digits import DigitsImages
from harness.errors import HarnessInputError
from harness.model_helpers import latent_inputs
from harness.training import DigitsTraining, build_trained, weights_key
from harness.types import ModelSpec

MAKE_LATENTS = latent_inputs((8, 1, 1))


def _deconv(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.ConvTranspose2d(8, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU(),
        nn.ConvTranspose2d(width // 2, 1, 4, 2, 1), nn.Tanh(),
    ).eval()


def _source() -> LatentSource:
    return LatentSource(MAKE_LATENTS, seed=0)


def _mse(a: nn.Module, b: nn.Module) -> float:
    z = torch.from_numpy(MAKE_LATENTS(64, 12345)["z"])
    with torch.no_grad():
        return float(((a(z) - b(z)) ** 2).mean())


# -- distillation --------------------------------------------------------------------------------------
def test_distillation_trains_a_thinner_student_towards_the_teacher():
    teacher = _deconv(16)
    params = resolve_params("distill", {"amount": 0.5, "steps": 150, "lr": 3e-3})
    student, info = compressor("distill").compress(teacher, params, _source())
    assert student[0].weight.shape == (8, 8, 4, 4) and student[3].weight.shape == (8, 4, 4, 4)
    assert info["channels"] == {"0": {"kept": 8, "of": 16}, "3": {"kept": 4, "of": 8}}
    curve = info["distillation"]["curve"]
    assert curve[-1][0] == 150 and len(curve) >= 10
    assert curve[-1][1] < curve[0][1] / 2  # the loss fell
    untrained, _ = compressor("prune-channels").compress(teacher, resolve_params("prune-channels", {"amount": 0.5}),
                                                         _source())
    assert _mse(student, teacher) < _mse(untrained, teacher) / 2  # better than pruning without fine-tuning
    assert not student.training
    json.dumps(info)  # recorded in the artifact as it is


def test_distillation_is_deterministic_and_leaves_the_teacher_alone():
    teacher = _deconv(16)
    before = copy.deepcopy(teacher.state_dict())
    params = resolve_params("distill", {"amount": 0.5, "steps": 20})
    a, _ = compressor("distill").compress(teacher, params, _source())
    b, _ = compressor("distill").compress(teacher, params, _source())
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_randomly_initialised_student_starts_from_other_weights():
    teacher = _deconv(16)
    pruned, _ = compressor("distill").compress(teacher, resolve_params("distill", {"steps": 1, "lr": 1e-9}), _source())
    random, _ = compressor("distill").compress(
        teacher, resolve_params("distill", {"steps": 1, "lr": 1e-9, "init": "random"}), _source())
    assert pruned[0].weight.shape == random[0].weight.shape
    assert not torch.allclose(pruned[0].weight, random[0].weight)


def test_distillation_parameters_are_checked():
    with pytest.raises(HarnessInputError, match="init must be one of pruned, random"):
        resolve_params("distill", {"init": "zeros"})
    with pytest.raises(HarnessInputError, match="steps and batch must be at least 1"):
        resolve_params("distill", {"steps": 0})
    with pytest.raises(ValueError, match="traces the model on example inputs, and none were given"):
        compressor("distill").compress(_deconv(), resolve_params("distill", {}), None)


def test_the_distilled_student_is_rebuilt_from_its_structure():
    teacher = _deconv(16)
    student, info = compressor("distill").compress(teacher, resolve_params("distill", {"steps": 5}), _source())
    skeleton = compressor("distill").restructure(_deconv(16), info["structure"])
    skeleton.load_state_dict(student.state_dict())
    assert _mse(skeleton.eval(), student) == 0.0


# -- depthwise-separable -------------------------------------------------------------------------------
def test_separable_replaces_kxk_layers_with_depthwise_and_pointwise():
    teacher = _deconv(16)
    params = resolve_params("separable", {"steps": 120, "min_channels": 4})
    student, info = compressor("separable").compress(teacher, params, _source())
    assert info["separable_layers"] == ["0", "3"]
    assert "6" in info["layers_left_whole"]  # one output channel: below min_channels
    pointwise, depthwise = student[3]
    assert isinstance(pointwise, nn.Conv2d) and pointwise.kernel_size == (1, 1)
    assert pointwise.in_channels == 16 and pointwise.out_channels == 8
    assert isinstance(depthwise, nn.ConvTranspose2d) and depthwise.groups == 8 and depthwise.stride == (2, 2)
    assert info["parameters"] < info["parameters_before"]
    z = torch.from_numpy(MAKE_LATENTS(4, 1)["z"])
    assert student(z).shape == teacher(z).shape
    assert info["distillation"]["curve"][-1][1] < info["distillation"]["curve"][0][1]
    skeleton = compressor("separable").restructure(_deconv(16), info["structure"])
    skeleton.load_state_dict(student.state_dict())
    assert _mse(skeleton.eval(), student) == 0.0


def test_a_separable_conv_filters_depthwise_first():
    conv = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 1))
    source = LatentSource(lambda batch, seed: {"x": np.random.default_rng(seed).standard_normal(
        (batch, 8, 8, 8)).astype(np.float32)}, 0)
    student, info = compressor("separable").compress(conv, resolve_params("separable", {"steps": 2}), source)
    depthwise, pointwise = student[0]
    assert depthwise.groups == 8 and depthwise.stride == (2, 2) and pointwise.out_channels == 16
    assert info["layers_left_whole"] == {"2": "1×1 kernel (already pointwise)"}


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(6, 4, 4, 2, 1), nn.Conv2d(6, 4, 3, 2, 1)])
def test_separable_starts_from_the_rank_one_factorisation_of_each_kernel(layer):
    """A layer whose per-channel kernels are exactly rank 1 is reproduced by its separable pair before any
    training; a general layer is approximated better than by a random pair."""
    from harness.compress.distill import make_separable

    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        mixed, taps = torch.randn(4, 6), torch.randn(6 if isinstance(layer, nn.Conv2d) else 4, *layer.kernel_size)
        if isinstance(layer, nn.ConvTranspose2d):  # W[i, o] = P[o, i] · D[o]
            layer.weight.copy_(mixed.t()[:, :, None, None] * taps[None])
        else:  # W[o, i] = P[o, i] · D[i]
            layer.weight.copy_(mixed[:, :, None, None] * taps[None])
        exact = make_separable(nn.Sequential(copy.deepcopy(layer)), ["0"], init_from_weights=True)
        np.testing.assert_allclose(exact(x).numpy(), layer(x).numpy(), atol=1e-4)
        general = nn.Sequential(type(layer)(6, 4, layer.kernel_size, layer.stride, layer.padding))
        from_weights = make_separable(copy.deepcopy(general), ["0"], init_from_weights=True)
        random = make_separable(copy.deepcopy(general), ["0"])
        err = [float(((m(x) - general(x)) ** 2).mean()) for m in (from_weights, random)]
        assert err[0] < err[1]


def test_separable_says_why_when_nothing_qualifies():
    with pytest.raises(ValueError, match="no layer can become depthwise-separable"):
        compressor("separable").compress(nn.Sequential(nn.Linear(4, 4)), resolve_params("separable", {}), _source())


# -- training on digits -------------------------------------------------------------------------------
class _TinyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 256), nn.Sigmoid(),
                                 nn.Unflatten(1, (1, 16, 16)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _spec(steps: int = 60, objective: str = "vae") -> ModelSpec:
    images = DigitsImages(size=16, channels=1, value_range=(0.0, 1.0))
    if objective == "denoiser":
        def make_inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
            rng = np.random.default_rng(seed)
            return {"x": rng.standard_normal((batch, 1, 16, 16)).astype(np.float32),
                    "t": rng.uniform(0, 1000, batch).astype(np.float32)}

        class Denoiser(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv2d(1, 1, 3, padding=1)

            def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.conv(x) + 0.0 * t[:, None, None, None]

        return ModelSpec("tiny_denoiser", lambda: Denoiser(), make_inputs,
                         training=DigitsTraining(images, objective="denoiser", steps=steps, lr=1e-2))
    return ModelSpec("tiny_vae", lambda: _TinyDecoder(), MAKE_LATENTS,
                     training=DigitsTraining(images, steps=steps, lr=3e-3))


def test_training_on_digits_lowers_the_loss_and_is_cached(tmp_path):
    spec = _spec()
    model, info = build_trained(spec, tmp_path)
    assert info["cached"] is False and info["curve"][-1][1] < info["curve"][0][1]
    assert not model.training
    again, info2 = build_trained(spec, tmp_path)
    assert info2["cached"] is True and info2["weights_sha256"] == info["weights_sha256"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])
    longer = _spec(steps=61)
    assert weights_key(longer) != weights_key(spec)  # a changed recipe trains again


def test_the_denoiser_objective_trains_a_two_input_model(tmp_path):
    _, info = build_trained(_spec(steps=40, objective="denoiser"), tmp_path)
    assert info["curve"][-1][1] < info["curve"][0][1]


def test_an_untrained_model_is_built_as_it_is(tmp_path):
    spec = ModelSpec("plain", lambda: nn.Linear(2, 2), MAKE_LATENTS)
    model, info = build_trained(spec, tmp_path)
    assert info == {} and weights_key(spec) == "" and not (tmp_path / "weights").exists()


def test_training_recipes_are_checked():
    with pytest.raises(ValueError, match="unknown training objective 'gan'"):
        DigitsTraining(DigitsImages(size=8), objective="gan")


# -- eager PyTorch int8 --------------------------------------------------------------------------------
def test_eager_int8_quantizes_every_layer_and_is_rebuilt_from_its_structure():
    teacher = _deconv(16)
    q, info = compressor("torch-int8").compress(teacher, resolve_params("torch-int8", {"calibration_batches": 4}),
                                                _source())
    assert info["quantized_layers"] == ["1.0", "1.1", "1.3", "1.4", "1.6"]  # 3 ConvTranspose + 2 BatchNorm
    z = torch.from_numpy(MAKE_LATENTS(8, 777)["z"])
    with torch.no_grad():
        err = float((q(z) - teacher(z)).abs().max())
    assert 0.0 < err < 0.1  # int8: close, not equal
    skeleton = compressor("torch-int8").restructure(_deconv(16), info["structure"])
    skeleton.load_state_dict(q.state_dict())
    with torch.no_grad():
        assert torch.equal(skeleton(z), q(z))


def test_eager_int8_is_measured_in_pytorch_only_and_names_a_missing_kernel():
    from harness.compress import variant_formats
    from harness.types import CompressionSpec

    assert variant_formats(CompressionSpec("q", "torch-int8"), ("torch", "onnx", "tflite")) == ("torch",)
    assert variant_formats(CompressionSpec("d", "distill"), ("torch", "onnx")) == ("torch", "onnx")
    assert variant_formats(CompressionSpec("t", "tflite-int8"), ("torch", "onnx", "tflite")) == ("tflite",)

    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)  # an add of quantized tensors has no eager kernel

    source = LatentSource(lambda batch, seed: {"x": np.random.default_rng(seed).standard_normal(
        (batch, 1, 4, 4)).astype(np.float32)}, 0)
    with pytest.raises(NotImplementedError):
        compressor("torch-int8").compress(Skip().eval(), resolve_params("torch-int8", {}), source)
    with pytest.raises(HarnessInputError, match="engine must be one of"):
        resolve_params("torch-int8", {"engine": "tpu"})


def test_a_time_budget_stops_training_and_says_after_how_many_steps():
    """``max_train_s``: at the sizes users ship a step can take seconds; the budget ends training, the curve ends
    at the last step done, and the record says so."""
    teacher = _deconv(16)
    params = resolve_params("distill", {"amount": 0.5, "steps": 1_000_000, "max_train_s": 0.3})
    student, info = compressor("distill").compress(teacher, params, _source())
    training = info["distillation"]
    assert 1 <= training["steps_done"] < 1_000_000 and training["curve"][-1][0] == training["steps_done"]
    assert training["stopped"].startswith("max_train_s = 0.3 s ran out after ")
    assert training["train_seconds"] < 30  # one step past the budget, not a million
    full = compressor("distill").compress(teacher, resolve_params("distill", {"steps": 3}), _source())[1]
    assert full["distillation"]["steps_done"] == 3 and "stopped" not in full["distillation"]
    with pytest.raises(HarnessInputError, match="max_train_s must be >= 0"):
        resolve_params("distill", {"max_train_s": -1})
