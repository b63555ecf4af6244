"""The edge_harness pytest fixture, as a user's test suite uses it (a real pytest run in a subprocess)."""
from __future__ import annotations

import json

import pytest

from harness.results.store import read_records
from tests.helpers import build_all

pytest_plugins = ["pytester"]


@pytest.mark.slow
def test_fixture_measures_an_artifact_and_writes_a_gateable_run(pytester, tiny_models_dir, shared_cache, tmp_path):
    _, _, _, exports = build_all(tiny_models_dir, shared_cache / "plugin", "tiny_gen")
    onnx_path = exports["onnx"].path
    pytester.makepyfile(test_user_bench=f"""
        def test_generator_latency(edge_harness):
            (record,) = edge_harness.measure({onnx_path!r})
            assert record.status == "ok", record.error
            assert record.runtime == "onnxruntime" and record.target == "x86-cpu"
            assert record.measurement("latency").stats["p50"] > 0
    """)
    out = tmp_path / "bench-run"
    # The plugin is loaded through its pytest11 entry point, as in a user's environment.
    result = pytester.runpytest_subprocess("--edge-harness-out", str(out),
                                           "--edge-harness-quick", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"edge-harness: {out / 'index.html'}*"])
    (record,) = read_records(out / "results.jsonl")
    assert record.status == "ok" and record.measurement("latency").samples
    bench = json.loads((out / "pytest-benchmark.json").read_text())
    assert len(bench["benchmarks"]) == 1 and bench["benchmarks"][0]["stats"]["rounds"] >= 5
    assert (out / "index.html").is_file()
