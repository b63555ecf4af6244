"""The metric catalogue is the one definition that compare, gate, the summary table and the HTML read."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from harness import stats
from harness.analysis import compare, gate
from harness.analysis.metrics import CATALOGUE, METRICS
from harness.report.compression import compression_frame
from harness.report.html import write_html
from harness.report.tables import summary_frame
from harness.results.store import read_records
from harness.types import Measurement
from tests.mutations import SMALL_RUN
from tests.test_gate import job, lognormal


def test_compare_and_gate_read_the_catalogue():
    assert compare.METRICS is METRICS
    assert gate.DEFAULT_THRESHOLDS == {m.name: m.threshold for m in CATALOGUE}
    assert all(m.label and m.unit and m.description for m in CATALOGUE)


def test_the_summary_table_shows_each_catalogue_metric_by_its_definition():
    records = [r for r in read_records(SMALL_RUN) if r.status == "ok"]
    frame = summary_frame(records)
    shown = [m for m in CATALOGUE if m.summary_column]
    assert {m.summary_column for m in shown} <= set(frame.columns)
    for row, record in zip(frame.to_dict("records"), records):
        for m in shown:
            expected, got = m.value(record), row[m.summary_column]
            assert (expected is None and (got is None or (isinstance(got, float) and math.isnan(got)))) \
                or got == pytest.approx(expected), m.name


def gpu_job(samples):
    samples = [float(x) for x in samples]
    record = job(lognormal(1))
    gpu = Measurement("gpu_latency", float(np.median(samples)), "ms", "cuda-event", samples=tuple(samples),
                      stats=stats.summarize(samples))
    return dataclasses.replace(record, measurements=record.measurements + (gpu,))


def test_gpu_latency_is_compared_and_gated_like_latency():
    base = gpu_job(lognormal(3) * 0.5)
    config = gate.GateConfig()
    result = gate.run_gate([base], [gpu_job(lognormal(4) * 0.5 * 1.3)], config)
    verdict = next(v for v in result.verdicts if v.comparison.metric == "gpu_latency_p50")
    assert verdict.outcome == "regression" and verdict.comparison.worse_by == pytest.approx(0.3, abs=0.03)
    assert result.failed
    same = gate.run_gate([base], [gpu_job(lognormal(5) * 0.5)], config)
    assert {v.comparison.metric: v.outcome for v in same.verdicts}["gpu_latency_p50"] == "noise"
    # Five separate runs a side, drifting alike: tested over the runs' GPU medians (the unit of replication), the
    # drift is not a change; a 15% slowdown of every run still is.
    drift = [1.00, 1.06, 0.95, 1.03, 0.98]
    runs = [gpu_job(lognormal(10 + i) * 0.5 * d) for i, d in enumerate(drift)]
    again = [gpu_job(lognormal(20 + i) * 0.5 * d) for i, d in enumerate(reversed(drift))]
    slower = [gpu_job(lognormal(30 + i) * 0.5 * d * 1.15) for i, d in enumerate(drift)]
    key = ("k",) * 6
    quiet = compare.compare_metric(METRICS["gpu_latency_p50"], key, runs, again)
    assert quiet.test == "mann-whitney-u over round medians" and quiet.p_value > 0.5
    assert compare.compare_metric(METRICS["gpu_latency_p50"], key, runs, slower).p_value < 0.05
    # A CPU job has no GPU figure: nothing to compare.
    assert compare.compare_metric(METRICS["gpu_latency_p50"], ("k",) * 6, [job(lognormal(1))],
                                  [job(lognormal(2))]) is None


def test_the_html_report_lists_the_catalogue(tmp_path):
    records = read_records(SMALL_RUN)
    path = tmp_path / "index.html"
    write_html(records, compression_frame(summary_frame(records)), path, "t")
    html = path.read_text()
    for name in ("latency_p50", "latency_p90", "peak_memory", "size", "psnr", "nonfinite_outputs"):
        assert f'<td class="t">{name}</td>' in html
    assert '<td class="t">gpu_latency_p50</td>' not in html  # a CPU-only run: no GPU figure to compare
    assert "Metrics compared and gated" in html
