"""Generators declared in a project config (``[models.NAME]`` in ``edge-harness.toml``), without a model file:

    [models.my_gen]
    factory = "mypkg.gen:Generator"     # a class or function returning an nn.Module
    kwargs = { ngf = 32 }               # its keyword arguments
    inputs = [{ name = "z", shape = [100] }]   # per input: name, shape after the batch dimension,
                                        # kind "normal" (default) | "uniform" (low, high) | "integer" (low, high),
                                        # dtype (float32; int64 for integer)
    output_range = [-1.0, 1.0]          # the output's nominal value range: PSNR is taken over it
    checkpoint = "weights/gen.safetensors"   # or a torch state_dict file (weights_only=True)
    checkpoint_key = "generator"        # the state_dict's key inside the file (dotted for deeper ones)
    output = "sample"                   # which output is the image, when the model returns several or a ModelOutput
                                        # (a name, or an index; default: the only tensor it returns)
    method = "decode"                   # benchmark this method instead of forward (AutoencoderKL: decode)
    strict = true                       # every parameter in both the model and the checkpoint
    seed = 0                            # seeds the example inputs (and the weights when there is no checkpoint)
    description = "..."
    # a denoiser: also measure its whole sampling loop (harness.diffusion.Sampler's fields; these are the defaults
    # but for steps: linear β schedule 1e-4 → 0.02 over 1000 training steps, inputs "x" and "t", x0 clipped to ±1)
    sampler = { method = "ddim", steps = 20, train_steps = 1000, beta_start = 1e-4, beta_end = 0.02,
                image_input = "x", time_input = "t", clip = 1.0 }   # + decoder = "vae" (a latent diffusion)

The project config file is the models' source: every process (the prepare step, each worker) rebuilds them by
loading it (``harness.zoo.load_model_file``), so its sha256, the checkpoint's, and the source of the code the model
runs (the factory's package, ``harness.prepare.identity``) are part of every artifact id.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from harness.prepare.checkpoints import Checkpoint
from harness.errors import HarnessInputError
from harness.config.tomlconfig import check_keys, check_list_of

_MODEL_SCHEMA = {"factory": str, "kwargs": dict, "inputs": list, "output_range": list, "checkpoint": str,
                 "checkpoint_key": str, "strict": bool, "seed": int, "description": str, "kind": str,
                 "sampler": dict, "output": (str, int), "method": str}
_INPUT_SCHEMA = {"name": str, "shape": list, "kind": str, "low": (int, float), "high": (int, float), "dtype": str}
INPUT_KINDS = ("normal", "uniform", "integer")
FLOAT_DTYPES = ("float32", "float16", "float64")
INT_DTYPES = ("int64", "int32")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    kind: str = "normal"
    low: float = 0.0
    high: float = 1.0
    dtype: str = "float32"

    def draw(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        size = (batch, *self.shape)
        if self.kind == "normal":
            return rng.standard_normal(size).astype(self.dtype)
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, size).astype(self.dtype)
        return rng.integers(int(self.low), int(self.high), size).astype(self.dtype)


def declared_inputs(inputs: tuple[InputSpec, ...]) -> Callable[[int, int], dict[str, np.ndarray]]:
    """``make_inputs(batch, seed)`` for declared inputs, in their order, deterministic per seed."""

    def make_inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {spec.name: spec.draw(rng, batch) for spec in inputs}

    return make_inputs


def import_factory(reference: str, where: str) -> Callable[..., Any]:
    """``package.module:attribute`` (a class or a function) → the object; one-line errors."""
    import importlib

    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise HarnessInputError(f"{where}: factory {reference!r} must look like 'package.module:ClassOrFunction'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's code, or a package that is not installed / not on python_path
        raise HarnessInputError(f"{where}: cannot import {module_name!r} for factory {reference!r}: "
                                f"{type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise HarnessInputError(f"{where}: {module_name!r} has no {attribute!r} (factory {reference!r})")
        target = getattr(target, part)
    if not callable(target):
        raise HarnessInputError(f"{where}: factory {reference!r} is not a class or function")
    return target


def _inputs(where: str, source: Path, raw: Any) -> tuple[InputSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise HarnessInputError(f"{source}: {where}.inputs must be a non-empty list of tables "
                                "({ name = \"z\", shape = [100] })")
    out = []
    for i, table in enumerate(raw):
        at = f"{where}.inputs[{i}]"
        if not isinstance(table, dict):
            raise HarnessInputError(f"{source}: {at} must be a table")
        check_keys(source, table, _INPUT_SCHEMA, where=at)
        if "name" not in table or "shape" not in table:
            raise HarnessInputError(f"{source}: {at} needs a name and a shape (after the batch dimension)")
        check_list_of(source, f"{at}.shape", table["shape"], int)
        if any(d < 1 for d in table["shape"]):
            raise HarnessInputError(f"{source}: {at}.shape must hold sizes >= 1")
        kind = table.get("kind", "normal")
        if kind not in INPUT_KINDS:
            raise HarnessInputError(f"{source}: {at}.kind must be one of {', '.join(INPUT_KINDS)}, not {kind!r}")
        dtype = table.get("dtype", "int64" if kind == "integer" else "float32")
        allowed = INT_DTYPES if kind == "integer" else FLOAT_DTYPES
        if dtype not in allowed:
            raise HarnessInputError(f"{source}: {at}.dtype for kind {kind!r} must be one of {', '.join(allowed)}")
        low, high = float(table.get("low", 0.0)), float(table.get("high", 1.0 if kind != "integer" else 2.0))
        if high <= low:
            raise HarnessInputError(f"{source}: {at}: high must be above low")
        out.append(InputSpec(table["name"], tuple(table["shape"]), kind, low, high, dtype))
    if len({s.name for s in out}) != len(out):
        raise HarnessInputError(f"{source}: {where}.inputs: input names must differ")
    return tuple(out)


def _builder(factory_ref: str, where: str, seed: int, init_seed: bool, output: str | int | None = None,
             method: str = "forward") -> Callable[..., Any]:
    """``build(**kwargs)``: the factory's module in eval mode, its ``forward`` returning the one image tensor that
    ``output`` names, from ``method`` (``harness.prepare.outputs``)."""
    def build(**kwargs: Any) -> Any:
        import torch

        factory = import_factory(factory_ref, where)
        with torch.random.fork_rng(devices=[]):
            if init_seed:
                torch.manual_seed(seed)
            try:
                model = factory(**kwargs)
            except Exception as exc:
                raise HarnessInputError(f"{where}: {factory_ref}(**{kwargs}) failed: {type(exc).__name__}: "
                                        f"{exc}") from None
        if not isinstance(model, torch.nn.Module):
            raise HarnessInputError(f"{where}: {factory_ref} returned a {type(model).__name__}, not a torch "
                                    "nn.Module")
        from harness.prepare.outputs import with_output

        try:
            return with_output(model, output, method).eval()
        except HarnessInputError as exc:
            raise HarnessInputError(f"{where}: {exc}") from None

    build.factory = lambda: import_factory(factory_ref, where)  # type: ignore[attr-defined]  # its code: identity
    return build


def _sampler(where: str, raw: Mapping[str, Any] | None, inputs: tuple[InputSpec, ...], root: Path) -> Any:
    """The declared ``sampler`` table as a ``Sampler`` (a ``scheduler`` config path resolved from ``root``, the
    project file's folder), its input names checked against the model's inputs."""
    if raw is None:
        return None
    from harness.diffusion import Sampler

    try:
        sampler = Sampler.from_dict(raw, root=root)
    except (TypeError, ValueError, OSError) as exc:
        raise HarnessInputError(f"{where}: {exc}") from None
    try:
        sampler.conditioning_inputs([i.name for i in inputs])  # the rest condition every step
    except ValueError as exc:
        raise HarnessInputError(f"{where}: {exc}") from None
    time_input = next(i for i in inputs if i.name == sampler.time_input)
    if sampler.method == "euler" and sampler.timestep_spacing == "linspace" and time_input.kind == "integer":
        raise HarnessInputError(f"{where}: Euler with linspace spacing steps through fractional timesteps, which the "
                                f"integer input {time_input.name!r} would truncate; declare it with kind = \"uniform\" "
                                "(a float) or use timestep_spacing = \"leading\" or \"trailing\"")
    return sampler


def register_declared(source: Path, models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Register every ``[models.NAME]`` of a project config; return the names."""
    from harness.registry import MODELS
    from harness.types import ModelSpec
    from harness.config.paths import is_builtin_model as is_builtin

    names = []
    for name, table in models.items():
        where = f"{source}: [models.{name}]"
        check_keys(source, table, _MODEL_SCHEMA, where=f"models.{name}")
        for required in ("factory", "inputs"):
            if required not in table:
                raise HarnessInputError(f"{where} needs {required!r}")
        import_factory(table["factory"], where)  # a wrong path or a missing package: said now, not in a worker
        inputs = _inputs(f"models.{name}", source, table["inputs"])
        value_range = table.get("output_range")
        if value_range is not None:
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range) \
                    or len(value_range) != 2 or value_range[1] <= value_range[0]:
                raise HarnessInputError(f"{where}: output_range must be [low, high] with high > low")
        checkpoint = None
        if "checkpoint" in table:
            path = (source.parent / table["checkpoint"]).resolve()
            checkpoint = Checkpoint(str(path), table.get("checkpoint_key", ""), table.get("strict", True))
        elif "checkpoint_key" in table:
            raise HarnessInputError(f"{where}: checkpoint_key needs a checkpoint")
        seed = table.get("seed", 0)
        sampler = _sampler(where, table.get("sampler"), inputs, source.parent)
        spec = ModelSpec(
            name=name, builder=_builder(table["factory"], where, seed, init_seed=checkpoint is None,
                                        output=table.get("output"), method=table.get("method", "forward")),
            make_inputs=declared_inputs(inputs), seed=seed,
            description=table.get("description", f"{table['factory']} (declared in {source.name})"),
            kind=table.get("kind", "generator"), builder_kwargs=dict(table.get("kwargs", {})),
            source=str(source), checkpoint=checkpoint,
            output_range=tuple(float(v) for v in value_range) if value_range else None, sampler=sampler,
        )
        if name in MODELS and MODELS.get(name).source not in (str(source), "") and \
                not is_builtin(MODELS.get(name).source):
            raise HarnessInputError(f"{where}: model {name!r} is already defined in {MODELS.get(name).source}")
        MODELS.register(name, replace=True)(spec)
        names.append(name)
    return names
