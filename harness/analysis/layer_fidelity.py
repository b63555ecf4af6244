"""Where fidelity breaks (pure): an artifact's intermediate tensors matched to the fp32 PyTorch model's leaf
modules, PSNR per layer in the order the layers ran, and the first layer whose PSNR falls by at least
``DROP_DB`` below the layer before it (the model's inputs count as a perfect 100 dB). Matching: PyTorch tensors come
keyed by module path; ONNX probe outputs through the probe's {tensor: module path}; LiteRT tensors through the
converter's scope chains in the tensor name (``_module_of``) and the activation their op fused, channels-last
transposed back where the layout differs."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from harness.analysis.fidelity import psnr

DROP_DB = 6.0
"""A layer "breaks" fidelity when its PSNR is at least this many dB below the previous matched layer's."""
CAP_DB = 100.0
"""PSNR above this (round-off) or identical tensors count as this."""


@dataclass(frozen=True)
class LayerFidelity:
    """``layers``: [{"layer", "psnr" (dB, capped; 0 for NaN / inf), "max_abs_error" (None for NaN / inf)}] in
    execution order; ``first_break``: the first
    layer whose PSNR fell by ≥ ``DROP_DB`` (None when none did), with ``drop_db``; ``matched`` of ``modules``
    (a pruned variant's layers of another width, or layers a converter fused away, are not compared)."""

    layers: tuple[Mapping[str, Any], ...]
    first_break: str | None
    drop_db: float | None
    matched: int
    modules: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    worst: str | None = None
    """The matched layer with the lowest PSNR."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aligned(candidate: np.ndarray, reference: np.ndarray, channels_last: bool = False) -> np.ndarray | None:
    """``candidate`` in the reference's layout: as is, channels-last moved back to channels-first, or None.
    ``channels_last``: the runtime keeps 4-D activations NHWC (LiteRT), so that reading wins when both fit (C = H =
    W)."""
    nchw = candidate.transpose(0, 3, 1, 2) if candidate.ndim == reference.ndim == 4 else None
    if channels_last and nchw is not None and nchw.shape == reference.shape:
        return nchw
    if candidate.shape == reference.shape:
        return candidate
    if nchw is not None and nchw.shape == reference.shape:
        return nchw
    if candidate.ndim == reference.ndim == 3 and candidate.transpose(0, 2, 1).shape == reference.shape:
        return candidate.transpose(0, 2, 1)
    if candidate.size == reference.size and candidate.shape[:1] == reference.shape[:1] and reference.ndim <= 2:
        return candidate.reshape(reference.shape)
    return None


FUSED = {"RELU": lambda x: np.maximum(x, 0.0), "RELU6": lambda x: np.clip(x, 0.0, 6.0),
         "RELU_N1_TO_1": lambda x: np.clip(x, -1.0, 1.0), "RELU_0_TO_1": lambda x: np.clip(x, 0.0, 1.0),
         "TANH": np.tanh}
"""LiteRT's fused activations, applied to a module's reference output when the op that wrote its tensor fused one."""


def match_by_chain(tensors: Mapping[str, np.ndarray], chains: Mapping[str, str], reference: Mapping[str, np.ndarray],
                   fused: Mapping[str, str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """LiteRT tensors → module paths: a tensor whose name (up to the first ';') is a module's scope chain, and whose
    values fit the module's output; the last such tensor written wins (``tensors`` in the order ops wrote them).
    Returns the matches and, per matched module, the activation its op fused (from ``fused``: tensor → name)."""
    by_chain = {chain: path for path, chain in chains.items()}
    found: dict[str, np.ndarray] = {}
    activations: dict[str, str] = {}
    for name, array in tensors.items():
        path = _module_of(name, by_chain, reference, (fused or {}).get(name) in FUSED)
        if path is not None and _aligned(array, reference[path], channels_last=True) is not None:
            found[path] = array
            activations.pop(path, None)
            if (fused or {}).get(name) in FUSED:
                activations[path] = fused[name]
    return found, activations


def _module_of(name: str, by_chain: Mapping[str, str], reference: Mapping[str, np.ndarray], fused: bool) -> str | None:
    """The leaf module a LiteRT tensor holds the output of. Its name lists the locations of the ops fused into the
    one that wrote it (';;'-separated, each with an optional ';N' suffix), the op that finished it first: a leaf
    module there is the answer; a parent scope there (a functional op such as ``torch.relu``) counts only when it
    is the activation the op fused, and then the next location names the module."""
    parts = [part.split(";", 1)[0] for part in name.split(";;")]
    first = by_chain.get(parts[0])
    if first in reference:
        return first
    if fused:
        return next((by_chain[p] for p in parts[1:] if by_chain.get(p) in reference), None)
    return None


def compare_layers(reference: Mapping[str, np.ndarray], order: Sequence[str], candidate: Mapping[str, np.ndarray],
                   activations: Mapping[str, str] | None = None, channels_last: bool = False) -> LayerFidelity:
    """PSNR of each matched layer against the reference, in ``order``, and where it first breaks. ``activations``:
    per layer, a fused activation (``FUSED``) the candidate's tensor includes, applied to the reference first;
    ``channels_last``: the candidate's 4-D tensors are NHWC (LiteRT)."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    previous, first_break, drop = CAP_DB, None, None
    for path in order:
        if path not in candidate or path not in reference:
            continue
        ref = np.asarray(reference[path], np.float64)
        if (activations or {}).get(path) in FUSED:
            ref = FUSED[activations[path]](ref)
        got = _aligned(np.asarray(candidate[path], np.float64), ref, channels_last)
        if got is None:
            notes.append(f"{path}: shape {tuple(np.shape(candidate[path]))} does not fit {ref.shape}")
            continue
        if not np.all(np.isfinite(got)):
            value = 0.0
        else:
            value = psnr(got, ref)
            value = CAP_DB if math.isinf(value) or value > CAP_DB else (0.0 if math.isnan(value) else value)
        rows.append({"layer": path, "psnr": value, "max_abs_error": float(np.max(np.abs(got - ref)))
                     if np.all(np.isfinite(got)) else None})
        if first_break is None and previous - value >= DROP_DB:
            first_break, drop = path, previous - value
        previous = value
    worst = min(rows, key=lambda r: r["psnr"])["layer"] if rows else None
    return LayerFidelity(tuple(rows), first_break, drop, len(rows), len(order), tuple(notes[:5]), worst)
