"""Where fidelity breaks (pure): an artifact's intermediate tensors matched to the fp32 PyTorch model's leaf
modules, PSNR per layer in the order the layers ran, and the first layer whose PSNR falls by at least
``DROP_DB`` below the layer before it (the model's inputs count as a perfect 100 dB). Matching: PyTorch tensors come
keyed by module path; ONNX probe outputs through the probe's {tensor: module path}; LiteRT tensors through the
converter's scope chains in the tensor name (``_module_of``) and the activation their op fused — several tensors can
carry a module's name (layout copies, steps inside it) and a C = H = W tensor reads two ways, so the closest reading
of the module's output is taken."""
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


def _layouts(candidate: np.ndarray, reference: np.ndarray) -> list[np.ndarray]:
    """Every reading of ``candidate`` in the reference's layout: as is, channels-last moved back to channels-first
    (both when C = H = W makes them the same shape), a 3-D transpose, or a 2-D reshape of the same size."""
    out = []
    if candidate.shape == reference.shape:
        out.append(candidate)
    if candidate.ndim == reference.ndim == 4 and candidate.transpose(0, 3, 1, 2).shape == reference.shape:
        out.append(candidate.transpose(0, 3, 1, 2))
    if candidate.ndim == reference.ndim == 3 and candidate.transpose(0, 2, 1).shape == reference.shape:
        out.append(candidate.transpose(0, 2, 1))
    if not out and candidate.size == reference.size and candidate.shape[:1] == reference.shape[:1] \
            and reference.ndim <= 2:
        out.append(candidate.reshape(reference.shape))
    return out


FUSED = {"RELU": lambda x: np.maximum(x, 0.0), "RELU6": lambda x: np.clip(x, 0.0, 6.0),
         "RELU_N1_TO_1": lambda x: np.clip(x, -1.0, 1.0), "RELU_0_TO_1": lambda x: np.clip(x, 0.0, 1.0),
         "TANH": np.tanh}
"""LiteRT's fused activations, applied to a module's reference output when the op that wrote its tensor fused one."""


Candidate = tuple  # (tensor, the activation its op fused or None)


def match_by_chain(tensors: Mapping[str, np.ndarray], chains: Mapping[str, str], reference: Mapping[str, np.ndarray],
                   fused: Mapping[str, str] | None = None) -> dict[str, list[Candidate]]:
    """LiteRT tensors → module paths: every tensor whose name (``_module_of``) points at a leaf module and whose
    values fit its output's shape, with the activation its op fused (from ``fused``: tensor name → activation). The
    converter names layout copies and a module's intermediate steps after the module too; ``compare_layers`` takes
    the candidate closest to the module's output."""
    by_chain = {chain: path for path, chain in chains.items()}
    found: dict[str, list[Candidate]] = {}
    for name, array in tensors.items():
        activation = (fused or {}).get(name)
        path = _module_of(name, by_chain, reference, activation in FUSED)
        if path is not None and _layouts(np.asarray(array), np.asarray(reference[path])):
            found.setdefault(path, []).append((array, activation if activation in FUSED else None))
    return found


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


def _psnr(got: np.ndarray, ref: np.ndarray) -> float:
    if not np.all(np.isfinite(got)):
        return 0.0
    value = psnr(got, ref)
    return CAP_DB if math.isinf(value) or value > CAP_DB else (0.0 if math.isnan(value) else value)


def compare_layers(reference: Mapping[str, np.ndarray], order: Sequence[str],
                   candidate: Mapping[str, Any]) -> LayerFidelity:
    """PSNR of each matched layer against the reference, in ``order``, and where it first breaks. ``candidate``:
    per layer a tensor, or a list of (tensor, fused activation or None) candidates (``match_by_chain``); each is
    read in every layout that fits (``_layouts``) with its fused activation applied to the reference, and the
    closest reading is the layer's (a broken layer has no close one)."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    previous, first_break, drop = CAP_DB, None, None
    for path in order:
        if path not in candidate or path not in reference:
            continue
        options = candidate[path] if isinstance(candidate[path], list) else [(candidate[path], None)]
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for array, activation in options:
            ref = np.asarray(reference[path], np.float64)
            if activation in FUSED:
                ref = FUSED[activation](ref)
            for got in _layouts(np.asarray(array, np.float64), ref):
                value = _psnr(got, ref)
                if best is None or value > best[0]:
                    best = (value, got, ref)
        if best is None:
            shape = tuple(np.shape(options[0][0]))
            notes.append(f"{path}: shape {shape} does not fit {tuple(np.shape(reference[path]))}")
            continue
        value, got, ref = best
        rows.append({"layer": path, "psnr": value, "max_abs_error": float(np.max(np.abs(got - ref)))
                     if np.all(np.isfinite(got)) else None, "readings": sum(
                         len(_layouts(np.asarray(a), np.asarray(reference[path]))) for a, _ in options)})
        if first_break is None and previous - value >= DROP_DB:
            first_break, drop = path, previous - value
        previous = value
    worst = min(rows, key=lambda r: r["psnr"])["layer"] if rows else None
    return LayerFidelity(tuple(rows), first_break, drop, len(rows), len(order), tuple(notes[:5]), worst)
