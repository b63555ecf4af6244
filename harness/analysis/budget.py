"""Does a measured point meet a budget? (pure). A point is one variant in one format and runtime, aggregated over
its runs (``harness.analysis.sweep_fronts.aggregate``). Two rungs:

- **screen** (one short run, few fidelity samples): could the point still meet the budget? Its speed-up may be
  ``SCREEN_SPEED_SLACK`` short of the bar and its fidelity ``SCREEN_PSNR_MARGIN_DB`` / ``SCREEN_LABELS_MARGIN`` short
  of the floor: a short pass is noisy, and a point is rejected for good only when it misses by more.
- **confirm** (repeated full runs): met *with confidence*: the speed-up's lower bound (the baseline over the highest
  CI bound of the point's median over its runs) clears the bar, the p50's upper bound stays under ``max_p50_ms``,
  fidelity clears its floor on the full sample set.

Every term that fails is a reason in words a user can act on ("PSNR 17.1 dB < 30 dB")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.analysis.sweep_fronts import as_number

SCREEN_SPEED_SLACK = 0.8
"""At the screen, a point whose speed-up is at least this share of the bar goes on to the full measurement."""
SCREEN_PSNR_MARGIN_DB = 1.0
SCREEN_LABELS_MARGIN = 0.03


FIGURES = ("min_psnr", "latency_ms", "latency_low_ms", "latency_high_ms", "p90_ms", "peak_memory_mb", "size_mb",
           "baseline_ms", "batch", "throughput", "throughput_low")
"""The figures a verdict carries (None where not measured)."""


@dataclass(frozen=True)
class Verdict:
    """``met``: every term holds (with confidence at the confirm rung); ``reasons``: each term that does not."""

    met: bool
    reasons: tuple[str, ...]
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    psnr_db: float | None = None
    labels: float | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)


number = as_number
"""float(value), or None for a missing, non-numeric or NaN value."""


def latency_of(row: Mapping[str, Any], loop: bool) -> tuple[float | None, float | None, float | None]:
    """(median, low, high) ms of the point: one inference, or the whole sampling loop for a denoiser."""
    prefix = "loop_latency" if loop else "latency"
    return (number(row.get(f"{prefix}_ms")), number(row.get(f"{prefix}_low_ms")), number(row.get(f"{prefix}_high_ms")))


def baseline_ms(row: Mapping[str, Any], loop: bool) -> float | None:
    """The budget's reference: the lowest of the fp32 ONNX Runtime row's run medians (a conservative baseline)."""
    runs = row.get("loop_latency_runs_ms" if loop else "latency_runs_ms") or []
    values = [v for v in (number(r) for r in runs) if v is not None and v > 0]
    return min(values) if values else latency_of(row, loop)[0]


def fidelity_of(row: Mapping[str, Any], loop: bool) -> tuple[float | None, float | None]:
    """(PSNR dB, label agreement): over the sampling loop's images for a denoiser. An identical output is +inf dB."""
    prefix = "loop_" if loop else ""
    return number(row.get(f"{prefix}psnr_db")), number(row.get(f"{prefix}label_agreement"))


def judge(row: Mapping[str, Any], baseline: float | None, budget: Mapping[str, float], loop: bool = False,
          rung: str = "confirm", baseline_disturbed: str = "") -> Verdict:
    """Judge one aggregated point against ``budget`` (``Budget.terms()``); ``baseline``: fp32 ONNX Runtime's ms.
    At the confirm rung a latency term is not judged from a disturbed pass (the point's or the baseline's: the
    machine was busy or hot), and the point is not met: a busy machine never confirms a speed-up."""
    if rung not in ("screen", "confirm"):
        raise ValueError(f"rung must be 'screen' or 'confirm', not {rung!r}")
    if not row.get("runs_ok"):
        error = str(row.get("error") or "no run succeeded").splitlines()[0][:200]
        return Verdict(False, (f"{row.get('status') or 'failed'}: {error}",),
                       figures=dict.fromkeys(FIGURES) | {"min_psnr": budget.get("min_psnr")})
    screen = rung == "screen"
    reasons: list[str] = []
    median, low, high = latency_of(row, loop)
    what = "loop " if loop else ""
    speedup = speedup_low = speedup_high = None
    if baseline and median:
        speedup = baseline / median
        speedup_low = baseline / high if high else speedup
        speedup_high = baseline / low if low else speedup
    disturbed = "" if screen else (row.get("loop_disturbed" if loop else "disturbed") or "")
    timed_terms = {"min_speedup", "max_p50_ms", "max_p90_ms"} & set(budget)
    if not screen and timed_terms and (disturbed or baseline_disturbed):
        whose = f"its {what}latency pass was {disturbed}" if disturbed else f"fp32's was {baseline_disturbed}"
        reasons.append(f"latency not judged: {whose}")
    bar = budget.get("min_speedup")
    if bar is not None:
        if speedup is None:
            reasons.append(f"no {what}speed-up: no fp32 ONNX Runtime baseline or no {what}latency")
        elif screen and speedup < bar * SCREEN_SPEED_SLACK:
            reasons.append(f"{what}speed-up {speedup:.2f}× < {bar:g}×")
        elif not screen and speedup_low < bar:
            reasons.append(f"{what}speed-up {speedup:.2f}× (CI low {speedup_low:.2f}×) < {bar:g}×"
                           if speedup >= bar else f"{what}speed-up {speedup:.2f}× < {bar:g}×")
    p50_cap = budget.get("max_p50_ms")
    if p50_cap is not None and median is not None:
        bound = median * SCREEN_SPEED_SLACK if screen else (high or median)
        if bound > p50_cap:
            reasons.append(f"p50 {median:.3g} ms" + ("" if screen else f" (CI high {high:.3g})") + f" > {p50_cap:g} ms")
    p90_cap, p90 = budget.get("max_p90_ms"), number(row.get("latency_p90_ms"))
    if p90_cap is not None and p90 is not None and p90 * (SCREEN_SPEED_SLACK if screen else 1.0) > p90_cap:
        reasons.append(f"p90 {p90:.3g} ms > {p90_cap:g} ms")
    psnr, labels = fidelity_of(row, loop)
    floor = budget.get("min_psnr")
    for value, term, margin, missing, shown in (
            (psnr, "min_psnr", SCREEN_PSNR_MARGIN_DB, f"no {what}PSNR measured",
             lambda v, f: f"{what}PSNR {v:.1f} dB < {f:g} dB"),
            (labels, "min_labels", SCREEN_LABELS_MARGIN,
             f"no {what}label agreement (measured for digits generators only)",
             lambda v, f: f"{what}labels {v:.3f} < {f:g}")):
        bound = budget.get(term)
        if bound is None:
            continue
        if value is None:
            reasons.append(missing)
        elif value < bound - (margin if screen else 0.0):
            reasons.append(shown(value, bound))
    memory_cap, memory = budget.get("max_memory_mb"), number(row.get("peak_rss_mb"))
    if memory_cap is not None:
        if memory is None:
            reasons.append("no peak memory measured")
        elif memory > memory_cap:
            reasons.append(f"peak memory {memory:.0f} MB > {memory_cap:g} MB")
    size_cap, size = budget.get("max_size_mb"), number(row.get("size_mb"))
    if size_cap is not None and size is not None and size > size_cap:
        reasons.append(f"size {size:.3g} MB > {size_cap:g} MB")
    batch = int(number(row.get("batch_size")) or 1)
    throughput = batch * 1e3 / median if median else None
    throughput_low = batch * 1e3 / high if high else throughput
    rate = budget.get("min_throughput")
    if rate is not None:
        shown = throughput if screen else throughput_low
        if shown is None:
            reasons.append(f"no {what}throughput: no {what}latency")
        elif (shown / SCREEN_SPEED_SLACK if screen else shown) < rate:
            reasons.append(f"{what}throughput {throughput:.4g} images/s" + ("" if screen else
                           f" (CI low {throughput_low:.4g})") + f" < {rate:g} at batch {batch}")
    figures = {"min_psnr": floor, "latency_ms": median, "latency_low_ms": low, "latency_high_ms": high, "p90_ms": p90,
               "peak_memory_mb": memory, "size_mb": size, "baseline_ms": baseline, "batch": batch,
               "throughput": throughput, "throughput_low": throughput_low}
    return Verdict(not reasons, tuple(reasons), speedup, speedup_low, speedup_high, psnr, labels, figures)


def fidelity_failed(verdict: Verdict) -> bool:
    """Whether a verdict failed on fidelity (PSNR or labels): more speed will not rescue such a point."""
    return any("PSNR" in r or "labels" in r for r in verdict.reasons)
