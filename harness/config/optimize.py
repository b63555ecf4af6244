"""What ``harness optimize`` is asked for: a budget (how fast, how faithful, how small) and how long to search,
from the command line, a project file's ``[optimize]`` table or the API — checked here, with one-line errors.

    [optimize]
    model = "my_gan"
    target = "x86-cpu"
    min_speedup = 5.0        # × the lower of two rounds of fp32 ONNX Runtime's p50 (its loop for a denoiser)
    min_psnr = 30.0          # dB vs fp32 (over the sampling loop for a denoiser)
    min_labels = 0.95        # label agreement with fp32 (digits generators)
    max_p50_ms = 2.0         # the p50's CI must lie below this
    max_p90_ms = 3.0
    max_memory_mb = 200.0    # peak resident memory of the worker (runtime included)
    max_size_mb = 4.0        # the artifact's file
    min_throughput = 500.0   # images/s: batch / p50 (the whole loop for a denoiser); lets the search batch
    batch = 1
    time_limit = "45m"       # "90s", "4m", "1h" or seconds
    formats = ["onnx", "tflite", "executorch"]
    knobs = ["quantize", "mixed-precision", "distill", "compose", "threads"]   # harness optimize --list-knobs
    methods = []             # only these compressors (default: every one a knob proposes)
    seed = 0
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessInputError
from harness.config.tomlconfig import check_keys, check_list_of
from harness.types import FitBudget

FORMATS = ("torch", "onnx", "tflite", "executorch")


@dataclass(frozen=True)
class Budget:
    """What a deployable variant must achieve; ``None`` = not asked. Speed-ups are against fp32 ONNX Runtime on the
    same target at the same batch (the lower of two rounds' p50: a conservative baseline), measured in the same run."""

    min_speedup: float | None = None
    min_psnr: float | None = None
    """dB vs the fp32 model's outputs (the whole sampling loop's images for a denoiser)."""
    min_labels: float | None = None
    """Share of samples on which the digits classifier reads the same digit as from fp32."""
    max_p50_ms: float | None = None
    max_p90_ms: float | None = None
    max_memory_mb: float | None = None
    """Peak resident memory of the measuring worker (MiB), the runtime's own included."""
    max_size_mb: float | None = None
    """The artifact file (MiB)."""
    min_throughput: float | None = None
    """Images per second: batch / p50 (batch / the whole loop's p50 for a denoiser), from the p50's CI upper bound
    at the confirm rung. With it the search also tries larger batches (the ``batch`` knob)."""

    def terms(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def within(self, fit: FitBudget) -> tuple["Budget", list[str]]:
        """This budget with the target's ``[fit]`` memory and storage as ``max_memory_mb`` / ``max_size_mb`` where it
        sets none (a variant that does not fit the device is no answer), and the terms so taken, in words."""
        taken, changes = [], {}
        if fit.memory_mb and self.max_memory_mb is None:
            changes["max_memory_mb"] = fit.memory_mb
            taken.append(f"memory ≤ {fit.memory_mb:g} MB")
        if fit.storage_mb and self.max_size_mb is None:
            changes["max_size_mb"] = fit.storage_mb
            taken.append(f"size ≤ {fit.storage_mb:g} MB")
        return replace(self, **changes), taken

    def describe(self) -> str:
        words = {"min_speedup": "≥ {:g}× fp32 ONNX Runtime", "min_psnr": "PSNR ≥ {:g} dB", "min_labels": "labels ≥ {:g}",
                 "max_p50_ms": "p50 ≤ {:g} ms", "max_p90_ms": "p90 ≤ {:g} ms", "max_memory_mb": "memory ≤ {:g} MB",
                 "max_size_mb": "size ≤ {:g} MB", "min_throughput": "throughput ≥ {:g} images/s"}
        return ", ".join(words[k].format(v) for k, v in self.terms().items()) or "no budget (the fastest faithful point)"


@dataclass(frozen=True)
class OptimizeSpec:
    """One search: a model on a target at a batch size, a budget and a time limit (seconds)."""

    model: str
    target: str
    budget: Budget = field(default_factory=Budget)
    batch: int = 1
    time_limit_s: float = 45 * 60.0
    formats: tuple[str, ...] = ("onnx", "tflite", "executorch")
    knobs: tuple[str, ...] = ()
    """The search knobs to turn (() = every registered knob, ``harness.run.knobs``)."""
    methods: tuple[str, ...] = ()
    """Only these compressors (() = any a knob proposes)."""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["budget"] = self.budget.terms()
        return out


_BUDGET_KEYS = {f.name: (float, int) for f in fields(Budget)}
_SCHEMA = {**_BUDGET_KEYS, "model": str, "target": str, "batch": int, "time_limit": (str, int, float),
           "formats": list, "knobs": list, "methods": list, "seed": int}


def parse_duration(text: str | float | int, where: str = "time_limit") -> float:
    """'90s', '4m', '1.5h', '45' (seconds) or a number → seconds; a one-line error otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
        if not found:
            raise HarnessInputError(f"{where} = {text!r}: give a duration such as 90s, 4m or 1h")
        seconds = float(found.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[found.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise HarnessInputError(f"{where} = {text!r}: must be a positive duration")
    return seconds


def check_optimize_table(source: Path | str, table: Mapping[str, Any]) -> None:
    """Keys and types of an ``[optimize]`` table (its values are checked when a search is made from it)."""
    check_keys(Path(str(source)), table, _SCHEMA, where="optimize")


def optimize_from_table(source: Path | str, table: Mapping[str, Any], base: OptimizeSpec | None = None) -> OptimizeSpec:
    """An ``[optimize]`` table (or the API's / CLI's keywords, as a mapping) on top of ``base``; checked."""
    check_keys(Path(str(source)), table, _SCHEMA, where="optimize")
    budget = dict(asdict(base.budget)) if base else {}
    for key in _BUDGET_KEYS:
        if key in table:
            value = float(table[key])
            if not math.isfinite(value) or value < 0 or (key.startswith("max_") and value == 0):
                raise HarnessInputError(f"{source}: [optimize] {key} = {table[key]!r} must be a positive number")
            if key == "min_labels" and value > 1:
                raise HarnessInputError(f"{source}: [optimize] min_labels is a share of samples (0–1), not {value:g}")
            budget[key] = value
    current = asdict(base) if base else {}
    model = table.get("model", current.get("model", ""))
    target = table.get("target", current.get("target", ""))
    if not model or not target:
        raise HarnessInputError(f"{source}: harness optimize needs a model and a target (--model NAME --target NAME, "
                                f"or model = / target = in [optimize])")
    for key in ("formats", "knobs", "methods"):
        if key in table:
            check_list_of(Path(str(source)), f"optimize.{key}", table[key], str)
    formats = tuple(table.get("formats", current.get("formats", OptimizeSpec.formats)))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise HarnessInputError(f"{source}: [optimize] formats: {', '.join(unknown) or 'none given'} "
                                f"(known: {', '.join(FORMATS)})")
    batch = table.get("batch", current.get("batch", 1))
    if batch < 1:
        raise HarnessInputError(f"{source}: [optimize] batch must be at least 1")
    limit = parse_duration(table["time_limit"], f"{source}: [optimize] time_limit") if "time_limit" in table \
        else current.get("time_limit_s", OptimizeSpec.time_limit_s)
    return OptimizeSpec(model=model, target=target, budget=Budget(**budget), batch=batch, time_limit_s=limit,
                        formats=formats, knobs=tuple(table.get("knobs", current.get("knobs", ()))),
                        methods=tuple(table.get("methods", current.get("methods", ()))),
                        seed=table.get("seed", current.get("seed", 0)))
