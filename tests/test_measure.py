"""The timing loop against a scripted runtime and a fake clock: no real time passes."""
import numpy as np
import pytest

from harness.engine.measure import run_latency_pass
from harness.types import RunSettings

MS = 1_000_000  # ns


class ScriptedRuntime:
    """Each call advances the fake clock by the next scripted duration (ns)."""

    def __init__(self, clock, load_ns, durations):
        self.clock, self.load_ns, self.durations = clock, load_ns, iter(durations)
        self.calls = 0

    def load(self, artifact):
        self.clock.now += self.load_ns

    def infer(self, inputs):
        self.calls += 1
        self.clock.now += next(self.durations)
        return [np.zeros(2, np.float32) + self.calls]

    def sync(self):
        pass


class FakeClock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


def steady(first, rest, n=100_000):
    return [first] + [rest] * n


def run(settings, durations, load_ns=5 * MS, batch=1):
    clock = FakeClock()
    rt = ScriptedRuntime(clock, load_ns, durations)
    result = run_latency_pass(rt, None, {}, settings, batch, clock=clock)
    return {m.metric: m for m in result.measurements}, result, rt


def test_load_first_inference_and_throughput_are_reported_separately():
    settings = RunSettings(min_runs=10, min_duration_s=0.0, warmup_min_runs=4)
    ms, result, _ = run(settings, steady(30 * MS, 2 * MS), batch=8)
    assert ms["load_time"].value == 5.0
    assert ms["first_inference"].value == 30.0
    assert ms["latency"].value == 2.0
    assert ms["throughput"].value == pytest.approx(8 / 0.002)
    assert result.first_outputs[0].tolist() == [1.0, 1.0]


def test_both_min_runs_and_min_duration_must_be_met():
    # 1 ms per call: 50 runs take 50 ms, so a 0.2 s minimum duration needs 200 samples.
    ms, _, _ = run(RunSettings(min_runs=50, min_duration_s=0.2, warmup_min_runs=4), steady(MS, MS))
    assert ms["latency"].stats["n"] == 200
    # ...and a 10 ms minimum duration is met before 50 runs: the count decides.
    ms, _, _ = run(RunSettings(min_runs=50, min_duration_s=0.01, warmup_min_runs=4), steady(MS, MS))
    assert ms["latency"].stats["n"] == 50


def test_time_cap_stops_collection():
    settings = RunSettings(min_runs=10_000, min_duration_s=0.0, max_duration_s=0.1, warmup_min_runs=4)
    ms, _, _ = run(settings, steady(MS, MS))
    assert ms["latency"].stats["n"] == 100
    assert ms["latency"].stats["stopped_by_time_cap"] == 1.0


def test_warmup_runs_until_halves_agree():
    # First inference 10 ms; warm-up sees 8, 6, 4, then 2 ms forever. The first half's median reaches
    # 2 ms when it holds 4 of 7 samples at 2 ms: n = 14 (first half [8,6,4,2,2,2,2], second all 2).
    durations = [10 * MS, 8 * MS, 6 * MS, 4 * MS] + [2 * MS] * 100_000
    settings = RunSettings(min_runs=10, min_duration_s=0.0, warmup_min_runs=4, warmup_tolerance=0.1)
    ms, _, _ = run(settings, durations)
    stats = ms["latency"].stats
    assert stats["warmup_stable"] == 1.0
    assert stats["warmup_runs"] == 14
    assert stats["max"] == 2.0  # no slow warm-up call leaked into the steady-state samples


def test_warmup_gives_up_at_its_cap_and_says_so():
    alternating = [MS, 3 * MS] * 50_000  # noisy but stationary: the halves agree
    drifting = [int(MS * (1 + i * 0.05)) for i in range(100_000)]  # ever slower: halves never agree
    settings = RunSettings(min_runs=5, min_duration_s=0.0, warmup_min_runs=4, warmup_max_runs=20,
                           warmup_tolerance=0.01, max_duration_s=1000)
    ms, _, _ = run(settings, drifting)
    assert ms["latency"].stats["warmup_stable"] == 0.0
    assert ms["latency"].stats["warmup_runs"] == 20
    ms, _, _ = run(settings, alternating)
    assert ms["latency"].stats["warmup_stable"] == 1.0


def test_ci_width_target_keeps_sampling_until_narrow():
    rng = np.random.default_rng(0)
    noisy = [MS] + [int(MS * (1 + 0.3 * abs(x))) for x in rng.standard_normal(200_000)]
    loose = RunSettings(min_runs=20, min_duration_s=0.0, warmup_min_runs=4, warmup_tolerance=0.5,
                        max_duration_s=1000)
    tight = RunSettings(min_runs=20, min_duration_s=0.0, warmup_min_runs=4, warmup_tolerance=0.5,
                        max_duration_s=1000, target_ci_rel_width=0.01)
    n_loose = run(loose, noisy)[0]["latency"].stats["n"]
    lat = run(tight, noisy)[0]["latency"]
    assert n_loose == 20
    assert lat.stats["n"] > 200
    assert (lat.stats["median_ci_high"] - lat.stats["median_ci_low"]) / lat.value <= 0.01


def test_settings_validation():
    with pytest.raises(ValueError):
        RunSettings(min_runs=0)
    with pytest.raises(ValueError):
        RunSettings(min_duration_s=5, max_duration_s=1)
    with pytest.raises(ValueError):
        RunSettings(target_ci_rel_width=0)


class FakeDeviceTimer:
    """A device timer that reads the fake clock: each reading is the device time of one call (ms), here
    the call's scripted duration minus a fixed host overhead the device never sees."""

    method = "fake-event"

    def __init__(self, clock, host_overhead_ns):
        self.clock, self.overhead = clock, host_overhead_ns
        self.started = self.stopped = None
        self.events = []

    def start(self):
        self.events.append("start")
        self.started = self.clock.now

    def stop(self):
        self.events.append("stop")
        self.stopped = self.clock.now

    def read_ms(self):
        self.events.append("read")
        reading = (self.stopped - self.started - self.overhead) / MS
        self.clock.now += MS  # reading costs time: it must fall outside the host sample
        return reading


class SyncRecordingRuntime(ScriptedRuntime):
    def __init__(self, clock, load_ns, durations, timer):
        super().__init__(clock, load_ns, durations)
        self.timer = timer

    def sync(self):
        self.timer.events.append("sync")


def test_a_device_timer_brackets_every_steady_state_call_and_reads_after_sync():
    clock = FakeClock()
    timer = FakeDeviceTimer(clock, host_overhead_ns=MS // 2)
    rt = SyncRecordingRuntime(clock, 5 * MS, steady(30 * MS, 2 * MS), timer)
    settings = RunSettings(min_runs=40, min_duration_s=0.0, warmup_min_runs=4)
    result = run_latency_pass(rt, None, {}, settings, 1, clock=clock, device_timer=timer)
    ms = {m.metric: m for m in result.measurements}
    gpu, host = ms["gpu_latency"], ms["latency"]
    assert gpu.method == "fake-event" and gpu.unit == "ms"
    assert len(gpu.samples) == len(host.samples) == 40  # warm-up readings are dropped
    assert gpu.value == 1.5 and host.value == 2.0  # the 1 ms read is in neither sample
    assert gpu.stats["n"] == 40.0
    # the order inside each timed call: start, infer, stop, sync, then read (after the device is idle)
    assert timer.events[-4:] == ["start", "stop", "sync", "read"]


def test_without_a_device_timer_there_is_no_gpu_latency():
    ms, _, _ = run(RunSettings(min_runs=10, min_duration_s=0.0, warmup_min_runs=4), steady(30 * MS, 2 * MS))
    assert "gpu_latency" not in ms


def test_only_runtimes_on_torchs_stream_get_cuda_event_timing():
    from harness.engine.device_timing import device_timer_for
    from harness.runtimes import RuntimeOptions
    from harness.runtimes.cuda import OnnxRuntimeCuda, TorchCudaRuntime
    from harness.runtimes.onnxruntime_rt import OnnxRuntime
    from harness.runtimes.torch_eager import TorchEagerRuntime

    assert TorchCudaRuntime.event_stream == "torch-current"
    for cpu_or_own_stream in (TorchEagerRuntime, OnnxRuntime, OnnxRuntimeCuda):
        assert device_timer_for(cpu_or_own_stream(RuntimeOptions())) is None


def test_warmup_judges_at_least_five_samples_a_half():
    """warmup_min_runs = 2 asks for little, but stability is never judged on fewer than 5 + 5 samples."""
    ms, _, _ = run(RunSettings(min_runs=10, min_duration_s=0.0, warmup_min_runs=2), steady(30 * MS, 2 * MS))
    assert ms["latency"].stats["warmup_stable"] == 1.0 and ms["latency"].stats["warmup_runs"] == 10
    capped = RunSettings(min_runs=10, min_duration_s=0.0, warmup_min_runs=2, warmup_max_runs=6)
    ms, _, _ = run(capped, steady(30 * MS, 2 * MS))
    assert ms["latency"].stats["warmup_stable"] == 0.0 and ms["latency"].stats["warmup_runs"] == 6


def test_the_garbage_collector_is_off_while_samples_are_taken_and_back_on_after():
    import gc

    seen = []

    class Recording(ScriptedRuntime):
        def infer(self, inputs):
            seen.append(gc.isenabled())
            return super().infer(inputs)

    clock = FakeClock()
    rt = Recording(clock, 5 * MS, steady(30 * MS, 2 * MS))
    assert gc.isenabled()
    result = run_latency_pass(rt, None, {}, RunSettings(min_runs=20, min_duration_s=0.0, warmup_min_runs=4), 1,
                              clock=clock)
    n = int({m.metric: m for m in result.measurements}["latency"].stats["n"])
    assert seen[-n:] == [False] * n  # every steady-state sample
    assert seen[0] is True  # the first inference ran with it on
    assert gc.isenabled()
