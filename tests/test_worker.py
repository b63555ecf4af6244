"""The worker contract (JSON in, JSON out, in a fresh process) and how the launcher reports deaths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from harness.launch.local import LocalLauncher
from harness.protocol import PROTOCOL_VERSION
from harness.config.paths import PROJECT_ROOT
from harness.types import RunSettings
from tests.helpers import build_all

QUICK = RunSettings(min_runs=5, min_duration_s=0.01, warmup_min_runs=2, warmup_max_runs=10, memory_runs=2).to_dict()


@pytest.fixture(scope="module")
def built(tiny_models_dir, shared_cache):
    return build_all(tiny_models_dir, shared_cache, "tiny_gen")


def _job(artifact, runtime, io, mode, tmp_path):
    return {"mode": mode, "artifact": artifact.to_dict(), "runtime": runtime, "runtime_options": {"threads": 1},
            "inputs_path": io.inputs_path, "outputs_path": str(tmp_path / "out.npz"), "settings": QUICK,
            "batch_size": 1}


def _raw_worker(job):
    """The worker as a board runs it: one JSON request (of this protocol version) on stdin."""
    proc = subprocess.run([sys.executable, "-m", "harness.worker"], input=json.dumps({"protocol": PROTOCOL_VERSION,
                                                                                       **job}), capture_output=True,
                          text=True, timeout=120, cwd=PROJECT_ROOT)
    return proc


@pytest.mark.slow
def test_latency_job_returns_one_json_line_with_measurements(built, tmp_path):
    _, _, io, exports = built
    proc = _raw_worker(_job(exports["tflite"], "litert", io, "latency", tmp_path))
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # native chatter (XNNPACK INFO lines) went to stderr
    result = json.loads(lines[0])
    assert result["status"] == "ok" and result["protocol"] == PROTOCOL_VERSION
    metrics = {m["metric"]: m for m in result["measurements"]}
    assert set(metrics) == {"import_time", "load_time", "first_inference", "latency", "throughput"}
    assert metrics["latency"]["stats"]["n"] >= 5 and len(metrics["latency"]["samples"]) >= 5
    assert result["context"]["runtime_versions"] == {"ai-edge-litert": version("ai-edge-litert")}
    assert (tmp_path / "out.npz").is_file()
    assert result["context"]["threads"] == 1


@pytest.mark.slow
def test_threads_zero_means_every_available_core(built, tmp_path):
    _, _, io, exports = built
    job = _job(exports["onnx"], "onnxruntime", io, "outputs", tmp_path) | {"runtime_options": {"threads": 0}}
    result = LocalLauncher().run(job, 120)
    assert result.context["threads"] == len(os.sched_getaffinity(0)) == result.context["cores_available"]


@pytest.mark.slow
def test_memory_job_reports_rss_figures(built, tmp_path):
    _, _, io, exports = built
    result = LocalLauncher().run(_job(exports["onnx"], "onnxruntime", io, "memory", tmp_path), 120)
    assert result.status == "ok", result
    m = {x["metric"]: x["value"] for x in result.measurements}
    assert m["peak_rss"] >= m["rss_after_load"] >= m["rss_baseline"] > 10 * 2**20
    assert m["peak_rss_over_baseline"] == m["peak_rss"] - m["rss_baseline"]


def test_broken_artifact_is_a_failed_result_not_a_crash(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not a protobuf")
    np_inputs = tmp_path / "in.npz"
    import numpy as np

    np.savez(np_inputs, z=np.zeros((1, 8), np.float32))
    artifact = {"id": "x", "format": "onnx", "path": str(bad), "bytes": 22, "model": "m", "variant": "fp32",
                "batch_size": 1, "parent_id": None, "recipe": {}}
    job = {"mode": "outputs", "artifact": artifact, "runtime": "onnxruntime", "inputs_path": str(np_inputs),
           "outputs_path": str(tmp_path / "o.npz")}
    result = LocalLauncher().run(job, 60)
    assert result.status == "failed"
    assert "onnxruntime" in result.error.lower() or "protobuf" in result.error.lower()
    assert result.stderr_tail


def test_unknown_runtime_and_garbage_job_fail_cleanly():
    result = json.loads(_raw_worker({"mode": "outputs", "runtime": "nope"}).stdout)
    assert result["status"] == "failed" and "unknown runtime 'nope'" in result["error"]
    proc = subprocess.run([sys.executable, "-m", "harness.worker"], input="{not json", capture_output=True,
                          text=True, timeout=60, cwd=PROJECT_ROOT)
    assert json.loads(proc.stdout)["status"] == "failed"


def _script(tmp_path, body):
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return str(path)


def test_launcher_reports_a_worker_killed_by_a_signal(tmp_path):
    result = LocalLauncher(python=_script(tmp_path, "echo dying >&2; kill -SEGV $$")).run({}, 30)
    assert result.status == "crashed"
    assert "SIGSEGV" in result.error and "dying" in result.stderr_tail


def test_launcher_reports_a_hanging_worker_as_timeout(tmp_path):
    result = LocalLauncher(python=_script(tmp_path, "exec sleep 30")).run({}, 0.5)
    assert result.status == "timeout" and "0.5 s" in result.error


def test_launcher_reports_a_worker_without_result(tmp_path):
    result = LocalLauncher(python=_script(tmp_path, "echo oops >&2; exit 3")).run({}, 30)
    assert result.status == "crashed" and "code 3" in result.error


@pytest.mark.slow
def test_cpu_affinity_pins_the_worker_and_sets_the_default_threads(built, tmp_path):
    _, _, io, exports = built
    job = _job(exports["onnx"], "onnxruntime", io, "latency", tmp_path) | {
        "runtime_options": {"threads": 0}, "cpu_affinity": [0]}
    result = LocalLauncher().run(job, 120)
    assert result.status == "ok", result
    assert result.context["cpu_affinity"] == [0] and result.context["cores_available"] == 1
    assert result.context["threads"] == 1
    assert "cpu_state_before" in result.context
    # pinning itself warns about nothing; what this shared machine did meanwhile (steal, other load, clock) may
    machine_state = ("steal", "busy", "MHz", "°C", "governor")
    assert [w for w in result.context["warnings"] if not any(m in w for m in machine_state)] == []


def test_unavailable_cpu_affinity_is_unsupported(tmp_path):
    result = LocalLauncher().run({"mode": "outputs", "runtime": "onnxruntime", "cpu_affinity": [4096]}, 60)
    assert result.status == "unsupported" and "cpu_affinity [4096] is not available" in result.error


class _Doubler:
    """A stand-in runtime that records the batch sizes it was given."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def infer(self, inputs):
        (x,) = inputs.values()
        self.batches.append(len(x))
        return [x * 2, x[:, :1]]

    def sync(self) -> None:
        pass


def test_the_sample_set_runs_in_whole_batches_and_keeps_order():
    import numpy as np

    from harness.worker import generate_samples

    rt = _Doubler()
    x = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    doubled, first = generate_samples(rt, {"z": x}, 3)
    assert rt.batches == [3, 3]  # the seventh sample does not fill a batch: left out
    np.testing.assert_array_equal(doubled, x[:6] * 2)
    np.testing.assert_array_equal(first, x[:6, :1])
    assert generate_samples(_Doubler(), {"z": x}, 8) == []


@pytest.mark.slow
def test_import_time_counts_the_library_import_even_when_missing_would_import_it_first(built, tmp_path):
    """A CUDA adapter's missing() imports torch / onnxruntime to ask for a device; import_time used to be ~0 there."""
    _, _, io, exports = built
    plugin = PROJECT_ROOT / "tests" / "fixtures" / "plugins" / "device_query_runtime.py"
    job = _job(exports["onnx"], "device-query", io, "latency", tmp_path)
    result = LocalLauncher(env={"EDGE_HARNESS_PLUGINS": str(plugin)}).run(job, 120)
    assert result.status == "ok", result
    import_ms = next(m["value"] for m in result.measurements if m["metric"] == "import_time")
    assert import_ms >= 400  # the library's own 0.4 s import
    assert result.context["runtime_versions"] == {"slow_runtime_lib": "1"}
