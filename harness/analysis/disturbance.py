"""Whether a record's timings were taken on a quiet machine (pure): a latency pass flagged by its worker as measured
under contention, on a throttling CPU, or after a cooldown that did not reach its limit is *disturbed*; its
latency figures stay in the tables, marked, and out of verdicts (best variant, speed-ups and their flags, the gate)
unless the user accepts them."""
from __future__ import annotations

from typing import Any


LOOP_TIMED_METRICS = frozenset({"loop_latency_p50"})
"""Metrics read from the sampling-loop pass, a worker of its own with its own quiet check (``loop_contention``)."""


def disturbance(record: Any, timed_pass: str = "latency") -> str:
    """Why the record's timings of ``timed_pass`` ('latency', or 'loop': the sampling loop's) are not fit for
    verdicts, one line ('' when they are)."""
    context = getattr(record, "context", {}) or {}
    if timed_pass == "loop":
        loop = context.get("loop_contention") or {}
        if loop.get("contended"):
            return (f"sampling loop measured under contention: other processes kept {loop.get('others_cores', 0):.2f} "
                    f"CPU(s) busy (limit {loop.get('limit_cores', 0):g})")
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
        return f"timed hot: {cooldown.get('temp_c_end', 0):.0f} °C after the cooldown's cap (limit {cooldown.get('limit_c')} °C)"
    return ""
