"""Power sensors sampled in a thread and integrated over the window (trapezoid rule): Jetson INA3221 rails,
the Raspberry Pi 5 PMIC (``vcgencmd pmic_read_adc``), and an external meter command (joules or watts)."""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from harness.energy import ENERGY_PROBES, EnergyReading


def integrate(samples: list[tuple[float, float]]) -> float:
    """∫ P dt over (time s, power W) samples by the trapezoid rule → joules."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))


class PowerSampler:
    """Reads ``read_watts()`` every ``interval_s`` in a daemon thread, between start() and stop()."""

    def __init__(self, read_watts: Callable[[], float], interval_s: float) -> None:
        self.read_watts = read_watts
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.samples = [(time.perf_counter(), self.read_watts())]
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append((time.perf_counter(), self.read_watts()))

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append((time.perf_counter(), self.read_watts()))
        return self.samples


class SampledProbe:
    """Base: subclasses set ``name``, ``interval_s``, ``note`` and implement ``read_watts`` and ``missing``."""

    name = "sampled"
    interval_s = 0.05
    note = ""

    def begin(self) -> None:
        self._sampler = PowerSampler(self.read_watts, self.interval_s)
        self._sampler.start()

    def end(self) -> EnergyReading:
        samples = self._sampler.stop()
        window = samples[-1][0] - samples[0][0]
        return EnergyReading(integrate(samples), self.name, window,
                             {"samples": float(len(samples)), "interval_s": self.interval_s}, self.note)

    def read_watts(self) -> float:
        raise NotImplementedError


@ENERGY_PROBES.register("jetson-ina")
class JetsonInaProbe(SampledProbe):
    """Jetson INA3221 power monitors: hwmon (JetPack 5+: in*_input mV × curr*_input mA) or the legacy iio
    driver (JetPack 4: in_power*_input mW). Uses the rail named in ``[energy] jetson_rail`` (default
    VDD_IN, the module's input) when present, else the sum of every rail."""

    name = "jetson-ina"
    interval_s = 0.02

    def __init__(self, config: Mapping[str, Any], root: str = "/") -> None:
        self.rail = config.get("jetson_rail", "VDD_IN")
        self.readers: dict[str, Callable[[], float]] = {}
        drivers = Path(root) / "sys/bus/i2c/drivers"
        for hwmon in sorted(drivers.glob("ina3221*/*/hwmon/hwmon*")):
            for label in sorted(hwmon.glob("in*_label")):
                k = label.name[2:-6]
                volt, curr = hwmon / f"in{k}_input", hwmon / f"curr{k}_input"
                if volt.exists() and curr.exists():
                    self.readers[label.read_text().strip()] = (
                        lambda v=volt, c=curr: int(v.read_text()) * int(c.read_text()) / 1e6)
        for iio in sorted(drivers.glob("ina3221x/*/iio:device*")):
            for power in sorted(iio.glob("in_power*_input")):
                k = power.name[len("in_power"):-len("_input")]
                name_file = iio / f"rail_name_{k}"
                name = name_file.read_text().strip() if name_file.exists() else f"{iio.name}:{k}"
                self.readers[name] = lambda p=power: int(p.read_text()) / 1e3
        self.note = (f"rail {self.rail}" if self.rail in self.readers else "sum of all INA3221 rails")

    def missing(self) -> str | None:
        return None if self.readers else "Jetson INA3221: no power monitor under /sys/bus/i2c/drivers/ina3221*"

    def read_watts(self) -> float:
        if self.rail in self.readers:
            return self.readers[self.rail]()
        return sum(read() for read in self.readers.values())


_PMIC_LINE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([0-9.]+)[AV]\s*$")


def parse_pmic(text: str) -> float:
    """Total power (W) from ``vcgencmd pmic_read_adc`` output: Σ volts × amps over rails that have both."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if m:
            (amps if m.group(2) == "A" else volts)[m.group(1)] = float(m.group(3))
    rails = sorted(set(amps) & set(volts))
    if not rails:
        raise ValueError("no rail with both a current and a voltage in the pmic_read_adc output")
    return sum(amps[r] * volts[r] for r in rails)


@ENERGY_PROBES.register("rpi5-pmic")
class Rpi5PmicProbe(SampledProbe):
    """Raspberry Pi 5 PMIC rails via ``vcgencmd pmic_read_adc`` (the board's own rails; not the USB-C input)."""

    name = "rpi5-pmic"
    interval_s = 0.1
    note = "sum of the PMIC rails (excludes USB-C input losses and peripherals)"

    def __init__(self, config: Mapping[str, Any], root: str = "/") -> None:
        self.command = [config.get("vcgencmd", "/usr/bin/vcgencmd"), "pmic_read_adc"]

    def missing(self) -> str | None:
        try:
            self.read_watts()
        except FileNotFoundError:
            return f"Raspberry Pi 5 PMIC: {self.command[0]} not found"
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return f"Raspberry Pi 5 PMIC: {exc}"
        return None

    def read_watts(self) -> float:
        out = subprocess.run(self.command, capture_output=True, text=True, timeout=5, check=True).stdout
        return parse_pmic(out)


def run_meter(command: list[str], timeout_s: float = 10.0) -> float:
    """Run an external meter command and return the first number it prints."""
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=True).stdout
    for word in out.replace("=", " ").split():
        try:
            return float(word.rstrip("JWjw"))
        except ValueError:
            continue
    raise ValueError(f"meter command {command[0]} printed no number")


@ENERGY_PROBES.register("meter")
class MeterProbe(SampledProbe):
    """An external meter command from ``[energy.meter]``: ``command`` (a list) and ``reports``:
    "joules" (a cumulative counter, read at both ends of the window) or "watts" (sampled every
    ``interval_s``, default 0.2 s, and integrated)."""

    name = "meter"

    def __init__(self, config: Mapping[str, Any], root: str = "/") -> None:
        meter = config.get("meter", {})
        self.command = list(meter.get("command", []))
        self.reports = meter.get("reports", "joules")
        self.interval_s = float(meter.get("interval_s", 0.2))
        self.note = f"external meter {self.command[0] if self.command else ''} ({self.reports})"
        self._start = 0.0
        self._t0 = 0.0

    def missing(self) -> str | None:
        if not self.command:
            return "meter: the target profile has no [energy.meter] command"
        if self.reports not in ("joules", "watts"):
            return f"meter: reports must be \"joules\" or \"watts\", not {self.reports!r}"
        try:
            run_meter(self.command)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return f"meter: {self.command[0]} failed: {exc}"
        return None

    def read_watts(self) -> float:
        return run_meter(self.command)

    def begin(self) -> None:
        if self.reports == "watts":
            return super().begin()
        self._t0 = time.perf_counter()
        self._start = run_meter(self.command)

    def end(self) -> EnergyReading:
        if self.reports == "watts":
            return super().end()
        end = run_meter(self.command)
        return EnergyReading(end - self._start, self.name, time.perf_counter() - self._t0, {}, self.note)
