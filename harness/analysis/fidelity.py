"""Output fidelity of a (compressed) generator against the fp32 PyTorch reference, on the same latents, and
the figures a compression step recorded. Pure functions."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.types import Artifact, Measurement


def data_range(reference: np.ndarray) -> tuple[float, str]:
    """The range PSNR is taken over: 1 for outputs in [0, 1] (sigmoid), 2 for outputs in [-1, 1] (tanh) —
    scikit-image's convention for float images — else the reference's own max − min (finite values only)."""
    finite = np.asarray(reference)[np.isfinite(reference)]
    if not finite.size:
        return 1.0, "range [0,1]"
    lo, hi = float(np.min(finite)), float(np.max(finite))
    if lo >= 0.0 and hi <= 1.0:
        return 1.0, "range [0,1]"
    if lo >= -1.0 and hi <= 1.0:
        return 2.0, "range [-1,1]"
    return hi - lo, "range of the reference"


def psnr(output: np.ndarray, reference: np.ndarray, value_range: tuple[float, float] | None = None) -> float:
    """Peak signal-to-noise ratio in dB (inf when the outputs are identical), over ``value_range`` when the
    model declares one, else over ``data_range(reference)``."""
    mse = float(np.mean((np.asarray(output, np.float64) - np.asarray(reference, np.float64)) ** 2))
    peak = value_range[1] - value_range[0] if value_range else data_range(reference)[0]
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def output_fidelity(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray],
                    value_range: tuple[float, float] | None = None) -> list[Measurement] | None:
    """Fidelity of all outputs together vs the reference; None when counts or shapes differ.

    ``nonfinite_outputs``: the fraction of output values that are NaN or ±inf (always recorded, so that a gate
    sees one appear). max-abs error and PSNR (left out for identical outputs: max-abs 0 says it) are taken
    over the values finite in both; they are left out altogether, and ``nonfinite_mismatch`` (the fraction of
    values finite on one side only) recorded instead, when outputs and the fp32 reference differ in where they
    are NaN / ±inf — a figure over the rest would hide the failure."""
    if len(outputs) != len(reference) or any(np.shape(o) != np.shape(r) for o, r in zip(outputs, reference)):
        return None
    out = np.concatenate([np.ravel(o) for o in outputs]).astype(np.float64)
    ref = np.concatenate([np.ravel(r) for r in reference]).astype(np.float64)
    out_ok, ref_ok = np.isfinite(out), np.isfinite(ref)
    agree = (np.isnan(out) & np.isnan(ref)) | (np.isinf(out) & (out == ref))
    diverged = int(np.count_nonzero(~(out_ok & ref_ok) & ~agree))
    n_bad = int(np.count_nonzero(~out_ok))
    note = ""
    if diverged:
        note = (f"{n_bad} of {out.size} values NaN/inf; {diverged} differ from fp32 PyTorch in being finite or "
                "not: no max-abs error or PSNR")
    elif n_bad:
        note = f"{n_bad} of {out.size} values NaN/inf, as in fp32 PyTorch: error figures over the finite ones"
    measurements = [Measurement("nonfinite_outputs", n_bad / out.size if out.size else 0.0, "fraction",
                                "isfinite", note=note)]
    if diverged:
        measurements.append(Measurement("nonfinite_mismatch", diverged / out.size, "fraction", "isfinite-vs-torch-fp32",
                                        note="values NaN/inf on one side and not the other (or another infinity)"))
        return measurements
    both = out_ok & ref_ok
    out, ref = out[both], ref[both]
    measurements.append(Measurement("max_abs_error", float(np.max(np.abs(out - ref))) if out.size else 0.0,
                                    "abs", "vs-torch-fp32"))
    value = psnr(out, ref, value_range) if out.size else math.inf
    if math.isfinite(value):
        note = f"declared range [{value_range[0]:g},{value_range[1]:g}]" if value_range else data_range(ref)[1]
        measurements.append(Measurement("psnr", value, "dB", "vs-torch-fp32", note=note))
    return measurements


def all_finite(arrays: Sequence[np.ndarray]) -> bool:
    return all(bool(np.all(np.isfinite(a))) for a in arrays)


def sample_fidelity(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray], spec: Any,
                    cache_root: Path, images: bool = False) -> list[Measurement] | None:
    """Fidelity over the sample set (the worker generates as many whole batches of it as fit): max-abs error
    and PSNR, plus, for a generator trained on digits, the digits-classifier Fréchet distance to the fp32
    outputs and to the real digits, and label agreement with the fp32 outputs (left out when either side has
    NaN / inf values: a classifier reads nothing from them). ``images``: the outputs are generated images whatever
    the training objective (a denoiser's sampling loop). None when shapes differ."""
    if len(outputs) != len(reference) or not outputs:
        return None
    n = len(outputs[0])
    reference = [r[:n] for r in reference]
    measurements = output_fidelity(outputs, reference, getattr(spec, "output_range", None))
    if measurements is None or n == 0:
        return measurements
    note = f"{n} samples"
    measurements = [dataclasses.replace(m, note=f"{m.note}; {note}" if m.note else note) for m in measurements]
    training = getattr(spec, "training", None)
    if training is not None and (images or training.objective == "vae") and n >= 2 \
            and all_finite(outputs[:1]) and all_finite(reference[:1]):
        measurements.extend(digits_fidelity(outputs[0], reference[0], training.images, cache_root))
    return measurements


def digits_fidelity(output: np.ndarray, reference: np.ndarray, images: Any, cache_root: Path) -> list[Measurement]:
    """FID-analogue figures of generated digits (N, C, H, W) vs the fp32 generator's on the same latents."""
    from harness.digits import classifier, frechet_distance, label_agreement, real_digit_features

    clf = classifier(cache_root)
    feats, labels = clf.features_and_labels(images.to_digits(output))
    ref_feats, ref_labels = clf.features_and_labels(images.to_digits(reference))
    note = f"{len(output)} samples; classifier held-out accuracy {clf.accuracy:.3f}"
    return [
        Measurement("frechet_distance", frechet_distance(feats, ref_feats), "feature²",
                    "digits-classifier-vs-torch-fp32", note=note),
        Measurement("frechet_distance_digits", frechet_distance(feats, real_digit_features(cache_root)),
                    "feature²", "digits-classifier-vs-real-digits", note=note + "; 1797 real digits"),
        Measurement("label_agreement", label_agreement(labels, ref_labels), "fraction",
                    "digits-classifier-vs-torch-fp32", note=note),
    ]


_COMPRESSION_FIGURES = {
    "sparsity": ("weight_sparsity", "fraction", "zeros/weights"),
    "parameters": ("parameters", "count", "torch-parameters"),
}
_COVERAGE_FIGURES = ("ops_int8_fraction", "ops_fp16_fraction", "weights_int8_fraction", "weights_fp16_fraction")


def compression_measurements(artifact: Artifact) -> list[Measurement]:
    """What the compression behind ``artifact`` changed, as measurements (sparsity, parameters, coverage)."""
    info: dict[str, Any] = dict(artifact.compression)
    out = [Measurement(metric, float(info[key]), unit, method)
           for key, (metric, unit, method) in _COMPRESSION_FIGURES.items() if key in info]
    training = info.get("distillation")
    if training:  # the curve's losses as samples: the JSON keeps the whole training curve
        curve = training["curve"]
        out.append(Measurement("distill_loss", float(training["final_loss"]), "mse", "distillation-vs-teacher",
                               samples=tuple(float(loss) for _, loss in curve),
                               note=f"mean training loss per {curve[0][0]} steps, {curve[-1][0]} steps in "
                                    f"{training['train_seconds']:g} s"))
    coverage = info.get("coverage") if artifact.format in ("onnx", "tflite", "executorch") else None
    if coverage:
        out.extend(Measurement(key, float(coverage[key]), "fraction", f"{artifact.format}-graph")
                   for key in _COVERAGE_FIGURES)
    # ExecuTorch: what the partitioner delegated, read from the lowered program (a PT2E file's coverage, or the
    # exporter's ``delegation`` for an fp32 or torch-variant export).
    lowered = coverage if coverage and "ops_delegated_fraction" in coverage else info.get("delegation")
    if artifact.format == "executorch" and lowered:
        portable = lowered.get("portable_ops", {})
        out.append(Measurement("ops_delegated_fraction", float(lowered["ops_delegated_fraction"]), "fraction",
                               "executorch-graph", note=("left to portable kernels: " + ", ".join(
                                   f"{k} ×{v}" for k, v in portable.items())) if portable else ""))
    return out
