"""CPU state readers against a fake sysfs tree, and the warnings they raise."""
from harness.engine.cpustate import read_cpu_state, state_warnings


def fake_sysfs(root, governor="performance", freqs_khz=(2400000, 2200000), temps_mc=(45000, 52000)):
    for cpu, freq in enumerate(freqs_khz):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_governor").write_text(governor + "\n")
        (d / "scaling_cur_freq").write_text(f"{freq}\n")
    for i, t in enumerate(temps_mc):
        z = root / f"sys/class/thermal/thermal_zone{i}"
        z.mkdir(parents=True, exist_ok=True)
        (z / "temp").write_text(f"{t}\n")


def test_reads_governor_mean_frequency_and_hottest_zone(tmp_path):
    fake_sysfs(tmp_path)
    assert read_cpu_state([0, 1], tmp_path) == {"governor": "performance", "freq_mhz": 2300.0, "temp_c": 52.0}
    assert read_cpu_state([1], tmp_path)["freq_mhz"] == 2200.0  # only the cores the worker runs on


def test_nothing_readable_gives_an_empty_state(tmp_path):
    assert read_cpu_state([0], tmp_path) == {}


def test_warnings_for_governor_switch_throttling_and_heat():
    before = {"governor": "performance", "freq_mhz": 2400.0, "temp_c": 50.0}
    assert state_warnings(before, dict(before)) == []
    assert state_warnings(before, before | {"freq_mhz": 2200.0}) == []  # an 8% dip is not throttling
    warnings = state_warnings(before, {"governor": "powersave", "freq_mhz": 1500.0, "temp_c": 81.0})
    assert len(warnings) == 3
    assert "performance → powersave" in warnings[0]
    assert "2400 → 1500 MHz" in warnings[1]
    assert "50 → 81 °C" in warnings[2]


def test_cpu_model_prefers_the_board_model_on_arm(tmp_path):
    from harness.engine.context import cpu_model
    from harness.launch.emulated import RPI4_CPUINFO

    (tmp_path / "arm").write_text(RPI4_CPUINFO)
    assert cpu_model(tmp_path / "arm") == "Raspberry Pi 4 Model B Rev 1.4"
    (tmp_path / "x86").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_model(tmp_path / "x86") == "AMD EPYC 7B13"
