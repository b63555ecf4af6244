"""Whether a record's timings were taken on a quiet machine (pure): a latency pass flagged by its worker as measured
under contention, on a throttling CPU, or after a cooldown that did not reach its limit is *disturbed*; its
latency figures stay in the tables, marked, and out of verdicts (best variant, speed-ups and their flags, the gate)
unless the user accepts them."""
from __future__ import annotations

from typing import Any


OTHER_PASSES = {"loop": ("loop_contention", "sampling loop")}
"""Timed passes besides the latency pass, each a worker of its own with its own quiet check: (context key, name).
(LoadGen's scenarios keep theirs in ``context["loadgen"][scenario]["contention"]``; LoadGen is never gated.)"""
PASS_OF_METRIC = {"loop_latency_p50": "loop"}
"""Gated metrics read from those passes."""


def disturbance(record: Any, timed_pass: str = "latency") -> str:
    """Why the record's timings of ``timed_pass`` ('latency', or 'loop': the sampling loop's) are not fit for
    verdicts, one line ('' when they are)."""
    context = getattr(record, "context", {}) or {}
    if timed_pass in OTHER_PASSES:
        key, what = OTHER_PASSES[timed_pass]
        busy = context.get(key) or {}
        if busy.get("contended"):
            return (f"{what} measured under contention: other processes kept {busy.get('others_cores', 0):.2f} "
                    f"CPU(s) busy (limit {busy.get('limit_cores', 0):g})")
        return ""
    contention = context.get("contention") or {}
    if contention.get("contended"):
        rounds = f" in {contention['rounds_contended']} round(s)" if contention.get("rounds_contended") else ""
        return (f"measured under contention{rounds}: other processes kept {contention.get('others_cores', 0):.2f} "
                f"CPU(s) busy (limit {contention.get('limit_cores', 0):g})")
    if context.get("throttled"):
        return "the CPU throttled during the timed pass (its frequency fell)"
    cooldown = context.get("cooldown") or {}
    if cooldown.get("reached") is False:
        temp = cooldown.get("temp_c_end")
        where = [f"{temp:.0f} °C (limit {cooldown.get('limit_c')} °C)"] if temp is not None else []
        where += ["the CPU clock still thermally capped"] if cooldown.get("cooling_end") else []
        return f"timed hot: {' with '.join(where) or 'not cooled'} after the cooldown's cap"
    return ""
