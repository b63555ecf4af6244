"""The harness's one timing loop. Runtimes only load / infer / sync; everything timed happens here.

Protocol: time the load, time the first inference, warm up until the medians of the first and second
halves of the warm-up agree (or a warm-up cap is hit), then collect steady-state samples until BOTH
``min_runs`` and ``min_duration_s`` are met — optionally until the median's 95% CI is narrow enough —
and never past ``max_duration_s``. Latencies are reported in milliseconds.

A runtime on a GPU may also get a device timer (``harness.engine.device_timing``): it brackets every timed call
and its steady-state readings become ``gpu_latency`` beside the host-side ``latency``.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness import stats
from harness.engine.device_timing import DeviceTimer
from harness.rounds import device_latency
from harness.types import Measurement, RunSettings

NS_PER_MS = 1e6


@dataclass(frozen=True)
class LatencyPass:
    measurements: tuple[Measurement, ...]
    first_outputs: Sequence[np.ndarray]


def _timed_call(infer: Callable[[], Any], sync: Callable[[], None], clock: Callable[[], int]) -> tuple[int, Any]:
    t0 = clock()
    out = infer()
    sync()
    return clock() - t0, out


def warm_up(call: Callable[[], None], settings: RunSettings, clock: Callable[[], int]) -> tuple[list[int], bool]:
    """Run ``call`` until the warm-up is stable; return (warm-up samples in ns, whether it stabilised)."""
    samples: list[int] = []
    cap_ns = settings.warmup_max_s * 1e9
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        samples.append(t1 - t0)
        if len(samples) >= settings.warmup_min_runs and stats.halves_agree(samples, settings.warmup_tolerance):
            return samples, True
        if len(samples) >= settings.warmup_max_runs or t1 - start >= cap_ns:
            return samples, False


@dataclass(frozen=True)
class Pause:
    """Blocks of timed calls: ``wait()`` runs after the load and first inference (so that the warm-up has a turn of
    its own), before the first steady-state sample and after every ``block_s`` seconds of them (the lockstep
    protocol, ``harness.launch.lockstep``). Time spent waiting is not loop time."""

    wait: Callable[[], None]
    block_s: float


def collect(call: Callable[[], None], settings: RunSettings, clock: Callable[[], int],
            after: Callable[[], None] | None = None, pause: Pause | None = None) -> tuple[list[int], str]:
    """Steady-state samples (ns) and why collection stopped: 'count+duration', 'ci-width' or 'time-cap'.
    ``after`` runs after each sample's clock has stopped (e.g. reading a device timer), outside the sample;
    ``pause`` splits collection into blocks (durations count only the time spent in blocks). The garbage collector
    is off while samples are taken (a collection inside a µs-scale call would be its p99), on again after."""
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return _collect(call, settings, clock, after, pause)
    finally:
        if gc_was_enabled:
            gc.enable()


def _collect(call: Callable[[], None], settings: RunSettings, clock: Callable[[], int],
             after: Callable[[], None] | None, pause: Pause | None) -> tuple[list[int], str]:
    samples: list[int] = []
    append = samples.append
    min_runs = settings.min_runs
    min_ns = settings.min_duration_s * 1e9
    max_ns = settings.max_duration_s * 1e9
    ci_target = settings.target_ci_rel_width
    next_ci_check = min_runs
    if pause is not None:
        pause.wait()
        block_ns = pause.block_s * 1e9
        next_pause = block_ns
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        append(t1 - t0)
        if after is not None:
            after()
        elapsed = t1 - start
        if elapsed >= max_ns:
            return samples, "time-cap"
        if len(samples) >= min_runs and elapsed >= min_ns:
            if ci_target is None:
                return samples, "count+duration"
            if len(samples) >= next_ci_check:
                lo, hi = stats.bootstrap_median_ci(samples)  # the same CI the report states
                median = stats.percentile(samples, 50)
                if median > 0 and (hi - lo) / median <= ci_target:
                    return samples, "ci-width"
                next_ci_check = int(len(samples) * 1.25) + 1
        if pause is not None and elapsed >= next_pause:
            waited = clock()
            pause.wait()
            start += clock() - waited
            next_pause = elapsed + block_ns


def run_latency_pass(
    runtime: Any,
    artifact: Any,
    inputs: Mapping[str, np.ndarray],
    settings: RunSettings,
    batch_size: int,
    clock: Callable[[], int] = time.perf_counter_ns,
    device_timer: DeviceTimer | None = None,
    pause: Pause | None = None,
) -> LatencyPass:
    """Load, first inference, warm-up and steady state for one runtime instance. With ``device_timer``,
    each steady-state call is also timed on the device (``gpu_latency``, ms, one reading per sample)."""
    t0 = clock()
    runtime.load(artifact)
    runtime.sync()
    load_ns = clock() - t0

    first_ns, first_outputs = _timed_call(lambda: runtime.infer(inputs), runtime.sync, clock)
    first_outputs = [np.array(o, copy=True) for o in first_outputs]
    if pause is not None:  # in lockstep, warm up in a turn of one's own: never while the other side loads
        pause.wait()

    infer, sync = runtime.infer, runtime.sync

    device_ms: list[float] = []
    read_device: Callable[[], None] | None = None
    if device_timer is None:
        def call() -> None:
            infer(inputs)
            sync()
    else:  # the event records sit inside the host sample (µs); the read happens after its clock stops
        start, stop = device_timer.start, device_timer.stop

        def call() -> None:
            start()
            infer(inputs)
            stop()
            sync()

        def read_device() -> None:
            device_ms.append(device_timer.read_ms())

    warm, stable = warm_up(call, settings, clock)  # warm-up device readings are not needed: never read
    samples_ns, stop_reason = collect(call, settings, clock, after=read_device, pause=pause)
    samples_ms = [s / NS_PER_MS for s in samples_ns]
    summary = stats.summarize(samples_ms)
    summary["warmup_runs"] = float(len(warm))
    summary["warmup_stable"] = float(stable)
    summary["stopped_by_time_cap"] = float(stop_reason == "time-cap")
    median_s = summary["p50"] / 1e3
    measurements = (
        Measurement("load_time", load_ns / NS_PER_MS, "ms", "perf_counter"),
        Measurement("first_inference", first_ns / NS_PER_MS, "ms", "perf_counter"),
        Measurement(
            "latency",
            summary["p50"],
            "ms",
            "perf_counter",
            samples=tuple(round(s, 6) for s in samples_ms),
            stats=summary,
        ),
        Measurement("throughput", batch_size / median_s if median_s > 0 else 0.0, "items/s", "batch/median"),
    )
    if device_timer is not None and device_ms:
        measurements += (device_latency(device_ms, device_timer.method),)
    return LatencyPass(measurements, first_outputs)


