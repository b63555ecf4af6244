"""Lockstep latency: the timing loop's pauses (fake clock), the worker's channel, and two real workers
taking turns."""
from __future__ import annotations

import json
import time

import pytest

from harness.run.interleave import pair_cpus
from harness.launch.local import LocalLauncher
from harness.launch.lockstep import LockstepWorker
from harness.protocol import PROTOCOL_VERSION, READY, worker_pause
from harness.engine.measure import Pause, run_latency_pass
from harness.types import RunSettings
from tests.test_measure import MS, FakeClock, ScriptedRuntime, steady


def test_pauses_split_collection_into_blocks_and_paused_time_is_not_loop_time():
    clock = FakeClock()
    waits = []

    def wait():
        waits.append(len(rt_samples()))
        clock.now += 1000 * MS  # the other side's turn: a second each time

    rt = ScriptedRuntime(clock, 5 * MS, steady(30 * MS, 2 * MS))
    rt_samples = lambda: range(rt.calls)  # noqa: E731
    settings = RunSettings(min_runs=10, min_duration_s=0.1, max_duration_s=0.5, warmup_min_runs=4,
                           warmup_max_runs=4)
    result = run_latency_pass(rt, None, {}, settings, 1, clock=clock, pause=Pause(wait, block_s=0.02))
    latency = {m.metric: m for m in result.measurements}["latency"]
    # 100 ms of 2-ms calls = 50 samples, as without pauses: the 1-s waits never count toward the durations
    # (with them, the 0.5-s cap would have stopped the loop after the first block).
    assert latency.stats["n"] == 50 and latency.stats["stopped_by_time_cap"] == 0.0
    assert all(s == 2.0 for s in latency.samples)  # no wait inside a sample
    assert waits[0] == 1  # after the load and first inference: the warm-up gets a turn of its own
    calls_before_loop = 1 + 4  # first inference + warm-up
    assert waits[1] == calls_before_loop  # before the first steady-state sample
    assert [b - a for a, b in zip(waits[1:], waits[2:])] == [10] * 4  # then every 20 ms of calls
    assert len(waits) == 6  # and not again after the last sample


def test_worker_pause_speaks_ready_and_go():
    sent = []
    lines = iter(["go\n", "stop\n", ""])
    pause = worker_pause(sent.append, lambda: next(lines))
    pause()
    assert sent == [READY]
    with pytest.raises(RuntimeError, match="expected 'go'"):
        pause()
    with pytest.raises(RuntimeError, match="closed the channel"):
        pause()


def test_a_hanging_lockstep_worker_times_out_with_its_stderr(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho starting >&2\nsleep 30\n")
    fake.chmod(0o755)
    worker = LockstepWorker(LocalLauncher(str(fake)), {"mode": "latency"}, deadline=time.monotonic() + 1.0)
    try:
        t0 = time.monotonic()
        assert worker.wait_ready() is False
        assert time.monotonic() - t0 < 10
        assert worker.result.status == "timeout" and "starting" in worker.result.stderr_tail
    finally:
        worker.close()


def test_a_worker_answering_garbage_is_crashed_not_ready(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho '" + json.dumps({"not": "ready"}) + "'\nexit 3\n")
    fake.chmod(0o755)
    worker = LockstepWorker(LocalLauncher(str(fake)), {"mode": "latency"}, deadline=time.monotonic() + 10)
    try:
        assert worker.wait_ready() is False
        assert worker.result.status == "crashed" and "code 3" in worker.result.error
    finally:
        worker.close()


def test_both_workers_of_a_pair_share_cpus_rotating_pair_by_pair():
    one_thread = {"runtime_options": {"threads": 1}}
    assert [pair_cpus(one_thread, [0, 1], i) for i in range(3)] == [[1], [0], [1]]
    assert [pair_cpus({"runtime_options": {"threads": 2}}, [0, 1, 2, 3], i) for i in range(3)] == \
        [[2, 3], [0, 1], [2, 3]]
    assert pair_cpus({"runtime_options": {"threads": 0}}, [0, 1], 0) is None  # every core: nothing to pin
    assert pair_cpus({"runtime_options": {"threads": 2}}, [0, 1], 0) is None
    assert pair_cpus(one_thread | {"cpu_affinity": [0]}, [0, 1], 1) is None  # the target pins its own


def test_a_worker_that_ignores_lockstep_is_not_taken_for_a_paired_result(tmp_path):
    from harness.launch.lockstep import run_pair

    fake = tmp_path / "python"  # an old worker: reads its request, answers ok at once, never pauses
    fake.write_text("#!/bin/sh\nread line\necho '" + json.dumps({"protocol": PROTOCOL_VERSION, "status": "ok", "error": "",
                                                                 "measurements": [], "context": {}}) + "'\n")
    fake.chmod(0o755)
    first, second = run_pair((LocalLauncher(str(fake)), {}), (LocalLauncher(str(fake)), {}), timeout_s=10)
    assert first.status == second.status == "failed" and "ignored the lockstep request" in first.error
