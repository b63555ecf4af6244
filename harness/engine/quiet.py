"""Is the machine quiet while we time? How busy the CPUs a worker runs on were apart from the worker itself, and
thermal discipline before a timed pass (worker side: stdlib only).

- ``BusyWindow``: from ``/proc/stat`` (the CPUs the worker may use: their busy jiffies, steal jiffies) against the
  worker's own CPU time (``os.times``), over the timed pass: ``others_cores`` is how many of those CPUs other
  processes kept busy on average (0.0 = nobody else, 1.0 = one CPU's worth); ``steal_share`` the share of the CPUs'
  time a hypervisor gave to other guests; the 1-minute load average before and after.
- ``wait_for_quiet``: before timing, sample the same for ``QUIET_SAMPLE_S`` windows until others stay under the limit
  or the wait's cap runs out.
- ``cool_down``: before timing, wait until the hottest thermal zone is at or below a temperature and, where the
  kernel shows them, no CPU-frequency cooling device is capping the clock any more, with a cap. (The current clock
  itself is no guide: at idle a governor lowers it by design; a thermal cap is what keeps it from coming back.)

Every reader takes ``root`` (default '/') so tests can point it at a fake /proc and sysfs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.engine.cpustate import read_cpu_state

QUIET_SAMPLE_S = 0.5
"""Length of each sampling window while waiting for quiet (seconds)."""
COOL_POLL_S = 0.5
"""How often the temperature is read while cooling down (seconds)."""


def cpu_jiffies(cpus: Iterable[int], root: str | Path = "/") -> dict[str, int] | None:
    """Busy, steal and total jiffies summed over ``cpus`` from /proc/stat (None where it cannot be read)."""
    try:
        lines = (Path(root) / "proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    busy = steal = total = 0
    for line in lines:
        parts = line.split()
        if not parts or parts[0] not in wanted:
            continue
        # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
        values = [int(v) for v in parts[1:9]] + [0] * max(0, 8 - len(parts[1:9]))
        user, nice, system, idle, iowait, irq, softirq, st = values[:8]
        busy += user + nice + system + irq + softirq
        steal += st
        total += user + nice + system + idle + iowait + irq + softirq + st
    return {"busy": busy, "steal": steal, "total": total} if total else None


def _load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@dataclass
class BusyWindow:
    """How busy ``cpus`` were apart from this process while the window was open: ``start()`` … ``stop()``, with
    ``suspend()`` / ``resume()`` around stretches that do not count (a lockstep worker's turns of waiting, while
    the other side runs)."""

    cpus: tuple[int, ...]
    root: str | Path = "/"
    clock: Callable[[], float] = time.monotonic
    own_cpu_s: Callable[[], float] = lambda: sum(os.times()[:2])
    _open: dict[str, Any] | None = None
    _sums: dict[str, float] = field(default_factory=lambda: {"busy": 0, "steal": 0, "total": 0, "own": 0.0, "t": 0.0})
    _readable: bool = True
    _load1: float | None = None

    def _reading(self) -> dict[str, Any]:
        return {"jiffies": cpu_jiffies(self.cpus, self.root), "own": self.own_cpu_s(), "t": self.clock()}

    def start(self) -> "BusyWindow":
        self._load1 = _load1()
        return self.resume()

    def resume(self) -> "BusyWindow":
        if self._open is None:
            self._open = self._reading()
        return self

    def suspend(self) -> None:
        if self._open is None:
            return
        begin, end = self._open, self._reading()
        self._open = None
        self._sums["own"] += end["own"] - begin["own"]
        self._sums["t"] += end["t"] - begin["t"]
        if begin["jiffies"] and end["jiffies"]:
            for key in ("busy", "steal", "total"):
                self._sums[key] += end["jiffies"][key] - begin["jiffies"][key]
        else:
            self._readable = False

    def stop(self) -> dict[str, Any]:
        """``others_cores``, ``own_cores``, ``steal_share``, ``window_s`` (the counted time), ``cpus``, load
        averages; ``others_cores`` None where /proc/stat is unreadable (not Linux)."""
        self.suspend()
        window = max(self._sums["t"], 1e-9)
        own = self._sums["own"] / window
        out: dict[str, Any] = {"window_s": round(window, 3), "cpus": list(self.cpus), "own_cores": round(own, 3),
                               "others_cores": None, "steal_share": None, "load1_before": self._load1,
                               "load1_after": _load1()}
        if self._readable:
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            busy = self._sums["busy"] / hz / window
            out["others_cores"] = round(max(0.0, busy - own), 3)
            ticks = self._sums["total"]
            out["steal_share"] = round(self._sums["steal"] / ticks, 4) if ticks > 0 else 0.0
        return out


def wait_for_quiet(cpus: tuple[int, ...], max_cores: float, max_wait_s: float, root: str | Path = "/",
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Sample ``QUIET_SAMPLE_S`` windows until other processes keep at most ``max_cores`` of ``cpus`` busy, or
    ``max_wait_s`` has passed: {waited_s, quiet, others_cores (the last window's)}."""
    started = clock()
    last: float | None = None
    while True:
        window = BusyWindow(cpus, root, clock=clock).start()
        sleep(QUIET_SAMPLE_S)
        last = window.stop()["others_cores"]
        if last is None or last <= max_cores:
            return {"waited_s": round(clock() - started, 2), "quiet": True, "others_cores": last}
        if clock() - started >= max_wait_s:
            return {"waited_s": round(clock() - started, 2), "quiet": False, "others_cores": last}


def cool_down(cpus: tuple[int, ...], to_c: float, max_s: float, root: str | Path = "/",
              sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Wait until the hottest thermal zone reads at most ``to_c`` °C and the CPU cooling devices are back at state 0
    (frequency uncapped), or ``max_s`` seconds: {waited_s, reached, temp_c_start, temp_c_end, cooling_start,
    cooling_end, limit_c} (``reached`` None where neither is readable: nothing to wait for)."""
    started = clock()
    state = read_cpu_state(cpus, root)
    first, first_cooling = state.get("temp_c"), state.get("cpu_cooling")
    if first is None and first_cooling is None:
        return {"waited_s": 0.0, "reached": None, "temp_c_start": None, "temp_c_end": None}
    temp, cooling = first, first_cooling

    def cool() -> bool:
        return (temp is None or temp <= to_c) and not cooling

    while not cool() and clock() - started < max_s:
        sleep(COOL_POLL_S)
        state = read_cpu_state(cpus, root)
        temp, cooling = state.get("temp_c", temp), state.get("cpu_cooling", cooling)
    return {"waited_s": round(clock() - started, 2), "reached": cool(), "temp_c_start": first,
            "temp_c_end": temp, "cooling_start": first_cooling, "cooling_end": cooling, "limit_c": to_c}


def throttled(before: dict[str, Any], after: dict[str, Any], max_drop: float) -> bool:
    """Whether the CPUs' frequency fell by more than ``max_drop`` (a fraction) during the pass, or a CPU cooling
    device capped the clock harder at its end than at its start."""
    f0, f1 = before.get("freq_mhz"), after.get("freq_mhz")
    capped = (after.get("cpu_cooling") or 0) > (before.get("cpu_cooling") or 0)
    return bool(f0 and f1 and f1 < f0 * (1 - max_drop)) or capped
