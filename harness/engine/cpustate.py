"""CPU state around a timed pass: governor, current frequency and temperature, where Linux exposes them,
and warnings when they change during the pass (throttling, a governor switch, heating).

Every reader takes ``root`` (default '/') so tests can point it at a fake sysfs tree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

FREQ_DROP_WARN = 0.10
"""Warn when the mean current frequency falls by more than this fraction during the pass."""
TEMP_RISE_WARN_C = 10.0
TEMP_HOT_C = 80.0


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_cpu_state(cpus: Iterable[int], root: str | Path = "/") -> dict[str, Any]:
    """{governor, freq_mhz (mean over ``cpus``), temp_c (hottest thermal zone), cpu_cooling (the summed state of the
    thermal cooling devices that cap CPU frequency: 0 = no thermal cap in force)}; unreadable ones are absent."""
    root = Path(root)
    state: dict[str, Any] = {}
    cpus = sorted(cpus)
    base = root / "sys/devices/system/cpu"
    governors = {g for c in cpus if (g := _read(base / f"cpu{c}/cpufreq/scaling_governor"))}
    if governors:
        state["governor"] = ",".join(sorted(governors))
    freqs = [int(f) for c in cpus if (f := _read(base / f"cpu{c}/cpufreq/scaling_cur_freq")) and f.isdigit()]
    if freqs:
        state["freq_mhz"] = round(sum(freqs) / len(freqs) / 1000.0, 1)
    temps = []
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        raw = _read(zone / "temp")
        if raw and raw.lstrip("-").isdigit():
            temps.append(int(raw) / 1000.0)
    if temps:
        state["temp_c"] = max(temps)
    cooling = [int(raw) for dev in sorted((root / "sys/class/thermal").glob("cooling_device*"))
               if _is_cpu_cooling(_read(dev / "type")) and (raw := _read(dev / "cur_state")) and raw.isdigit()]
    if cooling:
        state["cpu_cooling"] = sum(cooling)
    return state


def _is_cpu_cooling(kind: str | None) -> bool:
    """A cooling device that caps the CPUs' frequency (cpufreq-cpu0, thermal-cpufreq-0, Processor), not a fan."""
    return bool(kind) and any(word in kind.lower() for word in ("cpufreq", "processor", "cpu"))


def state_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two readings that makes the timings suspect, each with what to do."""
    warnings = []
    if before.get("governor") and after.get("governor") and before["governor"] != after["governor"]:
        warnings.append(f"CPU governor changed during the run ({before['governor']} → {after['governor']}): "
                        "pin it (e.g. cpupower frequency-set -g performance) and re-run")
    f0, f1 = before.get("freq_mhz"), after.get("freq_mhz")
    if f0 and f1 and f1 < f0 * (1 - FREQ_DROP_WARN):
        warnings.append(f"CPU frequency fell {f0:.0f} → {f1:.0f} MHz during the run (throttling?): "
                        "cool the device or lower the load and re-run")
    t0, t1 = before.get("temp_c"), after.get("temp_c")
    if t0 is not None and t1 is not None and (t1 - t0 >= TEMP_RISE_WARN_C or t1 >= TEMP_HOT_C):
        warnings.append(f"temperature rose {t0:.0f} → {t1:.0f} °C during the run: thermal throttling may "
                        "have slowed later samples; add cooling or pauses between jobs")
    return warnings
