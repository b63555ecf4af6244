"""MLPerf LoadGen as a measuring method: real LoadGen runs of the tiny model behind the ONNX Runtime adapter, its
structured log read back, the report's side-by-side table, and a worker without LoadGen."""
from __future__ import annotations

import os

import pytest

from harness.engine.loadgen import parse_scenarios, read_detail_log, run_scenario
from harness.results.store import read_records
from harness.types import RunSettings
from tests.test_cli import harness


def require_loadgen() -> None:
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        pytest.skip("mlcommons-loadgen is not installed (pip install 'edge-harness[loadgen]')")


def test_scenarios_are_checked_where_they_are_set():
    assert parse_scenarios("single-stream, offline") == ("single-stream", "offline")
    with pytest.raises(ValueError, match="unknown LoadGen scenario 'server'"):
        parse_scenarios("server")
    with pytest.raises(ValueError, match="loadgen must name"):
        RunSettings(loadgen="multi-stream")


def test_the_detail_log_is_read_by_key_and_garbage_lines_are_skipped(tmp_path):
    log = tmp_path / "mlperf_log_detail.txt"
    log.write_text(':::MLLOG {"key": "result_validity", "value": "VALID"}\nnot a log line\n:::MLLOG {broken\n'
                   ':::MLLOG {"key": "result_validity", "value": "INVALID"}\n')
    assert read_detail_log(log) == {"result_validity": "INVALID"}


def test_a_loadgen_single_stream_run_times_what_it_is_given():
    """A callable that sleeps 2 ms: LoadGen's p50 reads about 2 ms, its early-stopping p90 no lower than p90."""
    require_loadgen()
    import time

    found = run_scenario(lambda: time.sleep(0.002), "single-stream", 2e6, 0.5, 20)
    r = found["results"]
    assert r["result_validity"] == "VALID", r
    assert 1.9e6 < r["result_50.00_percentile_latency_ns"] < 4e6
    assert r["early_stopping_latency_ss"] >= r["result_90.00_percentile_latency_ns"]
    assert found["settings"]["effective_scenario"] == "SingleStream" and found["settings"]["effective_min_duration_ms"] == 500
    offline = run_scenario(lambda: time.sleep(0.002), "offline", 2e6, 0.5, 1)["results"]
    assert 200 < offline["result_samples_per_second"] < 520  # at most 500 sleeps of 2 ms per second


def test_a_short_single_stream_run_issues_the_64_queries_early_stopping_needs():
    """A 5 ms callable with a 50 ms minimum and 5 queries asked for: LoadGen still runs 64 queries, so its
    early-stopping p90 is met and given (with fewer it logs 0), and every figure is there."""
    require_loadgen()
    import time

    r = run_scenario(lambda: time.sleep(0.005), "single-stream", 5e6, 0.05, 5)["results"]
    assert r["result_query_count"] >= 64 and r["early_stopping_met"] is True, r
    assert r["result_validity"] == "VALID" and r["early_stopping_latency_ss"] > 0, r
    from harness.engine.loadgen import figures

    given = figures("single-stream", r)
    assert set(given) == {"loadgen_ss_p50", "loadgen_ss_p90", "loadgen_ss_p90_early_stopping"}
    assert 4.9e6 < given["loadgen_ss_p50"] <= given["loadgen_ss_p90"] <= given["loadgen_ss_p90_early_stopping"]


def test_a_figure_loadgen_did_not_give_is_not_recorded(monkeypatch):
    """A real LoadGen run of 10 queries (the floor lowered for this test): early stopping is not met and LoadGen
    logs 0 ns for its estimate; that 0 never becomes a measurement, the percentiles it did measure do."""
    require_loadgen()
    import time

    import harness.engine.loadgen as loadgen

    monkeypatch.setattr(loadgen, "SS_MIN_QUERIES", 1)
    r = run_scenario(lambda: time.sleep(0.002), "single-stream", 2e6, 0.01, 10)["results"]
    assert r["early_stopping_met"] is False and r["early_stopping_latency_ss"] == 0, r  # what LoadGen logs
    given = loadgen.figures("single-stream", r)
    assert set(given) == {"loadgen_ss_p50", "loadgen_ss_p90"} and given["loadgen_ss_p50"] > 1.9e6
    assert loadgen.figures("offline", {"result_samples_per_second": 0}) == {}


@pytest.mark.slow
def test_a_job_measured_by_both_methods_and_a_worker_without_loadgen(tmp_path, tiny_models_dir, shared_cache):
    require_loadgen()
    suite = tmp_path / "lg.toml"
    suite.write_text('models = ["tiny_gen"]\ntargets = ["x86-cpu-1t"]\nformats = ["onnx"]\nbatch_sizes = [1]\n'
                     '[settings]\nloadgen = "single-stream,offline"\nprofile_runs = 0\nfidelity_samples = 0\nstart_runs = 0\n')
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir)}
    args = ["run", "--suite", str(suite), "--no-progress", "--cache", str(shared_cache)]
    proc = harness(*args, "--out", str(tmp_path / "run"), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = read_records(tmp_path / "run" / "results.jsonl")
    loadgen = record.context["loadgen"]
    assert set(loadgen) == {"single-stream", "offline"}
    ss = loadgen["single-stream"]["results"]
    assert ss["result_query_count"] >= 64 and ss["early_stopping_met"] is True, ss
    for metric, key in (("loadgen_ss_p50", "result_50.00_percentile_latency_ns"),
                        ("loadgen_ss_p90", "result_90.00_percentile_latency_ns"),
                        ("loadgen_ss_p90_early_stopping", "early_stopping_latency_ss")):
        assert record.measurement(metric).value == pytest.approx(ss[key] / 1e6), metric  # LoadGen's ns, in ms
    p50, p90, early = (record.measurement(m).value for m in ("loadgen_ss_p50", "loadgen_ss_p90",
                                                              "loadgen_ss_p90_early_stopping"))
    assert 0 < p50 <= p90 <= early
    offline = loadgen["offline"]["results"]["result_samples_per_second"]
    assert record.measurement("loadgen_offline_throughput").value == pytest.approx(offline * record.batch_size)
    assert record.measurement("loadgen_ss_p50").method == "mlperf-loadgen SingleStream"
    assert ss["loadgen_version"] and loadgen["offline"]["settings"]
    for scenario in loadgen:  # each scenario's own quiet check, over the LoadGen run
        busy = loadgen[scenario]["contention"]
        # at least min_duration_s where LoadGen met it: SingleStream issues queries until it has; Offline sends one
        # query sized from the warm-up's speed, which a faster run finishes early (LoadGen then says so)
        met = loadgen[scenario]["results"].get("result_min_duration_met") is True
        assert busy["window_s"] >= (1.0 if met else 0.0) and busy["own_cores"] > 0, (scenario, busy)
        assert busy["contended"] == (busy["others_cores"] > busy["limit_cores"] == 0.25), busy
    assert loadgen["single-stream"]["results"]["result_min_duration_met"] is True
    html = (tmp_path / "run" / "index.html").read_text()
    assert "MLPerf LoadGen, side by side" in html and "single-stream: VALID" in html

    shadow = tmp_path / "no-loadgen"  # a worker where `import mlperf_loadgen` fails, as where it is not installed
    shadow.mkdir()
    (shadow / "mlperf_loadgen.py").write_text("raise ImportError('No module named mlperf_loadgen')\n")
    proc = harness(*args, "--out", str(tmp_path / "without"),
                   env=env | {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0, proc.stderr[-2000:]  # the job is measured; LoadGen is a note
    (record,) = read_records(tmp_path / "without" / "results.jsonl")
    assert record.status == "ok" and record.measurement("latency") is not None
    assert "MLPerf LoadGen is not installed here" in record.context["loadgen_unavailable"]
    assert "MLPerf LoadGen was not measured" in proc.stderr
