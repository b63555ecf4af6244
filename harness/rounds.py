"""Latency measured over rounds (each a fresh worker process): another round pooled into the ones before it, and a
device timer's readings as the ``gpu_latency`` measurement. Pure functions of measurements, used by the worker (a
CUDA job's timing pass), by a job of several rounds and by an A/B session on the host. Units: ms, items/s."""
from __future__ import annotations

import dataclasses
import statistics
from typing import Sequence

from harness import stats
from harness.types import Measurement


def device_latency(samples_ms: Sequence[float], method: str) -> Measurement:
    """The device timer's steady-state readings (ms) as the ``gpu_latency`` measurement."""
    summary = stats.summarize(samples_ms)
    return Measurement("gpu_latency", summary["p50"], "ms", method,
                       samples=tuple(round(s, 6) for s in samples_ms), stats=summary,
                       note="GPU time between events recorded before and after each timed inference")


def pool_rounds(first: Sequence[Measurement], more: Sequence[Measurement], batch_size: int) -> list[Measurement]:
    """Merge another latency round into ``first``: samples pooled and summarised again, each round's median and
    p90 kept as samples of ``latency_round_medians`` and ``latency_round_p90s`` (and the device timer's medians as
    ``gpu_latency_round_medians``), throughput from the pooled median.
    Load time, first inference and the rest stay the first round's (a cold start happens once)."""
    def find(ms: Sequence[Measurement], metric: str) -> Measurement | None:
        return next((m for m in ms if m.metric == metric), None)

    lat, extra = find(first, "latency"), find(more, "latency")
    if lat is None or extra is None or not lat.samples or not extra.samples:
        return list(first)
    rounds, tails = find(first, "latency_round_medians"), find(first, "latency_round_p90s")
    medians = (rounds.samples if rounds else (lat.value,)) + (extra.value,)
    p90s = (tails.samples if tails else (lat.stats.get("p90", lat.value),)) + (extra.stats.get("p90", extra.value),)
    pooled = lat.samples + extra.samples
    summary = stats.summarize(pooled)
    for key in ("warmup_runs", "warmup_stable", "stopped_by_time_cap"):
        if key in lat.stats:
            summary[key] = lat.stats[key]
    summary["rounds"] = float(len(medians))
    merged = dataclasses.replace(lat, value=summary["p50"], samples=pooled, stats=summary)
    median_s = summary["p50"] / 1e3
    pooled_gpu = []
    gpu, gpu_extra = find(first, "gpu_latency"), find(more, "gpu_latency")
    if gpu is not None and gpu_extra is not None and gpu.samples and gpu_extra.samples:
        gpu_rounds = find(first, "gpu_latency_round_medians")
        gpu_medians = (gpu_rounds.samples if gpu_rounds else (gpu.value,)) + (gpu_extra.value,)
        pooled_gpu = [device_latency(gpu.samples + gpu_extra.samples, gpu.method),
                      Measurement("gpu_latency_round_medians", statistics.median(gpu_medians), "ms", gpu.method,
                                  samples=tuple(gpu_medians), note="GPU median of each latency round")]
    out = [m for m in first if m.metric not in ("latency", "throughput", "latency_round_medians",
                                                "latency_round_p90s")
           and not (pooled_gpu and m.metric in ("gpu_latency", "gpu_latency_round_medians"))]
    return out + pooled_gpu + [merged,
                  Measurement("throughput", batch_size / median_s if median_s > 0 else 0.0, "items/s", "batch/median"),
                  Measurement("latency_round_medians", statistics.median(medians), "ms", lat.method,
                              samples=tuple(medians), note="median of each latency round (fresh worker process)"),
                  Measurement("latency_round_p90s", statistics.median(p90s), "ms", lat.method,
                              samples=tuple(p90s), note="p90 of each latency round (fresh worker process)")]
