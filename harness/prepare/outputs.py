"""Generators that do not return one tensor: diffusers' ``UNet2DOutput`` / ``DecoderOutput`` (``BaseOutput``),
transformers' ``ModelOutput``, dicts, tuples, named tuples, dataclasses; and generators benchmarked through a
method other than ``forward`` (AutoencoderKL's ``decode``).

``with_output(model, output, method)`` gives the built model a ``forward`` that calls ``method`` and returns the one
image tensor: the declared ``output`` (a name: attribute or key; or an index), or, by default, the only tensor in the
result. It does so by giving the instance a subclass of its own class (not a wrapper module), so parameter names,
checkpoints, pruning plans and layer paths stay those of the user's model. Every export, runtime and reference then
sees the same single tensor. A choice that cannot be made is a one-line ``HarnessInputError`` naming what the model
returned.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from harness.errors import HarnessInputError

OUTPUT_SELECTED = "_edge_harness_output"
"""Attribute of a model whose output ``with_output`` selects: (output, method)."""


def with_output(model: Any, output: str | int | None = None, method: str = "forward") -> Any:
    """``model`` (in place, and returned) with a ``forward`` that runs ``method`` and returns one tensor."""
    if getattr(model, OUTPUT_SELECTED, None) is not None:
        return model
    base = type(model)
    target = getattr(base, method, None)
    if not callable(target):
        raise HarnessInputError(f"{base.__name__} has no method {method!r} to benchmark (method = {method!r})")

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return select_output(target(self, *args, **kwargs), output, f"{base.__name__}.{method}")

    try:
        forward.__signature__ = inspect.signature(target)  # type: ignore[attr-defined]  # what forward takes
    except (TypeError, ValueError):
        pass
    selected = type(base.__name__, (base,), {"forward": forward, "__module__": __name__,
                                             "__qualname__": f"{base.__qualname__}[{method} → one tensor]"})
    model.__class__ = selected
    object.__setattr__(model, OUTPUT_SELECTED, (output, method))
    return model


def select_output(result: Any, output: str | int | None, where: str) -> Any:
    """The one tensor of ``result`` that ``output`` names (None: the only tensor in it)."""
    import torch

    if isinstance(result, torch.Tensor) and output in (None, 0):
        return result
    named = _named_parts(result)
    if output is None:
        tensors = [(name, value) for name, value in named if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0][1]
        found = ", ".join(str(name) for name, _ in tensors) or "none"
        raise HarnessInputError(f"{where} returned a {type(result).__name__} with {len(tensors)} tensors ({found}): "
                                "declare which one is the image, e.g. output = \"sample\" (or an index)")
    if isinstance(output, int):
        values = [value for _, value in named]
        if not -len(values) <= output < len(values):
            raise HarnessInputError(f"{where} returned {len(values)} outputs: output = {output} is out of range")
        value = values[output]
    else:
        matches = [value for name, value in named if name == output]
        if not matches:
            names = ", ".join(str(name) for name, _ in named) or "none"
            raise HarnessInputError(f"{where} returned a {type(result).__name__} without {output!r} (it has: "
                                    f"{names}): set output to one of those")
        value = matches[0]
    if not isinstance(value, torch.Tensor):
        raise HarnessInputError(f"{where}: output {output!r} is not a tensor but {type(value).__name__}")
    return value


def _named_parts(result: Any) -> list[tuple[str | int, Any]]:
    """(name or index, value) of a structured result, in its order; a tensor alone is [(0, tensor)]."""
    if isinstance(result, dict):  # dicts, and diffusers' BaseOutput / transformers' ModelOutput (OrderedDicts)
        return [(str(k), v) for k, v in result.items()]
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return [(f.name, getattr(result, f.name)) for f in dataclasses.fields(result)]
    if isinstance(result, tuple) and hasattr(result, "_fields"):  # a named tuple
        return list(zip(result._fields, result))
    if isinstance(result, (tuple, list)):
        return list(enumerate(result))
    return [(0, result)]
