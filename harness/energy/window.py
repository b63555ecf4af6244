"""The energy pass (its own worker, apart from timing and memory): load, warm up, then run inferences for
at least ``min_runs`` AND ``energy_min_s`` inside one window measured by every available probe (a shorter window,
``MODELLED_WINDOW_S``, when the only probe is the modelled estimate)."""
from __future__ import annotations

import time
from typing import Any, Mapping

from harness.energy import make_probe
from harness.types import Measurement, RunSettings

MODELLED_WINDOW_S = 0.5
"""The window when only the modelled estimate is available: it reads CPU time (10 ms ticks: 2% of 0.5 s, far
inside the model's ± error band), not a sensor that updates every 1-100 ms, so ``energy_min_s`` buys it nothing."""


def available_probes(config: Mapping[str, Any]) -> tuple[list[Any], dict[str, str]]:
    """The target's ``[energy]`` sources that can measure here, in its order of preference, and {source: why not}
    for the others."""
    probes, unavailable = [], {}
    for name in config.get("sources", []):
        probe = make_probe(name, config)
        why = probe.missing()
        if why:
            unavailable[name] = why
        else:
            probes.append(probe)
    return probes, unavailable


def run_energy_pass(runtime: Any, artifact: Any, inputs: Mapping[str, Any], settings: RunSettings,
                    batch_size: int, config: Mapping[str, Any]) -> tuple[tuple[Measurement, ...], dict[str, str]]:
    """Measurements (J per inference, inferences per J, J per image and images per kWh, per probe) and
    {probe: why it is unavailable}."""
    probes, unavailable = available_probes(config)
    if not probes:
        return (), unavailable
    runtime.load(artifact)
    for _ in range(settings.warmup_min_runs):
        runtime.infer(inputs)
        runtime.sync()
    for probe in probes:
        probe.begin()
    window_s = settings.energy_min_s
    if all(probe.name == "modelled" for probe in probes):
        window_s = min(window_s, MODELLED_WINDOW_S)
    n, t0 = 0, time.perf_counter()
    while True:
        runtime.infer(inputs)
        runtime.sync()
        n += 1
        elapsed = time.perf_counter() - t0
        if (n >= settings.min_runs and elapsed >= window_s) or elapsed >= settings.max_duration_s:
            break
    readings = [probe.end() for probe in probes]
    out = []
    for r in readings:
        stats = {**r.details, "joules": r.joules, "window_s": r.window_s, "inferences": float(n),
                 "batch_size": float(batch_size)}
        out.append(Measurement("energy_per_inference", r.joules / n, "J", r.method, stats=stats, note=r.note))
        out.append(Measurement("inferences_per_joule", n / r.joules if r.joules > 0 else 0.0, "inferences/J",
                               r.method, note=r.note))
        out.extend(per_image(r.joules / n, batch_size, r.method, r.note))
    return tuple(out), unavailable


JOULES_PER_KWH = 3.6e6


def per_image(joules_per_inference: float, images_per_inference: int, method: str, note: str = "",
              prefix: str = "", steps: int = 1) -> tuple[Measurement, Measurement]:
    """``{prefix}energy_per_image`` (J for one generated image: one inference's energy over the images it makes,
    times ``steps`` inferences for a denoiser's loop) and ``{prefix}images_per_kwh``, by ``method``."""
    joules = joules_per_inference * steps / max(1, images_per_inference)
    return (Measurement(f"{prefix}energy_per_image", joules, "J", method, note=note,
                        stats={"images_per_inference": float(images_per_inference), "steps": float(steps)}),
            Measurement(f"{prefix}images_per_kwh", JOULES_PER_KWH / joules if joules > 0 else 0.0, "images/kWh",
                        method, note=note))
