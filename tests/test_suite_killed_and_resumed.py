"""Interrupting a suite for real (kill -9 of the harness, Ctrl-C) loses no result and duplicates none."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from harness.config.paths import PROJECT_ROOT
from harness.results.store import read_records
from tests.test_cli import harness

pytestmark = pytest.mark.slow


def start(out, cache, models_dir):
    env = dict(os.environ) | {"EDGE_HARNESS_MODELS": str(models_dir)}
    return subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", "full", "--variant", "none", "--model", "tiny_gen", "--quick",
                             "--no-progress", "--out", str(out), "--cache", str(cache)],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_records(path, n, proc, limit_s=240):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().count("\n") >= n:  # complete records only
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records after {limit_s} s")


def running_worker(proc, limit_s=60):
    """The harness's children once one of them is a measurement worker (so a test knows one was running)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        children = psutil.Process(proc.pid).children(recursive=True)
        try:
            if any("harness.worker" in " ".join(c.cmdline()) for c in children):
                return children
        except psutil.NoSuchProcess:
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no worker running after {limit_s} s")


def test_kill_9_then_resume_completes_without_loss_or_duplicates(tmp_path, tiny_models_dir, shared_cache):
    out = tmp_path / "run"
    results = out / "results.jsonl"
    proc = start(out, shared_cache, tiny_models_dir)
    wait_for_records(results, 2, proc)
    children = running_worker(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "a worker outlived the killed harness"
    before = read_records(results)
    assert 2 <= len(before) < 8
    with open(results, "a") as fh:  # what a write torn by the kill would leave
        fh.write('{"job_key": "torn')

    again = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--out", str(out), "--cache", str(shared_cache),
                    "--resume", env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    assert again.returncode == 0, again.stderr
    assert "removed a torn last record" in again.stderr
    after = read_records(results)
    keys = [r.job_key for r in after]
    assert len(keys) == len(set(keys)) == 8  # all jobs (4 formats × batch 1 and 8), none twice
    assert after[: len(before)] == before  # what was measured before the kill is kept as it was


def test_ctrl_c_keeps_results_and_stops_the_worker(tmp_path, tiny_models_dir, shared_cache):
    out = tmp_path / "run"
    proc = start(out, shared_cache, tiny_models_dir)
    wait_for_records(out / "results.jsonl", 1, proc)
    children = running_worker(proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted; results measured so far are kept" in stderr
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive  # the worker that was measuring is gone with the harness
    assert len(read_records(out / "results.jsonl")) >= 1  # kept (exit 130 above: the suite did not run on)
