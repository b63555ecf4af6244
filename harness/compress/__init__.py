"""Compressors: one contract, registered in ``COMPRESSORS``; each records what it changed.

A compressor has ``name``, ``stage`` and ``params`` (name → default; the default's type is the type a suite
must give), ``description`` and ``tool_versions()`` (part of the artifact id). By stage:

- ``torch``: optional ``formats`` (those its result can be exported to / run in; default every format);
  ``compress(model, params, latents) -> (model, info)`` returns a new ``nn.Module`` (the input
  is not modified) and a JSON-able ``info`` with what changed; ``latents`` is a ``LatentSource`` of fresh
  input batches (and of fresh modules from the model's builder) for compressors that train or trace
  (distillation, channel pruning), None where there is nothing to draw from; ``info["structure"]``, when
  present, is what ``restructure(model, structure)`` needs to turn a freshly built parent into the compressed
  module's shape, so a worker can load the compressed ``state_dict`` (no pickled modules anywhere); a structure
  ``{"rebuild": {"builder": "pkg.module:attr" or "", "kwargs": {...}}}`` says the compressed module is built
  afresh instead (by that builder, or the model's own with its ``builder_kwargs`` overlaid).
- ``onnx`` / ``tflite``: ``compress_file(src, dst, params, calibration) -> info`` writes a compressed copy of an
  exported file of that format.
- ``export``: ``formats`` (those it writes) and ``export_file(model, inputs, path, fmt, params, calibration) ->
  info`` writes a compressed file of format ``fmt`` straight from the torch model (PT2E quantizes the exported
  graph, so quantization and export are one step).

``calibration`` is a list of input batches (name → float32 array) drawn with seeds other than the evaluation
latents', so fidelity is never measured on the data a compressor was fitted to; so are ``LatentSource``'s.
"""
from __future__ import annotations

import contextlib
import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from harness.errors import HarnessInputError
from harness.registry import COMPRESSORS

STAGES = ("torch", "onnx", "tflite", "export")
Calibration = Sequence[Mapping[str, np.ndarray]]


class Compressor(Protocol):
    name: str
    stage: str
    description: str
    params: Mapping[str, Any]

    @staticmethod
    def tool_versions() -> dict[str, str]: ...

    def check(self, params: Mapping[str, Any]) -> None:
        """Raise ValueError saying what is wrong with a parameter value."""


@contextlib.contextmanager
def phase(doing: str) -> Iterator[None]:
    """Name what a compressor is doing (``with phase("calibrating on 8 batches"):``): an exception raised
    inside, often a library's bare internal message, is reported with it (``failure_text``)."""
    try:
        yield
    except Exception as exc:
        if not hasattr(exc, "harness_phase"):
            try:
                exc.harness_phase = doing  # type: ignore[attr-defined]
            except AttributeError:  # an exception type with __slots__: reported without the phase
                pass
        raise


def failure_text(exc: BaseException, method: str, variant: str, model: str) -> str:
    """One line for a compressor that raised: the variant, the model, what it was doing (its ``phase``), the
    exception, and where in a library it was raised (the innermost frame outside the harness)."""
    from harness.errors import missing_package

    missing = missing_package(exc)
    if missing:
        return f"{method} ({variant}) on {model} needs what is not installed: {missing}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    doing = getattr(exc, "harness_phase", "")
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    harness_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if frames and not os.path.abspath(frames[-1].filename).startswith(harness_root):
        parts = os.path.normpath(frames[-1].filename).split(os.sep)
        short = os.sep.join(parts[parts.index("site-packages") + 1:] if "site-packages" in parts else parts[-2:])
        where = f" (raised in {short}:{frames[-1].lineno}, {frames[-1].name})"
    return (f"{method} ({variant}) on {model} failed" + (f" while {doing}" if doing else "")
            + f": {type(exc).__name__}: {first}{where}")


def compressor(name: str) -> Any:
    """An instance of the compressor registered as ``name`` (compressors are registered as classes)."""
    return COMPRESSORS.get(name)()


def resolve_params(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The compressor's defaults overlaid with ``given``; unknown names, wrong types and bad values are input
    errors that say what is allowed."""
    comp = compressor(method)
    params = dict(comp.params)
    for key, value in given.items():
        if key not in comp.params:
            allowed = ", ".join(sorted(comp.params)) or "none"
            raise HarnessInputError(f"compressor {method!r}: unknown parameter {key!r} (allowed: {allowed})")
        default = comp.params[key]
        expected: tuple[type, ...] = (int, float) if isinstance(default, float) else (type(default),)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise HarnessInputError(f"compressor {method!r}: parameter {key!r} must be {type(default).__name__}, "
                                    f"not {type(value).__name__}")
        params[key] = float(value) if isinstance(default, float) else value
    try:
        comp.check(params)
    except ValueError as exc:
        raise HarnessInputError(f"compressor {method!r}: {exc}") from None
    return params


def check_choice(params: Mapping[str, Any], key: str, choices: Sequence[str]) -> None:
    if params[key] not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, not {params[key]!r}")


def refuse_missing_layers(found: Mapping[str, Any], seen: Any, where: str) -> None:
    """``keep_float_layers``: a one-line ``ValueError`` naming the layers (``found``: layer → its nodes) with no node
    in ``where`` ("the ONNX file", "the exported graph"), and up to 12 of the layers it has (``seen``)."""
    missing = [layer for layer, nodes in found.items() if not nodes]
    if missing:
        known = ", ".join(sorted(s for s in seen if s)[:12])
        raise ValueError(f"keep_float_layers: no node of layer {', '.join(missing)} in {where} "
                         f"(its layers: {known or 'none recorded'})")


def check_fraction(params: Mapping[str, Any], key: str = "amount") -> None:
    if not 0.0 < params[key] < 1.0:
        raise ValueError(f"{key} must be a fraction strictly between 0 and 1, not {params[key]}")


def variant_formats(variant: Any, suite_formats: Sequence[str]) -> tuple[str, ...]:
    """The suite formats a variant is measured in: a torch-stage variant in every one its compressor can be
    exported to (``formats``, default all), a file-stage variant in its own format only."""
    comp = compressor(variant.method)
    allowed = getattr(comp, "formats", None) or (suite_formats if comp.stage in ("torch", "export") else (comp.stage,))
    return tuple(f for f in suite_formats if f in allowed)


def calibration_batches(make_inputs: Any, batch: int, seed: int, count: int) -> list[dict[str, np.ndarray]]:
    """``count`` input batches with seeds ``seed+1 … seed+count`` (the evaluation inputs use ``seed``)."""
    return [make_inputs(batch, seed + 1 + i) for i in range(count)]


TRAINING_SEED_OFFSET = 100_000
"""Training batches (distillation) use seeds ``seed + TRAINING_SEED_OFFSET + i``: disjoint from the evaluation
inputs (``seed``), calibration (``seed+1…``) and the fidelity sample set (``seed + 900000``)."""


@dataclass(frozen=True)
class LatentSource:
    """Fresh, seeded input batches from a model's ``make_inputs(batch, seed)``, for compressors that train or
    trace; and ``build(**overrides)``, a fresh untrained module from the model's own builder with its
    ``builder_kwargs`` overlaid (a student of another width), None where the builder is not at hand."""

    make_inputs: Callable[[int, int], dict[str, np.ndarray]]
    seed: int
    build: Callable[..., Any] | None = None
    sampler: Any = None
    """The denoiser's ``harness.diffusion.Sampler`` (None for other generators): distillation can train on the
    inputs its sampling trajectories visit."""

    def batch(self, size: int, index: int) -> dict[str, np.ndarray]:
        """Training batch number ``index`` (0, 1, …) of ``size`` inputs."""
        return self.make_inputs(size, self.seed + TRAINING_SEED_OFFSET + index)


BUILTIN = {
    "prune-channels": "channels", "distill": "distill", "separable": "distill",
    "quant-dynamic": "onnx_quant", "quant-static": "onnx_quant", "fp16": "onnx_quant", "pt2e-int8": "pt2e",
    "tflite-dynamic": "tflite_quant", "tflite-weight-only": "tflite_quant", "tflite-int8": "tflite_quant",
    "tflite-fp16": "tflite_quant", "torch-int8": "torch_quant", "prune-l1": "unstructured",
    "prune-random": "unstructured",
}
"""The built-in compressors and their modules, named lazily: a lookup imports one module (loading a pruned model
in a worker imports ``channels`` alone), and listing them imports none."""

for _name, _module in BUILTIN.items():
    COMPRESSORS.register_lazy(_name, f"harness.compress.{_module}")
