"""Compressors that train a smaller student to imitate its teacher (knowledge distillation, Hinton et al. 2015,
here on outputs: mean squared error to the teacher's outputs on fresh latents):

- ``distill``: a thinner student — the teacher's layers with ``amount`` of their channels removed (the same
  Torch-Pruning plan as ``prune-channels``, through skips and norms), starting from the teacher's strongest
  channels (``init = "pruned"``, i.e. channel pruning with a fine-tune) or from random weights
  (``init = "random"``); or a student built afresh, whatever the topology: the model's own builder with
  ``student_kwargs`` overlaid on its ``builder_kwargs`` (``student_kwargs = { ch = 16 }``), or the builder a
  user names (``student_builder = "pkg.module:build_small"``, called with ``student_kwargs``). For a denoiser
  with a sampler, ``data = "trajectories"`` trains on the inputs its sampling loop visits (half of each batch
  drawn from the teacher's own trajectories, half fresh inputs): what the student sees when it is used.
- ``separable``: a lighter architecture — every k×k conv / conv-transpose with groups 1 becomes a depthwise
  and a pointwise layer (MobileNet-style), then is distilled from the teacher.

Each records its training curve (``[[step, mean loss since the previous point], …]``) and wall time.
"""
from __future__ import annotations

import copy
import time
from importlib.metadata import version
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from harness.prepare import progress
from harness.compress import check_choice, check_fraction, phase
from harness.compress.channels import IMPORTANCE, restructure, thinner_network
from harness.compress.layers import parameter_count
from harness.registry import COMPRESSORS

_TRAINING_PARAMS: Mapping[str, Any] = {"steps": 600, "batch": 32, "lr": 1e-3, "seed": 0, "max_train_s": 0.0}
"""``max_train_s``: stop training after this many seconds (0 = train every step); the steps done are recorded.
At the sizes users ship one step can take seconds (a 256×256 generator at batch 32): a first report stays bounded."""
CURVE_POINTS = 25


def _check_training(params: Mapping[str, Any]) -> None:
    if params["steps"] < 1 or params["batch"] < 1:
        raise ValueError("steps and batch must be at least 1")
    if params["lr"] <= 0:
        raise ValueError(f"lr must be positive, not {params['lr']}")
    if params.get("max_train_s", 0) < 0:
        raise ValueError(f"max_train_s must be >= 0 (0 = no limit), not {params['max_train_s']}")


def distill_outputs(student: nn.Module, teacher: nn.Module, latents: Any, params: Mapping[str, Any]) -> dict:
    """Train ``student`` in place to reproduce ``teacher``'s outputs (MSE, Adam with cosine decay) on
    ``params["steps"]`` fresh batches from ``latents`` — fewer when ``params["max_train_s"]`` (s) runs out first;
    return ``{"curve", "train_seconds", "final_loss", "steps_done"}`` (and ``"stopped"`` when the budget ended it).
    BatchNorm statistics stay as they are (the teacher's for a pruned student, identity for a reset one)."""
    if latents is None:
        raise ValueError("distillation needs latents to train on (none were given)")
    teacher = teacher.eval()
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # enable_grad: also under a caller's no_grad
        torch.manual_seed(int(params["seed"]))
        opt = torch.optim.Adam(student.parameters(), lr=params["lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(params["steps"]))
        every = max(1, int(params["steps"]) // CURVE_POINTS)
        curve: list[list[float]] = []
        window: list[float] = []
        _train_with_frozen_norm_statistics(student)
        t0 = time.perf_counter()
        budget = float(params.get("max_train_s", 0.0))
        stopped = ""
        for step in range(1, int(params["steps"]) + 1):
            progress.report("distilling the student", step - 1, int(params["steps"]))
            inputs = [torch.from_numpy(a) for a in latents.batch(int(params["batch"]), step - 1).values()]
            with torch.no_grad():
                target = _outputs(teacher(*inputs))
            loss = sum(((o - t) ** 2).mean() for o, t in zip(_outputs(student(*inputs)), target))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            window.append(float(loss.detach()))
            out_of_time = budget > 0 and time.perf_counter() - t0 > budget and step < int(params["steps"])
            if step % every == 0 or step == int(params["steps"]) or out_of_time:
                curve.append([step, round(float(np.mean(window)), 8)])
                window = []
            if out_of_time:
                stopped = f"max_train_s = {budget:g} s ran out after {step} of {int(params['steps'])} steps"
                break
        student.eval()
    return {"curve": curve, "train_seconds": round(time.perf_counter() - t0, 2), "final_loss": curve[-1][1],
            "steps_done": curve[-1][0], **({"stopped": stopped} if stopped else {})}


def _train_with_frozen_norm_statistics(model: nn.Module) -> None:
    """Training mode, except that BatchNorm layers keep normalising with their running statistics (their
    affine parameters still learn): the function trained is exactly the one evaluated and exported."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _outputs(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


@COMPRESSORS.register("distill")
class Distillation:
    """A student distilled from the teacher: the teacher with ``amount`` of each channel group removed, or
    one built by the model's own builder (``student_kwargs``) or by a named ``student_builder``."""

    name = "distill"
    stage = "torch"
    description = ("distillation into a thinner student (pruned or random init, or built with other builder "
                   "arguments), training curve recorded")
    params: Mapping[str, Any] = {"amount": 0.5, "multiple": 1, "init": "pruned", "importance": "l1",
                                 "student_kwargs": {}, "student_builder": "", "data": "inputs", **_TRAINING_PARAMS}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {"torch": version("torch"), "torch-pruning": version("torch-pruning")}

    def check(self, params: Mapping[str, Any]) -> None:
        check_fraction(params)
        check_choice(params, "init", ("pruned", "random"))
        check_choice(params, "importance", IMPORTANCE)
        check_choice(params, "data", ("inputs", "trajectories"))
        if params["multiple"] < 1:
            raise ValueError(f"multiple must be at least 1, not {params['multiple']}")
        builder = params["student_builder"]
        if builder and (":" not in builder or builder.startswith(":") or builder.endswith(":")):
            raise ValueError(f"student_builder must look like 'package.module:function', not {builder!r}")
        _check_training(params)

    def compress(self, model: nn.Module, params: Mapping[str, Any], latents: Any) -> tuple[nn.Module, dict]:
        if params["student_kwargs"] or params["student_builder"]:
            student, info = _built_student(model, params, latents)
        else:
            with phase("planning the thinner student (channel plan)"):
                student, info = thinner_network(model, params["amount"], int(params["multiple"]), latents,
                                                params["importance"])
            if params["init"] == "random":
                _reinitialize(student, int(params["seed"]))
        batches = latents
        if params["data"] == "trajectories":
            with phase("sampling the teacher's trajectories"):
                batches = TrajectoryBatches.of(model, latents, int(params["seed"]))
        with phase(f"training the student for {int(params['steps'])} steps"):
            training = distill_outputs(student, model, batches, params)
        if params["data"] == "trajectories":
            training["data"] = batches.describe()
        return student, info | {"distillation": training}

    @staticmethod
    def restructure(model: nn.Module, structure: Mapping[str, Any]) -> nn.Module:
        return restructure(model, structure)


TRAJECTORY_POOL = 512
"""Initial noises whose teacher trajectories feed ``data = "trajectories"`` (every step of each is kept)."""


class TrajectoryBatches:
    """Distillation batches for a denoiser: half (x_t, t) pairs its fp32 sampling loop visits from
    ``TRAJECTORY_POOL`` seeded noises (drawn at random, seeded), half fresh inputs from ``make_inputs``."""

    def __init__(self, pool: dict[str, np.ndarray], latents: Any, seed: int) -> None:
        self.pool, self.latents, self.seed = pool, latents, seed
        self.size = len(next(iter(pool.values())))

    @classmethod
    def of(cls, teacher: nn.Module, latents: Any, seed: int) -> "TrajectoryBatches":
        from harness.compress import TRAINING_SEED_OFFSET
        from harness.diffusion import sample

        sampler = getattr(latents, "sampler", None) if latents is not None else None
        if sampler is None:
            raise ValueError("data = 'trajectories' needs a denoiser that declares a sampler")
        example = latents.make_inputs(1, latents.seed)
        names, time_dtype = list(example), example[sampler.time_input].dtype
        conditioned = sampler.conditioning_inputs(names)
        rng = np.random.default_rng(latents.seed + TRAINING_SEED_OFFSET - 1 - seed)
        noise = rng.standard_normal((TRAJECTORY_POOL, *example[sampler.image_input].shape[1:])).astype(np.float32)
        drawn = latents.make_inputs(TRAJECTORY_POOL, latents.seed + TRAINING_SEED_OFFSET - 1 - seed) \
            if conditioned else {}
        condition = {n: drawn[n] for n in conditioned}  # each trajectory's own, the same at every step
        visited: dict[str, list[np.ndarray]] = {n: [] for n in names}

        def denoise(x: np.ndarray, t: np.ndarray) -> np.ndarray:
            values = {sampler.image_input: x, sampler.time_input: t.astype(time_dtype), **condition}
            for n in names:
                visited[n].append(values[n])
            with torch.no_grad():
                out = teacher.eval()(*(torch.from_numpy(values[n]) for n in names))
            return _outputs(out)[0].numpy()

        sample(denoise, sampler, noise)
        return cls({n: np.concatenate(v) for n, v in visited.items()}, latents, seed)

    def batch(self, size: int, index: int) -> dict[str, np.ndarray]:
        fresh = self.latents.batch(size - size // 2, index)
        rows = np.random.default_rng([self.seed, index]).integers(0, self.size, size // 2)
        return {n: np.concatenate([self.pool[n][rows], fresh[n]]) for n in self.pool}

    def describe(self) -> str:
        return f"half from {self.size} (x_t, t) pairs of the teacher's sampling trajectories, half fresh inputs"


def _built_student(teacher: nn.Module, params: Mapping[str, Any], latents: Any) -> tuple[nn.Module, dict]:
    """A fresh student from the model's own builder (``student_kwargs`` overlaid) or the named one; seeded."""
    from harness.prepare.torch_model import rebuilt

    rebuild = {"builder": params["student_builder"], "kwargs": dict(params["student_kwargs"])}
    if latents is None or (not rebuild["builder"] and latents.build is None):
        raise ValueError("a student from builder arguments needs the model's builder and inputs (none were given)")
    by = rebuild["builder"] or "the model's builder"
    with phase(f"building the student with {by}({_kwargs_text(rebuild['kwargs'])})"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(params["seed"]))
            student = rebuilt(rebuild, latents.build)
        if not isinstance(student, nn.Module):
            raise ValueError(f"{by} returned a {type(student).__name__}, not a torch nn.Module")
        student = student.eval()
        inputs = [torch.from_numpy(a) for a in latents.batch(2, 0).values()]
        with torch.no_grad():
            got, want = _outputs(student(*inputs)), _outputs(teacher.eval()(*inputs))
        if [o.shape for o in got] != [o.shape for o in want]:
            raise ValueError(f"the student's outputs have shapes {[tuple(o.shape) for o in got]}, the teacher's "
                             f"{[tuple(o.shape) for o in want]}")
    return student, {"structure": {"rebuild": rebuild}, "student": {"builder": by, "kwargs": rebuild["kwargs"]},
                     "parameters_before": parameter_count(teacher), "parameters": parameter_count(student)}


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _reinitialize(model: nn.Module, seed: int) -> None:
    """Fresh default initial weights (and BatchNorm statistics) for every layer, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()


_SPATIAL_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _separable_candidates(model: nn.Module, min_channels: int) -> tuple[list[str], dict[str, str]]:
    """Layers that become depthwise + pointwise, and the conv layers left alone with the reason."""
    chosen, left = [], {}
    for name, m in model.named_modules():
        if not isinstance(m, _SPATIAL_CONV):
            continue
        if m.groups != 1:
            left[name] = "already grouped"
        elif all(k == 1 for k in m.kernel_size):
            left[name] = "1×1 kernel (already pointwise)"
        elif min(m.in_channels, m.out_channels) < min_channels:
            left[name] = f"fewer than {min_channels} input or output channels"
        else:
            chosen.append(name)
    return chosen, left


def _separable_layer(layer: nn.Module) -> nn.Sequential:
    """Depthwise + pointwise replacement of ``layer`` with the same output shape. A transposed conv (which
    upsamples) mixes channels first, at the low resolution, then upsamples depthwise; a conv filters depthwise
    first and mixes channels at its (lower) output resolution."""
    transposed = isinstance(layer, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    pointwise_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(layer.kernel_size)]
    bias = layer.bias is not None
    if transposed:
        pointwise = pointwise_cls(layer.in_channels, layer.out_channels, 1, bias=False)
        depthwise = type(layer)(layer.out_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                layer.padding, layer.output_padding, groups=layer.out_channels, bias=bias,
                                dilation=layer.dilation)
        return nn.Sequential(pointwise, depthwise)
    depthwise = type(layer)(layer.in_channels, layer.in_channels, layer.kernel_size, layer.stride, layer.padding,
                            layer.dilation, groups=layer.in_channels, bias=False, padding_mode=layer.padding_mode)
    pointwise = pointwise_cls(layer.in_channels, layer.out_channels, 1, bias=bias)
    return nn.Sequential(depthwise, pointwise)


def _rank_one_init(layer: nn.Module, pair: nn.Sequential) -> None:
    """Start the pair from the best rank-1 factorisation of each of the layer's per-channel kernels (SVD).

    Conv-transpose (pointwise P then depthwise D): W[i, o] ≈ P[o, i] · D[o] for each output channel o.
    Conv (depthwise D then pointwise P): W[o, i] ≈ P[o, i] · D[i] for each input channel i."""
    transposed = isinstance(layer, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    weight = layer.weight.detach()
    spatial = weight.shape[2:]
    # Per channel c (dim 1 of the weight in both layouts) a matrix: rows = mixed channels, columns = taps.
    per_channel = weight.transpose(0, 1)
    per_channel = per_channel.reshape(per_channel.shape[0], per_channel.shape[1], -1)  # (c, mixed, taps)
    u, sv, vh = torch.linalg.svd(per_channel, full_matrices=False)
    scale = sv[:, 0].sqrt()
    mix = u[:, :, 0] * scale[:, None]  # (c, mixed)
    taps = vh[:, 0, :] * scale[:, None]  # (c, taps)
    with torch.no_grad():
        if transposed:  # c = output channel, mixed = input channel
            pointwise, depthwise = pair
            pointwise.weight.copy_(mix.reshape(*pointwise.weight.shape))
            depthwise.weight.copy_(taps.reshape(len(taps), 1, *spatial))
            if layer.bias is not None:
                depthwise.bias.copy_(layer.bias.detach())
        else:  # c = input channel, mixed = output channel
            depthwise, pointwise = pair
            depthwise.weight.copy_(taps.reshape(len(taps), 1, *spatial))
            pointwise.weight.copy_(mix.t().reshape(*pointwise.weight.shape))
            if layer.bias is not None:
                pointwise.bias.copy_(layer.bias.detach())


def make_separable(model: nn.Module, layers: list[str], init_from_weights: bool = False) -> nn.Module:
    """Replace each named layer of ``model`` (in place) by its depthwise-separable version, optionally
    initialised from the layer's own weights (rank-1 SVD per channel)."""
    for name in layers:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = model.get_submodule(name)
        pair = _separable_layer(layer)
        if init_from_weights:
            _rank_one_init(layer, pair)
        setattr(parent, child, pair)
    return model


@COMPRESSORS.register("separable")
class DepthwiseSeparable:
    """MobileNet-style lighter architecture: k×k convs → depthwise + pointwise, distilled from the teacher."""

    name = "separable"
    stage = "torch"
    description = "depthwise-separable convolutions (lighter architecture), distilled from the original"
    params: Mapping[str, Any] = {"min_channels": 8, **_TRAINING_PARAMS, "steps": 1500, "lr": 2e-3}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {"torch": version("torch")}

    def check(self, params: Mapping[str, Any]) -> None:
        if params["min_channels"] < 1:
            raise ValueError(f"min_channels must be at least 1, not {params['min_channels']}")
        _check_training(params)

    def compress(self, model: nn.Module, params: Mapping[str, Any], latents: Any) -> tuple[nn.Module, dict]:
        layers, left = _separable_candidates(model, int(params["min_channels"]))
        if not layers:
            reasons = "; ".join(f"{n}: {why}" for n, why in left.items()) or "no k×k conv layer"
            raise ValueError(f"no layer can become depthwise-separable ({reasons})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(params["seed"]))
            student = make_separable(copy.deepcopy(model), layers, init_from_weights=True)
        with phase(f"training the separable student for {int(params['steps'])} steps"):
            training = distill_outputs(student, model, latents, params)
        return student, {"structure": {"layers": layers}, "separable_layers": layers, "layers_left_whole": left,
                         "parameters_before": parameter_count(model), "parameters": parameter_count(student),
                         "distillation": training}

    @staticmethod
    def restructure(model: nn.Module, structure: Mapping[str, Any]) -> nn.Module:
        return make_separable(model, list(structure["layers"]))
