"""MLPerf LoadGen as a measuring method beside the harness's own loop (worker side; ``mlcommons-loadgen``).

The artifact stays behind the same runtime adapter (load / infer / sync). A LoadGen *sample* is one inference of
the job's batch (the artifact's fixed batch size); the query sample library holds that one input set. Scenarios:

- ``single-stream``: one query at a time, each answered before the next is issued; LoadGen reports the latency
  percentiles and its early-stopping estimate of the 90th percentile. A run issues at least ``SS_MIN_QUERIES``
  queries: with fewer, early stopping is not met and LoadGen logs 0 for the estimate.
- ``offline``: one query holding every sample; LoadGen reports samples per second.

LoadGen has no warm-up of its own: the worker warms the runtime up with the harness's warm-up rule first, and that
warm-up's median sets LoadGen's expected latency / QPS (so it pre-generates enough queries for the minimum
duration). Everything LoadGen logs (``mlperf_log_detail.txt``: results, requested and effective settings, its
version) is read from its structured log lines and kept in the record; only the figures LoadGen actually gave
become measurements (``figures``).
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

SCENARIOS = ("single-stream", "offline")
SS_MIN_QUERIES = 64
"""The fewest queries of a single-stream run: LoadGen's early-stopping estimate of the 90th percentile needs 64
(with 63 it is not met and the log says 0 ns)."""
SS_FIGURES = (("result_50.00_percentile_latency_ns", "loadgen_ss_p50"),
              ("result_90.00_percentile_latency_ns", "loadgen_ss_p90"),
              ("early_stopping_latency_ss", "loadgen_ss_p90_early_stopping"))
"""Single-stream results (ns) → the measurement each becomes."""
KEPT_RESULTS = ("result_validity", "result_invalid_reason", "result_min_duration_met", "result_min_queries_met",
                "early_stopping_met", "early_stopping_latency_ss", "result_50.00_percentile_latency_ns",
                "result_90.00_percentile_latency_ns", "result_99.00_percentile_latency_ns", "result_mean_latency_ns",
                "result_min_latency_ns", "result_max_latency_ns", "result_samples_per_second",
                "result_qps_without_loadgen_overhead", "result_qps_with_loadgen_overhead", "result_query_count",
                "loadgen_version", "num_errors")


def parse_scenarios(text: str) -> tuple[str, ...]:
    """'single-stream,offline' → the scenarios; an unknown one is a ValueError naming the known."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        raise ValueError(f"unknown LoadGen scenario {bad[0]!r} (known: {', '.join(SCENARIOS)})")
    return names


def read_detail_log(path: Path) -> dict[str, Any]:
    """The ``:::MLLOG`` lines of LoadGen's detail log as {key: value} (the last value of a repeated key)."""
    found: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                entry = json.loads(line[len(":::MLLOG "):])
            except json.JSONDecodeError:
                continue
            found[entry.get("key", "")] = entry.get("value")
    return found


def run_scenario(infer: Callable[[], Any], scenario: str, expected_ns: float, min_duration_s: float,
                 min_queries: int) -> dict[str, Any]:
    """One LoadGen performance run of ``infer`` (one sample = one call, synced): {results, settings} from its
    log (``results``: ``KEPT_RESULTS``; ``settings``: every requested_* and effective_* entry)."""
    import mlperf_loadgen as lg

    def issue(samples: Any) -> None:
        for sample in samples:
            infer()
            lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    settings = lg.TestSettings()
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(min_duration_s * 1000)
    if scenario == "single-stream":
        settings.scenario = lg.TestScenario.SingleStream
        settings.single_stream_expected_latency_ns = max(int(expected_ns), 1)
        settings.min_query_count = max(min_queries, SS_MIN_QUERIES)
    else:
        settings.scenario = lg.TestScenario.Offline
        settings.offline_expected_qps = 1e9 / max(expected_ns, 1.0)
        settings.min_query_count = 1
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1, 1, lambda indices: None, lambda indices: None)
    with tempfile.TemporaryDirectory(prefix="edge-harness-loadgen-") as tmp:
        log = lg.LogSettings()
        log.log_output.outdir = tmp
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        try:
            lg.StartTestWithLogSettings(sut, qsl, settings, log)
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        entries = read_detail_log(Path(tmp) / "mlperf_log_detail.txt")
    return {"results": {k: entries[k] for k in KEPT_RESULTS if k in entries},
            "settings": {k: v for k, v in entries.items() if k.startswith(("requested_", "effective_"))}}


def figures(scenario: str, results: dict[str, Any]) -> dict[str, float]:
    """The figures LoadGen gave in ``results`` (``run_scenario``'s): single-stream {measurement: ns} for the p50,
    p90 and, only where ``early_stopping_met`` is true, the early-stopping p90; offline {"loadgen_offline_throughput":
    samples/s}. A figure LoadGen left out, or logged as 0 (not measured), is not there."""
    def given(key: str) -> float | None:
        value = results.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        return float(value) if ok else None

    out: dict[str, float] = {}
    if scenario == "single-stream":
        for key, metric in SS_FIGURES:
            if key == "early_stopping_latency_ss" and results.get("early_stopping_met") is not True:
                continue
            if (value := given(key)) is not None:
                out[metric] = value
    elif (value := given("result_samples_per_second")) is not None:
        out["loadgen_offline_throughput"] = value
    return out


def warm_median_ns(infer: Callable[[], Any], warm_up: Callable[..., Any], settings: Any) -> float:
    """The runtime warmed up by the harness's rule; the median of the warm-up's second half (ns)."""
    samples, _ = warm_up(infer, settings, time.perf_counter_ns)
    return float(statistics.median(samples[len(samples) // 2:]))
