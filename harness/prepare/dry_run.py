"""The user's model, checked before anything runs: build it and call it once on the CPU with its declared inputs
at batch 1, so that a model that cannot run is one line and exit 2, not a failed job per format with raw PyTorch
text.

Checked, each with the input it concerns and the fix:
- the factory raises, or returns something that is not an ``nn.Module`` (``harness.prepare.declared``);
- a ``forward`` argument with no declared input, or more inputs declared than ``forward`` takes;
- an input declared float that the model uses as an index (``nn.Embedding``): found by calling again with that
  input as integers;
- integer inputs that index out of range (``high`` is exclusive: values are drawn from [low, high));
- any other failure of the call (a shape the model refuses), naming every input's dtype and shape;
- a model that is not deterministic (two calls on the same inputs differ: noise drawn inside ``forward``), whose
  exports could never match its reference.

It runs in a child process of its own (``python -m harness.prepare.dry_run``, ``check_in_child``), under a memory cap
and the prepare step's time limit, before any job: a builder that aborts, hangs or eats the machine is not an input
error but a model that crashed, and is left to the prepare step, which records it per job. One build, the
declared checkpoint loaded (its mismatch is an input error too), and calls at batch 1 under ``torch.no_grad``.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.prepare.external import first_line
from harness.errors import HarnessInputError

MEMORY_SHARE = 0.6
"""The check's child may use this share of the machine's physical memory before it is stopped (``oom``)."""


def check_in_child(spec: Any, timeout_s: float, decoder_source: str = "", cache_dir: Path | None = None) -> None:
    """Check ``spec``'s model in a fresh child; raise its one-line ``HarnessInputError`` when the model cannot run.
    A child that crashed, timed out or ran out of memory raises nothing: the prepare step meets the same fault
    and records it for every job of the model. With ``cache_dir``, a model whose code, checkpoint and settings
    passed before (``passed_key``) is not checked again (a pass costs a child: seconds, most of them importing
    torch); a failure is always checked again."""
    import psutil

    from harness.launch.local import LocalLauncher

    marker = cache_dir / "checks" / f"{spec.name}-{passed_key(spec)}.ok" if cache_dir is not None else None
    if marker is not None and marker.is_file():
        return
    request = {"model": spec.name, "source": spec.source, "decoder_source": decoder_source}
    cap = int(psutil.virtual_memory().total * MEMORY_SHARE)
    result = LocalLauncher().run(request, timeout_s, memory_cap_bytes=cap, module="harness.prepare.dry_run")
    if result.status == "failed" and result.extra.get("input_error"):
        raise HarnessInputError(result.error)
    if marker is not None and result.ok:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(result.status)


def passed_key(spec: Any) -> str:
    """What a passed check depends on: the model's code as seen from here (``harness.prepare.identity``, without its
    module tree: the model is not built here), its kwargs and seed, the checkpoint file (path, size, mtime), the
    harness's, torch's and Python's versions, and this module's own source (a check that learnt something new runs
    again on a model that passed the old one: the version alone stays 0.1.0 between builds)."""
    import hashlib
    import json
    import os
    import platform
    from importlib.metadata import version

    from harness.prepare.identity import code_digest

    checkpoint = getattr(spec, "checkpoint", None)
    stat = os.stat(checkpoint.path) if checkpoint is not None and os.path.isfile(checkpoint.path) else None
    blob = json.dumps({"code": code_digest(spec), "kwargs": dict(spec.builder_kwargs), "seed": spec.seed,
                       "checkpoint": checkpoint.to_dict() if checkpoint is not None else None,
                       "checkpoint_file": [stat.st_size, stat.st_mtime_ns] if stat else None,
                       "versions": [version("edge-harness"), version("torch"), platform.python_version()],
                       "checker": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()},  # what is checked
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def check(request: dict[str, Any]) -> dict[str, Any]:
    """The child: load the model's file, build it, load its checkpoint, call it once."""
    from harness.prepare.checkpoints import load_checkpoint
    from harness.plugins import load_plugins
    from harness.zoo import get_model, load_model_file

    try:
        load_plugins()
        load_model_file(Path(request["source"]))
        spec = get_model(request["model"])
        model = build_checked(spec)
        if spec.checkpoint is not None:
            load_checkpoint(model, spec.checkpoint)
        dry_run(spec, model)
    except HarnessInputError as exc:
        return {"status": "failed", "error": str(exc), "input_error": True}
    return {"status": "ok", "error": ""}


def dry_run(spec: Any, model: Any | None = None) -> None:
    """Build ``spec``'s model (unless given) and call it once on its example inputs at batch 1; raise a one-line
    ``HarnessInputError`` naming the model, the input and the fix when it cannot run."""
    where = f"{spec.source}: model {spec.name!r}" if spec.source else f"model {spec.name!r}"
    if model is None:
        model = build_checked(spec)
    try:
        inputs = spec.make_inputs(1, spec.seed)
    except Exception as exc:
        raise HarnessInputError(f"{where}: drawing its example inputs failed: {type(exc).__name__}: "
                                f"{first_line(exc)}") from None
    _check_arguments(where, model, list(inputs))
    error = _call(model, inputs)
    if error is None:
        _check_deterministic(where, model, inputs)
        return
    if isinstance(error, HarnessInputError):  # which output is the image (``harness.prepare.outputs``)
        raise HarnessInputError(f"{where}: {error}")
    described = ", ".join(f"{n}: {a.dtype} {tuple(a.shape)}" for n, a in inputs.items())
    floats = [n for n, a in inputs.items() if np.issubdtype(a.dtype, np.floating)]
    for name in floats:  # used as an index? then it runs with integers there
        if _call(model, {**inputs, name: np.zeros(inputs[name].shape, np.int64)}) is None:
            raise HarnessInputError(
                f"{where}: input {name!r} is used as an index (e.g. nn.Embedding) but declared {inputs[name].dtype}: "
                f"declare it kind = \"integer\", low = 0, high = <number of classes> (high is exclusive)")
    integers = [n for n, a in inputs.items() if np.issubdtype(a.dtype, np.integer)]
    if integers and "index" in str(error).lower():
        zeros = {**inputs, **{n: np.zeros_like(inputs[n]) for n in integers}}
        if _call(model, zeros) is None:
            ranges = ", ".join(f"{n} = {int(inputs[n].max())}" for n in integers)
            raise HarnessInputError(
                f"{where}: an integer input indexes out of range ({type(error).__name__}: {first_line(error)}; "
                f"drew {ranges}): values are drawn from [low, high), high exclusive: set high to the table size")
    raise HarnessInputError(f"{where}: forward failed on the declared inputs ({described}): "
                            f"{type(error).__name__}: {first_line(error)} — check each input's shape (after the "
                            "batch dimension), kind and dtype")


def build_checked(spec: Any) -> Any:
    """``spec``'s model from its builder; a builder that raises or returns no ``nn.Module`` is a one-line error."""
    import torch

    where = f"{spec.source}: model {spec.name!r}" if spec.source else f"model {spec.name!r}"
    try:
        model = spec.builder(**spec.builder_kwargs)
    except HarnessInputError:
        raise
    except Exception as exc:  # the user's builder
        raise HarnessInputError(f"{where}: building it failed: {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise HarnessInputError(f"{where}: its builder returned a {type(model).__name__}, not a torch nn.Module")
    return model


def _check_arguments(where: str, model: Any, names: list[str]) -> None:
    """The declared inputs go to ``forward`` positionally, in order: their count must fit its signature."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # a builtin or C-implemented forward: the call will tell
        return
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        positional = positional + [None] * len(names)  # type: ignore[list-item]
    if len(names) < len(required):
        missing = [p.name for p in required[len(names):]]
        order = ", ".join(p.name for p in required)
        raise HarnessInputError(
            f"{where}: forward() argument {missing[0]!r} has no declared input: declare one input per argument, "
            f"in forward's order ({order}); {len(names)} declared ({', '.join(names) or 'none'})")
    if len(names) > len(positional):
        taken = ", ".join(p.name for p in positional) or "nothing"
        raise HarnessInputError(
            f"{where}: {len(names)} inputs declared ({', '.join(names)}) but forward() takes {len(positional)} "
            f"({taken}): remove {names[len(positional)]!r}")


NONDETERMINISM_TOLERANCE = 1e-4
"""Two calls on the same inputs may differ by this share of the output's scale (max(1, max |y|)): float reductions
run in another order; more is a model that draws random numbers."""


def _check_deterministic(where: str, model: Any, inputs: Mapping[str, np.ndarray]) -> None:
    """A one-line error when two calls (eval mode, each on a fresh copy of the same inputs) differ beyond
    ``NONDETERMINISM_TOLERANCE`` of each output's own scale: every export and variant is judged against one fp32
    reference, so noise drawn inside ``forward`` (StyleGAN's noise injection, a VAE's sampling step) or state kept
    between calls would read as a broken export ("export error … exceeds tolerance"). A call that raises here is
    left to the prepare step (the check says nothing)."""
    import torch

    def call() -> list[Any]:
        return _tensors(model(*(torch.tensor(np.ascontiguousarray(a)) for a in inputs.values())))

    model.eval()
    try:
        with torch.no_grad():
            first, second = call(), call()
        gaps = [(_max_difference(a, b), max(1.0, float(a.double().nan_to_num(0.0, 0.0, 0.0).abs().max())))
                for a, b in zip(first, second) if a.shape == b.shape and a.numel()]
    except Exception:  # an output the comparison cannot read (quantized, complex): not this check's to judge
        return
    diff, scale = max(gaps, key=lambda gap: gap[0] / gap[1], default=(0.0, 1.0))
    if diff > NONDETERMINISM_TOLERANCE * scale:
        raise HarnessInputError(
            f"{where}: forward is not deterministic: two calls on the same inputs differ by {diff:.3g} (max-abs), "
            "so no export or variant could match its fp32 reference; its output changes from call to call (random "
            "numbers drawn in forward, such as noise injection or sampling, or state kept between calls): declare "
            "the noise as an input, or fix it (e.g. StyleGAN's noise_mode = 'const')")


def _max_difference(a: Any, b: Any) -> float:
    """max |a − b| where they differ; the same NaN or infinity in both is no difference (a model whose outputs are
    non-finite is measured, and reported as such), NaN against a number is an infinite one."""
    import torch

    a, b = a.double(), b.double()
    differ = ~((a == b) | (torch.isnan(a) & torch.isnan(b)))
    return float((a - b)[differ].abs().nan_to_num(float("inf")).max()) if bool(differ.any()) else 0.0


def _tensors(out: Any) -> list[Any]:
    """The tensors of a model's output (a tensor, or a tuple / list / dict of them), in order."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for t in out if isinstance(t, torch.Tensor)] if isinstance(out, (list, tuple)) else []


def _call(model: Any, inputs: Mapping[str, np.ndarray]) -> BaseException | None:
    """None when the model runs on ``inputs``, else what it raised."""
    import torch

    try:
        with torch.no_grad():
            model(*(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs.values()))
    except Exception as exc:  # the user's code: any failure is the answer
        return exc
    return None


if __name__ == "__main__":
    from harness.protocol import serve

    sys.exit(serve(check))
