"""A prepare step that cannot take the machine down, and whose one runaway variant costs only that variant.

The prepare child (``harness.prepare``) runs under a memory cap (``[settings] prepare_memory_mb``; by
default ``harness.launch.local.PREPARE_MEMORY_SHARE`` of this machine's memory) and, per compression or export step
of a variant, a time limit (``variant_timeout_s``). It reports each step on its progress file; when the child is
stopped (``oom``, ``timeout``) or dies (``crashed``) during a variant's step, that variant — and the variants built
on it — fail alone, named, and the model is prepared again without them (what was built is in the cache: nothing is
built twice). A fault while building the model, computing its fp32 reference or exporting fp32 fails the model, as
before: there is nothing left to measure without it.
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.protocol import PrepareRequest, WorkerResult, error_text

FAULTS = ("oom", "timeout", "crashed")
"""Prepare results that stop a child in the middle of a step (a failed result is the child's own answer)."""

_VARIANT_STEP = re.compile(r"^(?:compressing: (?P<compressed>\S+) \(|exporting (?P<exported>\S+) → )")
_MODEL_STEP = re.compile(r"^(?:building|reference outputs|exporting the decoder|building the decoder)")


class VariantOverrun(Exception):
    """A variant's step ran past ``variant_timeout_s``: the child is stopped (``LocalLauncher.run`` kills it)."""

    def __init__(self, variant: str, step: str, seconds: float) -> None:
        super().__init__(f"variant {variant}: {step} ran past variant_timeout_s = {seconds:g} s")
        self.variant = variant


def current_step(progress_path: Path) -> tuple[str, str | None]:
    """The step the child reported last (its text), and the variant it belongs to (None: the model itself, fp32).
    Lines within a step (training, distilling) belong to the step line before them."""
    try:
        lines = progress_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "", None
    for line in reversed(lines):
        try:
            what = str(json.loads(line).get("what", ""))
        except (ValueError, AttributeError):
            continue
        found = _VARIANT_STEP.match(what)
        if found:
            variant = found["compressed"] or found["exported"]
            return what, None if variant == "fp32" else variant
        if _MODEL_STEP.match(what):
            return what, None
    return "", None


class StepClock:
    """Watches the progress file while the child runs: ``check()`` raises ``VariantOverrun`` when one variant step
    has lasted longer than ``limit_s`` (0 = never)."""

    def __init__(self, progress_path: Path, limit_s: float) -> None:
        self.path, self.limit_s = progress_path, limit_s
        self.step, self.since = "", time.monotonic()

    def check(self) -> None:
        if self.limit_s <= 0:
            return
        step, variant = current_step(self.path)
        if step != self.step:
            self.step, self.since = step, time.monotonic()
        elif variant is not None and time.monotonic() - self.since > self.limit_s:
            raise VariantOverrun(variant, step, self.limit_s)


def built_on(failed: Iterable[str], variants: Iterable[Any]) -> dict[str, str]:
    """Every variant that is ``failed`` or built on one (``after``, transitively) → the failed variant it needs."""
    out = {name: name for name in failed}
    changed = True
    specs = list(variants)
    while changed:
        changed = False
        for v in specs:
            if v.name not in out and v.after in out:
                out[v.name] = out[v.after]
                changed = True
    return out


def failure_for(variant: str, cause: str, faults: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    """(status, error) of a variant left out: its own fault, or its parent's."""
    status, error = faults[cause]
    if variant == cause:
        return status, error
    return "failed", f"variant {variant} is built on {cause}, which failed: {error}"


def timeline(progress_path: Path, ended_at: float) -> list[dict[str, Any]]:
    """The preparation's steps from its progress file, in order: ``{"step", "seconds", "peak_mb"}``, one per run of
    lines with the same ``what`` (a step ends where the next begins; the last at ``ended_at``, s since the epoch).
    ``peak_mb`` is the prepare process's peak resident memory at the step's end (MiB; its validation workers are
    processes of their own): the step during which it rose is the one that needed it."""
    try:
        lines = progress_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    steps: list[dict[str, Any]] = []
    for line in lines:
        try:
            entry = json.loads(line)
            what, t, peak = str(entry["what"]), float(entry["t"]), float(entry.get("peak_mb") or 0.0)
        except (ValueError, KeyError, TypeError):
            continue
        if steps and steps[-1]["step"] == what:
            steps[-1]["peak_mb"] = max(steps[-1]["peak_mb"], peak)
            continue
        if steps:
            steps[-1]["seconds"] = round(t - steps[-1].pop("_t"), 2)
            steps[-1]["peak_mb"] = max(steps[-1]["peak_mb"], peak)
        steps.append({"step": what, "_t": t, "seconds": 0.0, "peak_mb": peak})
    if steps:
        steps[-1]["seconds"] = round(max(0.0, ended_at - steps[-1].pop("_t")), 2)
    return steps


def without_variants(request: Mapping[str, Any], left_out: Iterable[str]) -> dict[str, Any]:
    """A prepare request less the variants ``left_out`` and those built on them."""
    from harness.types import CompressionSpec

    variants = list(request.get("variants", ()))
    dropped = built_on(left_out, [CompressionSpec.from_dict(v) for v in variants])
    return {**request, "variants": [v for v in variants if v["name"] not in dropped]}


def prepare_isolating(launch: Callable[[dict[str, Any], Callable[[], None]], WorkerResult],
                      request: PrepareRequest | Mapping[str, Any], limit_s: float,
                      on_wait: Callable[[Path], None] | None = None,
                      on_attempt: Callable[[int, str, Path], None] | None = None,
                      label: str = "") -> tuple[WorkerResult, dict[str, tuple[str, str]]]:
    """Run the prepare child (``launch(request, wait)``: the launcher's run, calling ``wait`` while it waits) until
    it succeeds, or fails where no variant is to blame; each time it is stopped (``oom``, ``timeout``, also a variant
    step past ``limit_s``) or dies inside a variant's step, that variant is left out and the model prepared again.
    Returns the last result and the variants left out: variant → (status, error). ``on_wait(progress_path)`` and
    ``on_attempt(attempt, status, progress_path)`` let a caller show progress and keep the timeline. The same on this
    machine and on a lab's build node."""
    request = request.to_dict() if isinstance(request, PrepareRequest) else dict(request)
    faults: dict[str, tuple[str, str]] = {}
    while True:
        with tempfile.TemporaryDirectory(prefix="edge-harness-progress-") as tmp:
            progress_path = Path(tmp) / "progress.jsonl"
            clock = StepClock(progress_path, limit_s)

            def wait() -> None:
                if on_wait is not None:
                    on_wait(progress_path)
                clock.check()

            try:
                result = launch(without_variants(request, faults) | {"progress_path": str(progress_path)}, wait)
                step, culprit = current_step(progress_path) if result.status in FAULTS else ("", None)
            except VariantOverrun as over:
                result = WorkerResult.failure("timeout", str(over))
                step, culprit = clock.step, over.variant
            if on_attempt is not None:
                on_attempt(len(faults) + 1, result.status, progress_path)
        if result.ok or culprit is None or culprit in faults:
            return result, faults
        what = "prepare step" if result.status != "oom" else "prepare step (memory cap)"
        faults[culprit] = (result.status, f"variant {culprit} {result.status} in the {what} while "
                                             f"{step}: {error_text(result)}"[:1500])
        print(f"harness: {label or request.get('model', '')}: {faults[culprit][1].splitlines()[0]}; preparing the "
              "rest again", file=sys.stderr)
