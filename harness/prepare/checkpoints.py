"""A user's weights: a safetensors file, or a PyTorch state_dict file loaded with ``weights_only=True`` (no
pickled code runs), optionally nested under a key (``"state_dict"``, ``"generator"``, ``"ema.model"``) or stored with a prefix
(``generator.fc.weight`` in a flat safetensors file, ``module.`` from DataParallel): the key selects and strips it.

Every problem is one ``HarnessInputError`` naming the file and what is wrong: missing, truncated or not a
checkpoint; a pickle that ``weights_only`` refuses; a key that is not there; keys the model lacks or that the
checkpoint lacks; tensors of the wrong shape. The checkpoint's sha256 goes into the artifact id, so a changed
checkpoint builds and exports again and an unchanged one does not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessInputError
from harness.hashing import file_sha256

SAFETENSORS_SUFFIXES = (".safetensors",)


@dataclass(frozen=True)
class Checkpoint:
    """Where a declared generator's weights come from."""

    path: str
    key: str = ""
    """Dotted path of the state_dict inside the file ('' = the file is the state_dict)."""
    strict: bool = True
    """Every model key must be in the checkpoint and every checkpoint key in the model."""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "key": self.key, "strict": self.strict}


def _short(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" … ({len(names)} in all)" if len(names) > n else "")


def read_state_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    """The tensors of a checkpoint (name → tensor), from the key it names."""
    import torch

    path = Path(checkpoint.path)
    if not path.is_file():
        raise HarnessInputError(f"{path}: checkpoint not found")
    if path.suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(path), device="cpu")
        except SafetensorError as exc:
            raise HarnessInputError(f"{path}: not a readable safetensors file ({exc}): truncated or another "
                                    "format?") from None
    else:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError (weights_only refused), EOFError, RuntimeError (zip), …
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "weights_only" in str(exc) or type(exc).__name__ == "UnpicklingError":
                raise HarnessInputError(f"{path}: refused by torch.load(weights_only=True): the file holds pickled "
                                        f"objects other than tensors ({text[:160]}); save model.state_dict() "
                                        "or use safetensors") from None
            raise HarnessInputError(f"{path}: not a readable PyTorch checkpoint: {type(exc).__name__}: "
                                    f"{text[:200]}") from None
    for part in [p for p in checkpoint.key.split(".") if p]:
        # a nested dict ({"generator": {...}}) or a flat one with prefixed names ("generator.fc.weight": safetensors
        # files, DataParallel's "module.")
        prefixed = {str(k)[len(part) + 1:]: v for k, v in data.items() if str(k).startswith(part + ".")} \
            if isinstance(data, Mapping) else {}
        if isinstance(data, Mapping) and isinstance(data.get(part), Mapping):
            data = data[part]
        elif prefixed:
            data = prefixed
        else:
            keys = _short(sorted(str(k) for k in data)) if isinstance(data, Mapping) else type(data).__name__
            raise HarnessInputError(f"{path}: no {part!r} in the checkpoint (checkpoint_key = {checkpoint.key!r}; "
                                    f"found: {keys})")
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        nested = [str(k) for k, v in data.items() if isinstance(v, Mapping)] if isinstance(data, Mapping) else []
        hint = f"; nested state_dicts under: {', '.join(nested[:5])} (set checkpoint_key)" if nested else ""
        raise HarnessInputError(f"{path}: not a state_dict of tensors{hint}")
    return dict(data)


def _prefix_hint(names: list[str], own: set[str], key: str) -> str:
    """'; set checkpoint_key = "P"' when every checkpoint name starts with one dotted prefix P the model's names lack
    and, without it, the names are the model's (an EMA copy, a ``module.`` wrapper, a whole training state)."""
    first = names[0].split(".") if names else []
    for n in range(1, len(first)):
        prefix = ".".join(first[:n])
        if not all(name.startswith(prefix + ".") for name in names):
            break
        stripped = {name[len(prefix) + 1:] for name in names}
        if len(stripped & own) * 2 >= len(own) > 0:
            suggested = f"{key}.{prefix}" if key else prefix
            return (f"; every checkpoint key starts with {prefix + '.'!r}, which the model's keys lack: set "
                    f"checkpoint_key = {suggested!r}")
    return ""


def load_checkpoint(model: Any, checkpoint: Checkpoint) -> str:
    """Load the checkpoint into ``model`` (in place); return its sha256."""
    import torch

    state = read_state_dict(checkpoint)
    path = checkpoint.path
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if checkpoint.strict and (missing or unexpected):
        parts = [f"missing {_short(missing)}" if missing else "", f"unexpected {_short(unexpected)}" if unexpected else ""]
        raise HarnessInputError(f"{path}: does not match the model's parameters: "
                                f"{'; '.join(p for p in parts if p)}{_prefix_hint(list(state), set(own), checkpoint.key)}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
             if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise HarnessInputError(f"{path}: tensors of the wrong shape (checkpoint vs model): {_short(wrong, 3)}")
    with torch.no_grad():
        model.load_state_dict(state, strict=checkpoint.strict)
    return file_sha256(Path(path))
