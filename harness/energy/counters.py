"""Energy counters: two readings, their difference. RAPL (powercap sysfs) and NVML."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from harness.energy import ENERGY_PROBES, EnergyReading


@ENERGY_PROBES.register("rapl")
class RaplProbe:
    """Intel/AMD RAPL package domains via /sys/class/powercap (energy_uj, wrapping at max_energy_range_uj).

    The package counter includes everything on the package during the window (idle and other processes).
    """

    name = "rapl"

    def __init__(self, config: Mapping[str, Any], root: str = "/") -> None:
        base = Path(root) / "sys/class/powercap"
        # top-level package domains only (intel-rapl:0, not its sub-zones intel-rapl:0:0)
        self.domains = sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1)
        self._start: list[int] = []
        self._t0 = 0.0

    def missing(self) -> str | None:
        if not self.domains:
            return "RAPL: no /sys/class/powercap/intel-rapl:* package domain on this machine"
        try:
            self._read()
        except PermissionError:
            return f"RAPL: {self.domains[0]}/energy_uj is not readable (needs root, or chmod o+r)"
        except (OSError, ValueError) as exc:
            return f"RAPL: cannot read the energy counter: {exc}"
        return None

    def _read(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def begin(self) -> None:
        self._t0 = time.perf_counter()
        self._start = self._read()

    def end(self) -> EnergyReading:
        end = self._read()
        window = time.perf_counter() - self._t0
        microjoules = 0
        for domain, e0, e1 in zip(self.domains, self._start, end):
            span = int((domain / "max_energy_range_uj").read_text())
            microjoules += e1 - e0 if e1 >= e0 else e1 + span - e0  # the counter wrapped once
        return EnergyReading(microjoules / 1e6, "rapl", window, {"domains": float(len(self.domains))},
                             "package energy, including idle and other processes on the package")


@ENERGY_PROBES.register("nvml")
class NvmlProbe:
    """NVIDIA GPU total energy since driver load (nvmlDeviceGetTotalEnergyConsumption, mJ; Volta and newer)."""

    name = "nvml"

    def __init__(self, config: Mapping[str, Any], root: str = "/") -> None:
        self.index = int(config.get("gpu_index", 0))
        self._handle: Any = None
        self._nvml: Any = None
        self._start = 0
        self._t0 = 0.0

    def missing(self) -> str | None:
        try:
            import pynvml
        except ImportError:
            return "NVML: python package 'nvidia-ml-py' is not installed"
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except pynvml.NVMLError as exc:
            return f"NVML: no usable NVIDIA GPU {self.index} ({exc})"
        self._nvml = pynvml
        return None

    def begin(self) -> None:
        self._t0 = time.perf_counter()
        self._start = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def end(self) -> EnergyReading:
        end = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        return EnergyReading((end - self._start) / 1e3, "nvml", time.perf_counter() - self._t0,
                             {"gpu_index": float(self.index)}, "whole-GPU energy during the window")
