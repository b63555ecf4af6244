"""Real faults, provoked for real: each is recorded with its status and stderr, and the suite goes on."""
from __future__ import annotations

import shutil

import pytest

from harness.results.store import read_records
from tests.conftest import FIXTURES
from tests.test_cli import harness

pytestmark = pytest.mark.slow

FAULTY_RUNTIMES = ["onnxruntime", "faulty-segfault", "faulty-abort", "faulty-hang", "faulty-memory-hog",
                   "faulty-memory-error"]


def test_crashes_hangs_and_memory_hogs_are_recorded_and_the_suite_goes_on(tmp_path, tiny_models_dir, shared_cache):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_models_dir / "tiny_gen.py", models)
    for path in (FIXTURES / "faulty_models").glob("*.py"):
        shutil.copy(path, models)
    targets = tmp_path / "targets"
    targets.mkdir()
    runtimes = ", ".join(f'"{r}"' for r in FAULTY_RUNTIMES)
    (targets / "faulty.toml").write_text(
        f'name = "faulty"\narch = "x86_64"\nreach = "local"\nruntimes = [{runtimes}]\nthreads = 1\nmemory_cap_mb = 400\n')
    suite = tmp_path / "faults.toml"
    suite.write_text('targets = ["faulty"]\nformats = ["onnx"]\nbatch_sizes = [1]\n[settings]\nmin_runs = 5\n'
                     'min_duration_s = 0.05\nwarmup_min_runs = 2\nwarmup_max_runs = 20\nmemory_runs = 2\n'
                     'timeout_s = 8\nprepare_timeout_s = 25\n')
    out = tmp_path / "run"
    env = {"EDGE_HARNESS_MODELS": str(models), "EDGE_HARNESS_TARGETS": str(targets),
           "EDGE_HARNESS_PLUGINS": str(FIXTURES / "plugins" / "faulty_runtimes.py")}
    proc = harness("run", "--suite", str(suite), "--out", str(out), "--cache", str(shared_cache), env=env)
    assert proc.returncode == 1, proc.stderr
    assert (out / "index.html").is_file()

    records = read_records(out / "results.jsonl")
    assert len(records) == 3 * len(FAULTY_RUNTIMES)  # every job has a record: nothing lost
    tiny = {r.runtime: r for r in records if r.model == "tiny_gen"}
    assert tiny["onnxruntime"].status == "ok" and tiny["onnxruntime"].measurement("latency")
    assert tiny["faulty-segfault"].status == "crashed"
    assert "SIGSEGV" in tiny["faulty-segfault"].error
    assert "about to read address 0" in tiny["faulty-segfault"].error  # the stderr tail
    assert "Segmentation fault" in tiny["faulty-segfault"].error  # faulthandler's report
    assert tiny["faulty-abort"].status == "crashed" and "SIGABRT" in tiny["faulty-abort"].error
    assert tiny["faulty-hang"].status == "timeout" and "8 s" in tiny["faulty-hang"].error
    assert tiny["faulty-memory-hog"].status == "oom" and "> 400 MiB" in tiny["faulty-memory-hog"].error
    assert tiny["faulty-memory-error"].status == "oom"
    assert "cannot allocate the activation buffer" in tiny["faulty-memory-error"].error

    aborted = [r for r in records if r.model == "aborts_when_built"]
    assert {r.status for r in aborted} == {"crashed"}
    assert all("preparing aborts_when_built crashed" in r.error and "SIGABRT" in r.error for r in aborted)
    hung = [r for r in records if r.model == "hangs_when_built"]
    assert {r.status for r in hung} == {"timeout"}
    assert all("25 s" in r.error for r in hung)
