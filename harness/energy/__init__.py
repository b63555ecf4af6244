"""Energy probes: one contract, registered in ENERGY_PROBES. A probe measures one window:
``begin()`` then ``end()`` → EnergyReading(joules, method). ``missing()`` says why a probe cannot run here.

Counters (RAPL, NVML, a meter that reports joules) difference two readings; power sensors (Jetson INA3221,
Raspberry Pi 5 PMIC, a meter that reports watts) are sampled in a thread and integrated (trapezoid);
the modelled proxy uses the profile's power model and the worker's CPU time, and says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from harness.registry import ENERGY_PROBES


@dataclass(frozen=True)
class EnergyReading:
    joules: float
    method: str
    window_s: float
    details: Mapping[str, float] = field(default_factory=dict)
    """Numbers behind the figure: sample count, the power model's watts, its error band (fraction)."""
    note: str = ""


class EnergyProbe(Protocol):
    name: str

    def missing(self) -> str | None: ...

    def begin(self) -> None: ...

    def end(self) -> EnergyReading: ...


def make_probe(name: str, config: Mapping[str, Any], root: str = "/") -> EnergyProbe:
    return ENERGY_PROBES.get(name)(config, root)


BUILTIN = {"rapl": "counters", "nvml": "counters", "modelled": "modelled", "jetson-ina": "sampled",
           "rpi5-pmic": "sampled", "meter": "sampled"}
"""The built-in probes and their modules, named lazily: a lookup imports one module."""

for _name, _module in BUILTIN.items():
    ENERGY_PROBES.register_lazy(_name, f"harness.energy.{_module}")
