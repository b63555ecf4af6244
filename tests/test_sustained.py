"""Sustained mode: the windows of a minutes-long run against a fake sysfs whose zone heats and whose thermal cap
steps down the clock (the ranking changes once settled), and one real short run through the worker and the report."""
from __future__ import annotations

import pytest

from harness.engine.sustained import Window, rank_changes, run_windows, sustained_ratio
from harness.results.store import read_records
from tests.helpers import QUICK_SETTINGS_TOML
from tests.test_cli import harness


class HeatingBoard:
    """A fake sysfs and a fake clock: each call heats the zone by 0.02 °C; above 45 °C (after 250 calls) the cpufreq cooling device
    steps to state 1, the clock falls from 1800 to 900 MHz and a call takes twice as long (2 ms → 4 ms of the fake
    clock: nothing here depends on how busy the machine running the test is)."""

    def __init__(self, root):
        self.root, self.temp, self.now = root, 40.0, 0.0
        self.zone = root / "sys/class/thermal/thermal_zone0"
        self.cap = root / "sys/class/thermal/cooling_device0"
        self.freq = root / "sys/devices/system/cpu/cpu0/cpufreq"
        for folder in (self.zone, self.cap, self.freq):
            folder.mkdir(parents=True)
        (self.cap / "type").write_text("cpufreq-cpu0\n")
        self._write(0)

    def _write(self, state: int) -> None:
        (self.zone / "temp").write_text(f"{int(self.temp * 1000)}\n")
        (self.cap / "cur_state").write_text(f"{state}\n")
        (self.freq / "scaling_cur_freq").write_text(f"{1800000 if state == 0 else 900000}\n")

    def clock(self) -> float:
        return self.now

    def call(self) -> None:
        capped = self.temp > 45.0
        self.now += 0.004 if capped else 0.002
        self.temp += 0.02
        self._write(1 if capped else 0)


def test_a_board_that_heats_is_seen_window_by_window_and_its_lead_is_lost(tmp_path):
    board = HeatingBoard(tmp_path)
    windows = run_windows(board.call, duration_s=1.2, window_s=0.2, cpus=[0], root=tmp_path, clock=board.clock)
    assert len(windows) == 6 and [w.start_s for w in windows] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                                                               abs=0.005)
    first, last = windows[0], windows[-1]
    assert first.p50_ms == pytest.approx(2.0) and last.p50_ms == pytest.approx(4.0)
    assert first.n == 100 and last.n == 50
    assert first.freq_mhz == 1800.0 and last.freq_mhz == 900.0 and last.cpu_cooling == 1
    assert first.others_cores is None  # the fake tree has no /proc/stat: not read, never made up
    assert last.temp_c > first.temp_c > 40.0
    assert sustained_ratio(windows) == pytest.approx(2.0)  # the last 1 of 6 windows against the first 1
    # a flat variant at 3 ms: second at the start, first once the heating one has been capped
    flat = {"fp32 onnx/onnxruntime": 3.0}
    changes = rank_changes({"int8 onnx/onnxruntime": first.p50_ms} | flat, {"int8 onnx/onnxruntime": last.p50_ms} | flat)
    assert changes == ["int8 onnx/onnxruntime: 1st at the start, 2nd once settled",
                       "fp32 onnx/onnxruntime: 2nd at the start, 1st once settled"]
    assert rank_changes({"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.5}) == []


def test_the_ratio_compares_a_quarter_of_the_windows_at_each_end():
    def window(p50: float) -> Window:
        return Window(start_s=0.0, n=10, p50_ms=p50, p90_ms=p50)

    assert sustained_ratio([window(1.0)]) is None
    assert sustained_ratio([window(1.0), window(3.0)]) == 3.0
    # 8 windows: the first 2 (median 1.5) against the last 2 (median 4.5)
    assert sustained_ratio([window(v) for v in (1, 2, 9, 9, 9, 9, 4, 5)]) == pytest.approx(3.0)


SUITE = """
models = ["tiny_gen"]
targets = ["x86-cpu"]
formats = ["onnx", "tflite"]
batch_sizes = [1]
""" + QUICK_SETTINGS_TOML + "sustained_window_s = 0.5\n"


@pytest.mark.slow
def test_a_real_short_sustained_run_is_measured_per_window_and_drawn(tmp_path, tiny_models_dir, shared_cache):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    proc = harness("run", "--suite", str(suite), "--sustained", "2", "--out", str(out), "--cache", str(shared_cache),
                   "--no-progress", env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    assert proc.returncode == 0, proc.stderr
    records = read_records(out / "results.jsonl")
    assert len(records) == 2
    for r in records:
        found = r.context["sustained"]
        assert found["duration_s"] == 2.0 and found["window_s"] == 0.5
        assert 3 <= len(found["windows"]) <= 4 and all(w["n"] > 0 and w["p50_ms"] > 0 for w in found["windows"])
        m = r.measurement("sustained_latency")
        k = found["edge_windows"]
        assert k == 1 and m.samples == tuple(w["p50_ms"] for w in found["windows"][-k:])  # the last quarter's
        assert r.measurement("sustained_ratio").value > 0
        methods = {w["energy_method"] for w in found["windows"]}  # the target's first available source (rapl
        assert len(methods) == 1 and methods <= {"rapl", "modelled"}  # where readable, else the modelled estimate)
        assert all(w["joules_per_inference"] > 0 for w in found["windows"])
        assert all(w["others_cores"] is not None for w in found["windows"])  # each window's own quiet check
        assert found["contended_windows"] == sum(w["others_cores"] > 0.25 for w in found["windows"])
        assert r.context["pass_seconds"]["sustained"] >= 2.0
    html = (out / "index.html").read_text()
    assert 'id="sustained"' in html and "Ranking by p50 at the" in html and "<polyline" in html
