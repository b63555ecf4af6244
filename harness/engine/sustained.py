"""Sustained mode: one job run for minutes, in windows. The ranking at minute 1 is not always the ranking at minute
30 — a passively cooled board heats, its clock is capped, and an int8 variant may lose its lead. Per window (``window_s``
seconds): the latency's p50 and p90 (ms), the CPUs' mean frequency (MHz), the hottest thermal zone (°C), the summed
state of the CPU cooling devices (0 = no thermal cap), how busy other processes kept the worker's CPUs (a window
above the run's contention limit is counted as contended), and, where the target has an energy source, the energy
per inference (J). The sustained ratio compares the last windows' median p50 with the first windows' (a quarter of the
windows each, at least one): 1.0 = flat, 2.0 = twice as slow once settled. Every reader takes ``root`` (default '/')
so tests can point it at a fake sysfs tree."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.engine.cpustate import read_cpu_state
from harness.engine.quiet import BusyWindow


@dataclass(frozen=True)
class Window:
    """One window: its start (s from the run's start), the inferences in it and their p50 / p90 (ms), the CPU state
    read at its end, and the energy per inference where measured."""

    start_s: float
    n: int
    p50_ms: float
    p90_ms: float
    freq_mhz: float | None = None
    temp_c: float | None = None
    cpu_cooling: int | None = None
    joules_per_inference: float | None = None
    energy_method: str = ""
    others_cores: float | None = None
    """How many of the worker's CPUs other processes kept busy in the window (``harness.engine.quiet``)."""
    steal_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def edge_share(count: int) -> int:
    """How many windows at each end the sustained ratio compares: a quarter, at least one."""
    return max(1, count // 4)


def edges(windows: Sequence[Window]) -> tuple[int, float, float]:
    """(k, the first k windows' median p50, the last k windows' median p50), k = ``edge_share``."""
    k = edge_share(len(windows))
    return (k, float(np.median([w.p50_ms for w in windows[:k]])),
            float(np.median([w.p50_ms for w in windows[-k:]])))


def sustained_ratio(windows: Sequence[Window]) -> float | None:
    """The last windows' median p50 over the first windows' (None with fewer than two windows)."""
    if len(windows) < 2:
        return None
    _, first, last = edges(windows)
    return last / first if first > 0 else None


def run_windows(call: Callable[[], None], duration_s: float, window_s: float, cpus: Sequence[int],
                probes: Sequence[Any] = (), root: str | Path = "/",
                clock: Callable[[], float] = time.perf_counter) -> list[Window]:
    """Call ``call`` (one inference, synced) back to back for ``duration_s``, cut into windows of ``window_s``; the
    first energy probe (if any) measures each window. A last window shorter than half a window is dropped."""
    windows: list[Window] = []
    started = clock()
    while clock() - started < duration_s:
        window_start = clock()
        if window_start - started + window_s / 2 > duration_s and windows:
            break
        for probe in probes[:1]:
            probe.begin()
        busy = BusyWindow(tuple(cpus), root).start()
        samples = []
        while True:
            t0 = clock()
            call()
            t1 = clock()
            samples.append((t1 - t0) * 1e3)
            if t1 - window_start >= window_s or t1 - started >= duration_s:
                break
        reading = probes[0].end() if probes else None
        others = busy.stop()
        state = read_cpu_state(cpus, root)
        windows.append(Window(
            start_s=round(window_start - started, 3), n=len(samples), p50_ms=float(np.percentile(samples, 50)),
            p90_ms=float(np.percentile(samples, 90)), freq_mhz=state.get("freq_mhz"), temp_c=state.get("temp_c"),
            cpu_cooling=state.get("cpu_cooling"),
            joules_per_inference=reading.joules / len(samples) if reading is not None else None,
            energy_method=reading.method if reading is not None else "", others_cores=others.get("others_cores"),
            steal_share=others.get("steal_share")))
    return windows


def rank_changes(first: dict[str, float], last: dict[str, float]) -> list[str]:
    """Jobs whose place in the ranking (fastest first) differs between the start and steady state, in words:
    'int8 onnx: 1st at the start, 2nd once settled'."""
    def places(times: dict[str, float]) -> dict[str, int]:
        return {name: i + 1 for i, name in enumerate(sorted(times, key=lambda k: (times[k], k)))}

    common = set(first) & set(last)
    before = places({k: first[k] for k in common})
    after = places({k: last[k] for k in common})

    def nth(i: int) -> str:
        return f"{i}{'th' if 10 <= i % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(i % 10, 'th')}"

    return [f"{name}: {nth(before[name])} at the start, {nth(after[name])} once settled"
            for name in sorted(common, key=lambda k: before[k]) if before[name] != after[name]]
