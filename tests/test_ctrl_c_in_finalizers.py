"""A Ctrl-C is never lost: Python drops a KeyboardInterrupt raised inside a finalizer ("Exception ignored in …");
the harness remembers the Ctrl-C and stops at its next safe point."""
from __future__ import annotations

import os
import signal
import sys

import pytest

from harness.launch import interrupts
from harness.results.store import read_records
from tests.test_runner_cache import make_runner, tiny_suite


class CtrlCInFinalizer:
    """Collected while Ctrl-C arrives: its KeyboardInterrupt is swallowed by Python."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        total = 0
        for i in range(1000):  # Python code after the signal: its handler runs here, inside __del__
            total += i


def test_python_swallows_a_keyboard_interrupt_in_a_finalizer_and_check_brings_it_back(monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: dropped.append(info.exc_type))
    with interrupts.watching():
        CtrlCInFinalizer()  # collected at once
        assert interrupts.requested()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # acted upon once
    assert dropped == [KeyboardInterrupt]  # Python dropped it ("Exception ignored in …")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupts.check()  # outside watching(): nothing pending


def test_the_default_handler_still_raises_where_it_can():
    with interrupts.watching(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass


@pytest.mark.slow
def test_a_ctrl_c_swallowed_during_a_job_stops_the_suite_after_that_job(tmp_path, tiny_models_dir, shared_cache,
                                                                          monkeypatch):
    """The fresh-machine failure (exit 0 after Ctrl-C): the interrupt landed in a finalizer and the suite ran on."""
    runner = make_runner(tiny_suite(formats=("onnx",)), tmp_path / "r", shared_cache, tiny_models_dir)
    calls = []

    def run_job(job, target, export_error):
        calls.append(job.key)
        CtrlCInFinalizer()
        return runner._harness_error(job, RuntimeError("stand-in measurement"))

    monkeypatch.setattr(runner, "_run_job", run_job)
    assert runner.job_count() == 2
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert len(calls) == 1  # the second job never started
    assert [r.job_key for r in read_records(runner.store.path)] == calls  # the interrupted job's record is kept
