"""The modelled energy proxy: no sensor, a power model. E = idle_w × wall time + active_w_per_core ×
CPU time of the worker (all its threads). Always labelled ``modelled``, with its assumptions and error band."""
from __future__ import annotations

import time
from typing import Any, Mapping

from harness.energy import ENERGY_PROBES, EnergyReading


@ENERGY_PROBES.register("modelled")
class ModelledProbe:
    name = "modelled"

    def __init__(self, config: Mapping[str, Any], root: str = "/") -> None:
        model = config.get("power_model", {})
        self.idle_w = model.get("idle_w")
        self.active_w_per_core = model.get("active_w_per_core")
        self.error_band = float(model.get("error_band", 0.5))
        self._wall0 = self._cpu0 = 0.0

    def missing(self) -> str | None:
        if self.idle_w is None or self.active_w_per_core is None:
            return "modelled: the target profile has no [energy.power_model] idle_w and active_w_per_core"
        return None

    def begin(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def end(self) -> EnergyReading:
        wall = time.perf_counter() - self._wall0
        cpu = time.process_time() - self._cpu0
        joules = self.idle_w * wall + self.active_w_per_core * cpu
        return EnergyReading(
            joules, "modelled", wall,
            {"idle_w": float(self.idle_w), "active_w_per_core": float(self.active_w_per_core),
             "cpu_s": cpu, "error_band": self.error_band},
            f"modelled: {self.idle_w} W idle × wall time + {self.active_w_per_core} W per busy core × CPU time; "
            f"±{self.error_band:.0%} (not a measurement)",
        )
