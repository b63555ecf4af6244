"""Each energy probe against a fake sysfs tree, module or command, with joules computed by hand."""
from __future__ import annotations

import os
import sys
import types

import pytest

from harness.energy import ENERGY_PROBES, make_probe
from harness.energy.sampled import integrate, parse_pmic


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")


def test_registry_has_every_probe():
    assert ENERGY_PROBES.names() == ["jetson-ina", "meter", "modelled", "nvml", "rapl", "rpi5-pmic"]


def test_rapl_sums_packages_handles_wraparound_and_ignores_subzones(tmp_path):
    pc = tmp_path / "sys/class/powercap"
    write(pc / "intel-rapl:0/energy_uj", 1_000_000)
    write(pc / "intel-rapl:0/max_energy_range_uj", 262_143_328_850)
    write(pc / "intel-rapl:0:0/energy_uj", 5)  # a sub-zone (core): inside package 0, not added again
    write(pc / "intel-rapl:1/energy_uj", 262_143_000_000)
    write(pc / "intel-rapl:1/max_energy_range_uj", 262_143_328_850)
    probe = make_probe("rapl", {}, str(tmp_path))
    assert probe.missing() is None
    probe.begin()
    write(pc / "intel-rapl:0/energy_uj", 3_500_000)  # +2.5 J
    write(pc / "intel-rapl:1/energy_uj", 1_000_000)  # wrapped: 328_850 + 1_000_000 µJ = 1.32885 J
    reading = probe.end()
    assert reading.joules == pytest.approx(2.5 + 1.32885)
    assert reading.method == "rapl" and reading.details["domains"] == 2


def test_rapl_missing_says_why(tmp_path):
    assert "no /sys/class/powercap/intel-rapl" in make_probe("rapl", {}, str(tmp_path)).missing()


def fake_pynvml(readings_mj):
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    values = iter(readings_mj)
    module.NVMLError = NVMLError
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    module.nvmlDeviceGetTotalEnergyConsumption = lambda handle: next(values)
    return module


def test_nvml_differences_the_total_energy_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([1000, 1000, 5500]))  # probe check, begin, end
    probe = make_probe("nvml", {"gpu_index": 0})
    assert probe.missing() is None
    probe.begin()
    reading = probe.end()
    assert reading.joules == pytest.approx(4.5) and reading.method == "nvml"


def test_nvml_without_package_or_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "nvidia-ml-py" in make_probe("nvml", {}).missing()
    broken = fake_pynvml([])

    def no_driver():
        raise broken.NVMLError("Driver Not Loaded")

    broken.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert "no usable NVIDIA GPU 0 (Driver Not Loaded)" in make_probe("nvml", {}).missing()


def test_trapezoid_integration_by_hand():
    # 0–1 s ramps 1 → 3 W (2 J), 1–3 s holds 3 W (6 J)
    assert integrate([(0.0, 1.0), (1.0, 3.0), (3.0, 3.0)]) == pytest.approx(8.0)
    assert integrate([(0.0, 5.0)]) == 0.0


def test_jetson_hwmon_uses_the_input_rail(tmp_path):
    hw = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    write(hw / "in1_label", "VDD_IN")
    write(hw / "in1_input", 5000)  # mV
    write(hw / "curr1_input", 1200)  # mA → 6.0 W
    write(hw / "in2_label", "VDD_CPU_GPU_CV")
    write(hw / "in2_input", 5000)
    write(hw / "curr2_input", 400)
    probe = make_probe("jetson-ina", {}, str(tmp_path))
    assert probe.missing() is None and probe.read_watts() == pytest.approx(6.0)
    probe.begin()
    reading = probe.end()
    assert reading.joules == pytest.approx(6.0 * reading.window_s, rel=1e-9)
    assert reading.details["samples"] >= 2 and reading.note == "rail VDD_IN"


def test_jetson_legacy_iio_driver(tmp_path):
    iio = tmp_path / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    write(iio / "rail_name_0", "POM_5V_IN")
    write(iio / "in_power0_input", 2500)  # mW
    write(iio / "rail_name_1", "POM_5V_GPU")
    write(iio / "in_power1_input", 700)
    probe = make_probe("jetson-ina", {"jetson_rail": "POM_5V_IN"}, str(tmp_path))
    assert probe.read_watts() == pytest.approx(2.5)
    assert make_probe("jetson-ina", {"jetson_rail": "nope"}, str(tmp_path)).read_watts() == pytest.approx(3.2)
    assert "no power monitor" in make_probe("jetson-ina", {}, str(tmp_path / "empty")).missing()


PMIC_OUTPUT = """\
     3V7_WL_SW_A current(0)=0.10000000A
       3V3_SYS_A current(1)=0.20000000A
        DDR_VDD2_A current(4)=0.05000000A
     3V7_WL_SW_V volt(8)=3.70000000V
       3V3_SYS_V volt(9)=3.30000000V
       EXT5V_V volt(24)=5.10000000V
"""


def test_pmic_parser_by_hand():
    # 0.1 A × 3.7 V + 0.2 A × 3.3 V; DDR has no voltage line and EXT5V no current line: both left out
    assert parse_pmic(PMIC_OUTPUT) == pytest.approx(0.37 + 0.66)


def script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return str(path)


def test_rpi5_pmic_probe_with_a_fake_vcgencmd(tmp_path):
    (tmp_path / "out.txt").write_text(PMIC_OUTPUT)
    fake = script(tmp_path / "vcgencmd", f'[ "$1" = pmic_read_adc ] && cat {tmp_path / "out.txt"}')
    probe = make_probe("rpi5-pmic", {"vcgencmd": fake})
    assert probe.missing() is None
    probe.begin()
    reading = probe.end()
    assert reading.joules == pytest.approx(1.03 * reading.window_s, rel=1e-9)
    assert "not found" in make_probe("rpi5-pmic", {"vcgencmd": str(tmp_path / "none")}).missing()


def test_meter_reporting_a_joule_counter(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("10.0")
    meter = script(tmp_path / "meter", f"echo energy=$(cat {counter})J")
    probe = make_probe("meter", {"meter": {"command": [meter], "reports": "joules"}})
    assert probe.missing() is None
    probe.begin()
    counter.write_text("12.25")
    assert probe.end().joules == pytest.approx(2.25)


def test_meter_reporting_watts_is_integrated(tmp_path):
    meter = script(tmp_path / "meter", "echo 3.5 W")
    probe = make_probe("meter", {"meter": {"command": [meter], "reports": "watts", "interval_s": 0.05}})
    probe.begin()
    reading = probe.end()
    assert reading.joules == pytest.approx(3.5 * reading.window_s, rel=1e-9)


def test_meter_problems_are_named(tmp_path):
    assert "no [energy.meter] command" in make_probe("meter", {}).missing()
    silent = script(tmp_path / "silent", "echo nothing here")
    assert "printed no number" in make_probe("meter", {"meter": {"command": [silent]}}).missing()


def test_modelled_energy_by_hand(monkeypatch):
    from harness.energy import modelled

    clock = types.SimpleNamespace(perf_counter=iter([100.0, 102.0]).__next__,
                                  process_time=iter([5.0, 6.5]).__next__)
    monkeypatch.setattr(modelled, "time", clock)
    probe = make_probe("modelled", {"power_model": {"idle_w": 3.0, "active_w_per_core": 2.0, "error_band": 0.4}})
    assert probe.missing() is None
    probe.begin()
    reading = probe.end()
    # 3 W × 2 s wall + 2 W per core × 1.5 CPU-s = 9 J
    assert reading.joules == pytest.approx(9.0) and reading.method == "modelled"
    assert reading.details["error_band"] == 0.4 and "not a measurement" in reading.note
    assert "power_model" in make_probe("modelled", {}).missing()


def test_gpu_memory_from_nvml_per_process_accounting(monkeypatch):
    from harness.engine.memory import gpu_measurements

    module = fake_pynvml([])
    module.nvmlDeviceGetComputeRunningProcesses = lambda handle: [
        types.SimpleNamespace(pid=1, usedGpuMemory=5), types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=123 * 2**20)]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    (m,) = gpu_measurements(types.SimpleNamespace(device="cuda"))
    assert m.metric == "gpu_memory" and m.value == 123 * 2**20 and m.method == "nvml-process"
    assert gpu_measurements(types.SimpleNamespace()) == ()  # CPU runtimes: no GPU figure


class _SpinRuntime:
    """A runtime whose inference burns a little CPU (the modelled probe reads CPU time)."""

    def load(self, artifact):
        pass

    def infer(self, inputs):
        sum(range(2000))
        return []

    def sync(self):
        pass


def test_modelled_only_energy_uses_a_short_window_and_a_sensor_keeps_energy_min_s(tmp_path):
    from harness.energy.window import MODELLED_WINDOW_S, run_energy_pass
    from harness.types import RunSettings

    settings = RunSettings(min_runs=5, energy_min_s=3.0, warmup_min_runs=1)
    model = {"power_model": {"idle_w": 2.0, "active_w_per_core": 4.0}}
    measured, _ = run_energy_pass(_SpinRuntime(), None, {}, settings, 1, {"sources": ["modelled"], **model})
    window = next(m for m in measured if m.metric == "energy_per_inference").stats["window_s"]
    assert MODELLED_WINDOW_S <= window < settings.energy_min_s
    counter = tmp_path / "joules"
    counter.write_text("0\n")
    meter = {"sources": ["meter", "modelled"], **model,
             "meter": {"command": [sys.executable, "-c", f"print(open({str(counter)!r}).read())"]}}
    measured, unavailable = run_energy_pass(_SpinRuntime(), None, {}, settings, 1, meter)
    assert not unavailable
    windows = [m.stats["window_s"] for m in measured if m.metric == "energy_per_inference"]
    assert len(windows) == 2 and all(w >= settings.energy_min_s for w in windows)


def test_energy_per_image_over_a_batch_and_over_a_denoisers_loop():
    from harness.run.job import loop_energy
    from harness.types import Measurement

    measured = [Measurement("energy_per_inference", 0.8, "J", "rapl"), Measurement("latency", 3.0, "ms", "x"),
                Measurement("energy_per_inference", 1.0, "J", "modelled")]
    # batch 4, 20 DDIM steps: one image costs 20 calls × J per call / 4 images per call
    loop = {(m.metric, m.method): m for m in loop_energy({"method": "ddim", "steps": 20}, measured, 4)}
    assert loop[("loop_energy_per_image", "rapl")].value == pytest.approx(0.8 * 20 / 4)
    assert loop[("loop_energy_per_image", "modelled")].value == pytest.approx(5.0)
    assert loop[("loop_images_per_kwh", "rapl")].value == pytest.approx(3.6e6 / 4.0)
    assert len(loop) == 4
    latent = loop_energy({"steps": 10, "decoder": "vae"}, measured[:1], 1)
    assert latent[0].value == pytest.approx(8.0) and "decoder vae not included" in latent[0].note
