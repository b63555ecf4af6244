"""Compare and gate: statistics, thresholds and overrides, exit codes, markdown and JUnit outputs."""
from __future__ import annotations

import dataclasses
import json
import math
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from harness import stats
from harness.cli import main
from harness.analysis.compare import METRICS, compare_metric, compare_runs
from harness.errors import HarnessInputError
from harness.analysis.gate import GateConfig, junit_xml, load_gate_config, markdown_summary, run_gate
from harness.results.store import ResultsStore
from harness.types import Measurement, RunRecord


def job(latency_ms=None, *, model="gen", variant="fp32", target="x86-cpu", status="ok", psnr=None, rss_mb=100.0,
        size=1000, energy=None, energy_method="modelled", error="") -> RunRecord:
    """A run record; ``latency_ms`` is the list of samples."""
    ms = []
    if latency_ms is not None:
        samples = tuple(float(x) for x in latency_ms)
        ms.append(Measurement("latency", float(np.median(samples)), "ms", "perf_counter", samples=samples,
                              stats=stats.summarize(samples)))
    if rss_mb is not None:
        ms.append(Measurement("peak_rss", rss_mb * 2**20, "bytes", "vmhwm"))
    if psnr is not None:
        ms.append(Measurement("psnr", psnr, "dB", "vs-torch-fp32"))
    if energy is not None:
        ms.append(Measurement("energy_per_inference", energy, "J", energy_method))
    return RunRecord(job_key=f"{model}:{variant}:{target}", model=model, variant=variant, format="onnx",
                     runtime="onnxruntime", target=target, batch_size=1, artifact_id="a", artifact_bytes=size,
                     status=status, error=error, measurements=tuple(ms), context={}, started_at="t", duration_s=1.0)


def lognormal(seed: int, n: int = 400, median: float = 1.0, sigma: float = 0.05) -> np.ndarray:
    return median * np.random.default_rng(seed).lognormal(0.0, sigma, n)


# --- statistics ------------------------------------------------------------------------------------------------

def test_mann_whitney_exact_small_sample_hand_computed():
    # Complete separation of 3 vs 3: P(U = 0) = 1 / C(6, 3) = 1/20, two-sided 0.1.
    assert stats.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert stats.mann_whitney_p([5, 5, 5], [5, 5, 5]) == 1.0


def test_bootstrap_ratio_of_scaled_samples():
    base = lognormal(1)
    ratio, lo, hi, p = stats.bootstrap_ratio(base, base * 1.15, seed=0)
    assert ratio == pytest.approx(1.15)
    assert lo <= 1.15 <= hi and hi - lo < 0.05
    assert p == pytest.approx(1 / 2000)  # no resample reached a ratio of 1
    # Two samples of one distribution: the 95% CI of the ratio covers 1 in about 95% of pairs (percentile
    # bootstrap CIs of quantiles undercover a little at n = 200: 89-97 of 100 here).
    for statistic in ("median", "p90"):
        covered = [lo <= 1.0 <= hi for lo, hi in
                   (stats.bootstrap_ratio(lognormal(2 * i, 200), lognormal(2 * i + 1, 200), statistic,
                                          resamples=500)[1:3] for i in range(100))]
        assert sum(covered) >= 85, statistic
    assert stats.bootstrap_ratio(base, base * 1.15, seed=3) == stats.bootstrap_ratio(base, base * 1.15, seed=3)


def test_robust_cv_ignores_an_outlier():
    # median 3, absolute deviations 2 1 0 1 97 → MAD 1.
    assert stats.robust_cv([1, 2, 3, 4, 100]) == pytest.approx(1.4826 / 3)
    assert stats.coefficient_of_variation([1, 2, 3, 4, 100]) > 1.5


# --- comparison ------------------------------------------------------------------------------------------------

def test_directions_of_better():
    key = ("gen", "fp32", "onnx", "onnxruntime", "x86-cpu", 1)
    slower = compare_metric(METRICS["latency_p50"], key, [job(lognormal(1))], [job(lognormal(1) * 1.2)])
    assert slower.worse_by == pytest.approx(0.2) and slower.p_value < 1e-6 and slower.test == "mann-whitney-u"
    worse_psnr = compare_metric(METRICS["psnr"], key, [job(psnr=40.0)], [job(psnr=37.5)])
    assert worse_psnr.worse_by == pytest.approx(2.5) and worse_psnr.p_value is None  # dB, absolute
    better_rss = compare_metric(METRICS["peak_memory"], key, [job(rss_mb=100)], [job(rss_mb=80)])
    assert better_rss.worse_by == pytest.approx(-0.2) and better_rss.base == pytest.approx(100)
    identical = compare_metric(METRICS["psnr"], key, [job(psnr=math.inf)], [job(psnr=math.inf)])
    assert identical.worse_by == 0.0


def test_several_records_per_side_are_pooled():
    a, b = lognormal(1, 200), lognormal(2, 200)
    pooled = compare_metric(METRICS["latency_p50"], ("k",) * 6, [job(a), job(b)], [job(np.concatenate([a, b]))])
    assert pooled.ratio == pytest.approx(1.0) and "400 vs 400" in pooled.note


def test_status_changes_are_reported():
    base = [job(lognormal(1)), job(lognormal(1), variant="int8"), job(lognormal(1), variant="gone"),
            job(None, variant="was-broken", status="failed")]
    cand = [job(lognormal(2)), job(None, variant="int8", status="crashed", error="Segmentation fault"),
            job(lognormal(2), variant="was-broken"), job(lognormal(2), variant="new")]
    comparisons, status = compare_runs(base, cand)
    assert {c.key[1] for c in comparisons} == {"fp32"}
    assert [k[1] for k, _ in status["broken"]] == ["int8"]
    assert [k[1] for k in status["missing"]] == ["gone"]
    assert [k[1] for k in status["new"]] == ["new"]
    assert [k[1] for k in status["fixed"]] == ["was-broken"]


def test_energy_by_different_methods_is_not_compared():
    for metric in ("energy_per_image", "energy_per_inference"):
        c = compare_metric(METRICS[metric], ("k",) * 6, [job(energy=1.0, energy_method="rapl")],
                           [job(energy=2.0, energy_method="modelled")])
        assert c.note.startswith("not comparable"), metric
    verdict = run_gate([job(lognormal(1), energy=1.0, energy_method="rapl")],
                       [job(lognormal(2), energy=2.0)], GateConfig())
    assert not verdict.failed
    assert [v.outcome for v in verdict.verdicts if v.comparison.metric == "energy_per_image"] == ["info"]


# --- the gate's rule: significant AND beyond the threshold -------------------------------------------------------

def outcome(base, cand, metric="latency_p50", config=None) -> str:
    result = run_gate(base, cand, config or GateConfig())
    return next(v.outcome for v in result.verdicts if v.comparison.metric == metric)


def test_significant_but_small_change_passes():
    base = lognormal(1, 4000)
    assert outcome([job(base)], [job(base * 1.05)]) == "noise"  # p ≈ 0, but 5% < 10%


def test_large_but_not_significant_change_passes():
    # Eight wildly spread samples each: a 20% shift in the median is within the noise.
    spread = [1.0, 3.0, 0.3, 2.0, 0.5, 1.5, 0.8, 2.5]
    assert outcome([job(spread)], [job([x * 1.2 for x in spread])]) == "noise"
    # Three each: no shift could be significant (3 vs 3 gives p ≥ 0.1), and the verdict says so.
    assert outcome([job([1.0, 3.0, 0.3])], [job([1.2, 3.6, 0.36])]) == "info"


def test_significant_and_large_change_fails_and_improvements_are_reported():
    base = lognormal(1)
    assert outcome([job(base)], [job(base * 1.15)]) == "regression"
    assert outcome([job(base)], [job(base * 0.8)]) == "improvement"
    assert outcome([job(base, psnr=40.0)], [job(base, psnr=38.0)], "psnr") == "regression"
    assert outcome([job(base, psnr=40.0)], [job(base, psnr=39.5)], "psnr") == "noise"
    assert outcome([job(base, size=1000)], [job(base, size=1100)], "size") == "regression"


def test_thresholds_from_a_file_with_overrides(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text("""
alpha = 0.05
[thresholds]
latency_p50 = 0.20
size = "off"
[[overrides]]
model = "gen"
target = "rpi4"
latency_p50 = 0.05
""")
    config = load_gate_config(path)
    base = lognormal(1)
    assert outcome([job(base)], [job(base * 1.15)], config=config) == "noise"  # 15% < 20%
    on_board = outcome([job(base, target="rpi4")], [job(base * 1.15, target="rpi4")], config=config)
    assert on_board == "regression"  # the override: 5% for gen on rpi4
    assert outcome([job(base, size=1)], [job(base, size=1000)], "size", config) == "info"
    assert config.threshold(("other", "fp32", "onnx", "onnxruntime", "rpi4", 1), "latency_p50") == 0.20


def test_an_ab_session_is_judged_by_the_paired_thresholds(tmp_path):
    """A 5% change measured in 8 interleaved pairs fails by the paired p50 threshold (3% by default); the same 5%
    between separate runs stays within their 10%. A gate file's [paired] table replaces the default; overrides win."""
    drift = [1.00, 1.25, 0.90, 1.20, 1.05, 1.30, 0.92, 1.15]
    base, slowed = ab_side(drift), ab_side([d * 1.05 for d in drift], side="candidate", seed=2)
    verdict = next(v for v in run_gate([base], [slowed], GateConfig()).verdicts if v.comparison.metric == "latency_p50")
    assert verdict.outcome == "regression" and verdict.threshold == 0.03 and "3% for A/B pairs" in verdict.reason
    runs = [with_rounds(job(lognormal(0)), [1.0, 1.01, 0.99, 1.0, 1.02])], \
        [with_rounds(job(lognormal(2)), [1.05, 1.06, 1.04, 1.05, 1.07])]
    separate = next(v for v in run_gate(*runs, GateConfig()).verdicts if v.comparison.metric == "latency_p50")
    assert separate.outcome == "noise" and separate.threshold == 0.10 and "pairs" not in separate.reason
    path = tmp_path / "gate.toml"
    path.write_text('[paired]\nlatency_p50 = 0.08\n[[overrides]]\nmodel = "gen"\nlatency_p50 = 0.02\n')
    config = load_gate_config(path)
    assert config.threshold(("other",) * 6, "latency_p50", paired=True) == 0.08
    assert config.threshold(("other",) * 6, "latency_p50") == 0.10
    assert config.threshold(("gen",) + ("x",) * 5, "latency_p50", paired=True) == 0.02
    path.write_text('[thresholds]\nlatency_p50 = "off"\n')  # an explicit choice is not tightened for pairs
    assert load_gate_config(path).threshold(("other",) * 6, "latency_p50", paired=True) is None


@pytest.mark.parametrize("text, message", [
    ("[thresholds]\nlatency = 0.1", "unknown metric 'latency'"),
    ("[paired]\nlatency_p50 = -1", r"\[paired\] latency_p50 must be a number >= 0"),
    ("[thresholds]\nlatency_p50 = -0.1", "must be a number >= 0"),
    ("[thresholds]\nlatency_p50 = true", "must be a number >= 0"),
    ("alpha = 2.0", "alpha must be within"),
    ("threshold = 1", "unknown key 'threshold'"),
    ("[[overrides]]\nlatency_p50 = 0.3", "matches every job"),
    ("[thresholds", "not valid TOML"),
])
def test_bad_gate_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(HarnessInputError, match=message) as err:
        load_gate_config(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_broken_and_missing_jobs_fail_unless_switched_off():
    base = [job(lognormal(1)), job(lognormal(1), variant="int8")]
    cand = [job(lognormal(2)), job(None, variant="int8", status="crashed", error="killed")]
    assert run_gate(base, cand, GateConfig()).failed
    assert not run_gate(base, cand, GateConfig(fail_on_missing=False)).failed
    assert run_gate(base, [job(lognormal(2))], GateConfig()).failed  # int8 missing
    with pytest.raises(HarnessInputError, match="nothing to compare"):
        run_gate([job(lognormal(1))], [job(lognormal(1), model="other")], GateConfig())


# --- outputs ------------------------------------------------------------------------------------------------------

def test_markdown_and_junit_outputs_escape_and_count():
    base = lognormal(1)
    evil = "a|b<script>`x`"
    result = run_gate([job(base, variant=evil), job(base, variant="int8")],
                      [job(base * 1.2, variant=evil), job(None, variant="int8", status="failed",
                                                          error="bad \x1b[31m thing\x00")], GateConfig())
    md = markdown_summary(result)
    assert md.startswith("## Edge Harness regression gate: ❌ **FAIL**")
    assert "1 regressions" in md and "1 jobs broken" in md
    assert "<script>" not in md and "a\\|b&lt;script&gt;'x'" in md
    regression_row = next(line for line in md.splitlines() if "regression:" in line)
    assert "latency p50" in regression_row and "20.0% worse, beyond 10%" in regression_row
    suite = ET.fromstring(junit_xml(result).encode())
    assert suite.get("failures") == "2"
    assert int(suite.get("tests")) == len(suite.findall("testcase")) == len(result.verdicts) + 1
    failures = suite.findall("testcase/failure")
    assert {f.get("type") for f in failures} == {"regression", "broken"}
    assert "\x00" not in junit_xml(result) and "\x1b" not in junit_xml(result)


# --- the CLI: exit codes and files --------------------------------------------------------------------------------

def write(tmp_path, name, records) -> str:
    store = ResultsStore(tmp_path / name / "results.jsonl")
    for r in records:
        store.append(r)
    return str(store.path.parent)


def test_gate_cli_exit_codes_and_files(tmp_path, capsys):
    base = write(tmp_path, "base", [job(lognormal(1))])
    same = write(tmp_path, "same", [job(lognormal(2))])
    slow = write(tmp_path, "slow", [job(lognormal(3) * 1.15)])
    md, xml = tmp_path / "summary.md", tmp_path / "gate.xml"
    assert main(["gate", "--baseline", base, "--candidate", same, "--markdown", str(md), "--junit", str(xml)]) == 0
    assert "PASS" in md.read_text() and ET.parse(xml).getroot().get("failures") == "0"
    assert main(["gate", "--baseline", base, "--candidate", slow, "--markdown", str(md)]) == 1
    assert md.read_text().count("## Edge Harness regression gate") == 2  # appended, as $GITHUB_STEP_SUMMARY wants
    assert main(["gate", "--baseline", base, "--candidate", str(tmp_path / "nope")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds]\nlatency_p51 = 1")
    assert main(["gate", "--baseline", base, "--candidate", same, "--config", str(bad)]) == 2
    other = write(tmp_path, "other", [job(lognormal(2), model="other")])
    assert main(["gate", "--baseline", base, "--candidate", other]) == 2
    err = capsys.readouterr().err
    assert "results file not found" in err and "unknown metric 'latency_p51'" in err and "nothing to compare" in err


def test_compare_cli_prints_ratio_ci_and_p_and_writes_csv(tmp_path, capsys):
    base = write(tmp_path, "base", [job(lognormal(1), psnr=40.0)])
    slow = write(tmp_path, "slow", [job(lognormal(3) * 1.15, psnr=40.0)])
    assert main(["compare", base, slow, "--metric", "latency_p50", "--metric", "psnr",
                 "--csv", str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "latency p50" in x)
    assert "×1.1" in line and "p=" in line and "worse, lower is better" in line
    import pandas as pd

    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table["metric"]) == {"latency_p50", "psnr"}
    assert table.set_index("metric").loc["latency_p50", "ci_low"] > 1.1


def test_pytest_benchmark_export_is_read_by_pytest_benchmark(tmp_path):
    import subprocess
    import sys

    run = write(tmp_path, "run", [job([1.0, 2.0, 3.0, 4.0]), job(None, variant="broken", status="failed")])
    out = tmp_path / "bench" / "0001_run.json"
    assert main(["report", run, "--pytest-benchmark", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert len(doc["benchmarks"]) == 1  # the failed job has no timing
    bench = doc["benchmarks"][0]
    assert bench["stats"]["median"] == pytest.approx(0.0025) and bench["stats"]["rounds"] == 4  # seconds
    assert bench["stats"]["data"] == pytest.approx([0.001, 0.002, 0.003, 0.004])
    shown = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(out), "--columns", "median"],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "edge_harness[gen-fp32-onnx-onnxruntime-x86-cpu-1]" in shown.stdout


def test_emulated_timings_are_never_gated():
    base = job(lognormal(1), target="rpi4-emulated")
    lat = base.measurement("latency")
    emulated = lambda r: dataclasses.replace(r, measurements=tuple(  # noqa: E731
        dataclasses.replace(m, method="perf_counter+emulated") if m.metric == "latency" else m
        for m in r.measurements))
    slow = job(lognormal(2) * 2.0, target="rpi4-emulated")
    result = run_gate([emulated(base)], [emulated(slow)], GateConfig())
    assert not result.failed and lat is not None
    verdicts = {v.comparison.metric: v for v in result.verdicts}
    assert verdicts["latency_p50"].outcome == "info" and "emulated" in verdicts["latency_p50"].reason
    # a cold start measured under emulation is no timing claim either, even where a gate file sets a threshold

    def started(r: RunRecord, ms: float, method: str = "process creation → first result+emulated") -> RunRecord:
        samples = tuple(ms * f for f in (1.0, 1.01, 0.99, 1.02, 0.98))
        return dataclasses.replace(r, measurements=r.measurements + (Measurement(
            "cold_start", ms, "ms", method, samples=samples, stats=stats.summarize(samples)),))

    config = GateConfig(thresholds=dict(GateConfig().thresholds) | {"cold_start": 0.1})
    verdicts = {v.comparison.metric: v for v in run_gate([started(emulated(base), 300.0)],
                                                         [started(emulated(slow), 900.0)], config).verdicts}
    assert verdicts["cold_start"].outcome == "info" and "emulated" in verdicts["cold_start"].reason
    real = "process creation → first result"
    measured = {v.comparison.metric: v for v in run_gate([started(job(lognormal(1)), 300.0, real)],
                                                         [started(job(lognormal(2)), 900.0, real)], config).verdicts}
    assert measured["cold_start"].outcome == "regression"  # the same figures, measured: gated (5 processes a side)


def test_markdown_collapses_the_quiet_rows():
    base = lognormal(1)
    md = markdown_summary(run_gate([job(base)], [job(lognormal(2))], GateConfig()))
    assert "✅ **PASS**" in md and "<details><summary>" in md and md.rstrip().endswith("</details>")


def with_rounds(record: RunRecord, medians) -> RunRecord:
    extra = Measurement("latency_round_medians", float(np.median(medians)), "ms", "perf_counter",
                        samples=tuple(float(m) for m in medians))
    return dataclasses.replace(record, measurements=record.measurements + (extra,))


def test_p50_is_tested_over_round_medians_when_both_sides_have_five():
    key = ("k",) * 6
    base = with_rounds(job(lognormal(1)), [1.00, 1.02, 0.98, 1.01, 0.99])
    slow = with_rounds(job(lognormal(2) * 1.15), [1.15, 1.17, 1.13, 1.16, 1.14])
    c = compare_metric(METRICS["latency_p50"], key, [base], [slow])
    assert c.test == "mann-whitney-u over round medians" and "5 vs 5 rounds" in c.note
    assert c.p_value == pytest.approx(2 / 252)  # complete separation of 5 vs 5, exact two-sided
    same = with_rounds(job(lognormal(3)), [1.01, 0.97, 1.03, 1.00, 0.985])
    assert compare_metric(METRICS["latency_p50"], key, [base], [same]).p_value > 0.5
    # Fewer rounds (here: one record without rounds): back to the pooled samples.
    assert compare_metric(METRICS["latency_p50"], key, [job(lognormal(1))], [slow]).test == "mann-whitney-u"
    # Five separate runs on each side count as five rounds.
    runs = compare_metric(METRICS["latency_p50"], key, [job(lognormal(i)) for i in range(5)],
                          [job(lognormal(10 + i) * 1.15) for i in range(5)])
    assert runs.test == "mann-whitney-u over round medians"


def test_pool_rounds_merges_samples_and_keeps_round_medians():
    from harness.rounds import pool_rounds

    def round_of(samples, load):
        return [Measurement("load_time", load, "ms", "perf_counter"),
                Measurement("latency", float(np.median(samples)), "ms", "perf_counter", samples=tuple(samples),
                            stats={**stats.summarize(samples), "warmup_runs": 7.0}),
                Measurement("throughput", 1.0, "items/s", "batch/median")]

    merged = pool_rounds(round_of([1.0, 2.0, 3.0], 50.0), round_of([4.0, 5.0, 6.0], 60.0), batch_size=2)
    merged = pool_rounds(merged, round_of([7.0, 8.0, 9.0], 70.0), batch_size=2)
    by = {m.metric: m for m in merged}
    assert by["latency"].samples == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    assert by["latency"].value == 5.0 and by["latency"].stats["rounds"] == 3.0
    assert by["latency"].stats["warmup_runs"] == 7.0 and by["load_time"].value == 50.0  # first round's cold start
    assert by["latency_round_medians"].samples == (2.0, 5.0, 8.0)
    assert by["latency_round_p90s"].samples == pytest.approx((2.8, 5.8, 8.8))  # each round's own p90
    assert by["throughput"].value == pytest.approx(2 / 5e-3)  # batch / pooled median (s)
    assert len(merged) == 5


def test_pool_rounds_pools_the_device_timers_readings_too():
    from harness.rounds import device_latency, pool_rounds

    def round_of(host, gpu):
        return [Measurement("latency", float(np.median(host)), "ms", "perf_counter", samples=tuple(host),
                            stats=stats.summarize(host)),
                device_latency(gpu, "cuda-event")]

    merged = pool_rounds(round_of([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]), round_of([3.0, 3.0, 3.0], [1.5, 1.5, 1.5]), 1)
    (gpu,) = [m for m in merged if m.metric == "gpu_latency"]
    assert gpu.samples == (1.0, 1.0, 1.0, 1.5, 1.5, 1.5) and gpu.method == "cuda-event"
    assert gpu.stats["n"] == 6.0 and gpu.value == 1.25
    merged = pool_rounds(merged, round_of([3.0, 3.0, 3.0], [2.0, 2.0, 2.0]), 1)
    (rounds,) = [m for m in merged if m.metric == "gpu_latency_round_medians"]
    assert rounds.samples == (1.0, 1.5, 2.0) and rounds.value == 1.5  # each round's GPU median, for the gate


def test_measured_energy_is_gated_and_modelled_energy_is_only_reported():
    base = lognormal(1)
    # records from before J per image was measured: their J per inference over the batch (1 here)
    rapl = outcome([job(base, energy=1.0, energy_method="rapl")], [job(base, energy=1.3, energy_method="rapl")],
                   "energy_per_image")
    assert rapl == "regression"  # 30% more joules from a real sensor
    result = run_gate([job(base, energy=1.0)], [job(base, energy=1.3)], GateConfig())
    (energy,) = [v for v in result.verdicts if v.comparison.metric == "energy_per_image"]
    assert energy.outcome == "info" and "never gated" in energy.reason and not result.failed
    # one change, one verdict: J per inference is reported beside it, not gated a second time by default
    (per_inference,) = [v for v in result.verdicts if v.comparison.metric == "energy_per_inference"]
    assert per_inference.outcome == "info"


def test_paired_ratio_hand_computed():
    base = [1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.95, 1.05]
    slowed = [b * r for b, r in zip(base, [1.14, 1.16, 1.15, 1.13, 1.17, 1.15, 1.16, 1.14])]
    ratio, lo, hi, p = stats.paired_ratio(base, slowed, seed=0)
    assert ratio == pytest.approx(1.15)  # the median of the pairs' ratios, whatever the drift between pairs
    assert 1.13 <= lo <= 1.15 <= hi <= 1.17
    assert p == pytest.approx(2 / 2**8)  # all 8 signs one way: exact two-sided Wilcoxon p
    assert stats.paired_ratio(base, base)[::3] == (1.0, 1.0)
    with pytest.raises(ValueError):
        stats.paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        stats.paired_ratio([1.0, 0.0], [1.0, 1.0])


def ab_side(medians, session="s1", side="baseline", seed=0) -> RunRecord:
    record = with_rounds(job(lognormal(seed) * float(np.median(medians))), medians)
    return dataclasses.replace(record, context={"ab": {"session": session, "side": side, "pairs": len(medians)}})


def test_p50_of_an_ab_session_is_tested_over_its_pairs():
    key = ("k",) * 6
    drift = [1.00, 1.25, 0.90, 1.20, 1.05, 1.30, 0.92, 1.15]  # the machine's speed moving between pairs
    base = ab_side(drift)
    aa = ab_side([d * r for d, r in zip(drift, [1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99])], side="candidate",
                 seed=1)
    slowed = ab_side([d * 1.15 for d in drift], side="candidate", seed=2)
    c = compare_metric(METRICS["latency_p50"], key, [base], [slowed])
    assert c.test == "wilcoxon signed-rank over paired rounds" and "8 interleaved pairs" in c.note
    assert c.ratio == pytest.approx(1.15) and c.p_value == pytest.approx(2 / 2**8)
    assert outcome([base], [slowed]) == "regression"
    assert outcome([base], [aa]) == "noise"
    # Unpaired, the same slowed rounds overlap the drifting base rounds: Mann-Whitney cannot tell.
    unpaired = compare_metric(METRICS["latency_p50"], key, [with_rounds(job(lognormal(0)), drift)],
                              [with_rounds(job(lognormal(2)), [d * 1.15 for d in drift])])
    assert unpaired.test == "mann-whitney-u over round medians" and unpaired.p_value > 0.05
    # Rounds of different sessions are not pairs.
    other = ab_side([d * 1.15 for d in drift], session="s2", side="candidate")
    assert compare_metric(METRICS["latency_p50"], key, [base], [other]).test == "mann-whitney-u over round medians"
    # p90 of a session: the rounds' own p90s, paired the same way (a slow tail in one round is one pair).
    tail_base = dataclasses.replace(base, measurements=base.measurements + (
        Measurement("latency_round_p90s", 1.0, "ms", "perf_counter", samples=tuple(d * 1.2 for d in drift)),))
    tail_cand = dataclasses.replace(aa, measurements=aa.measurements + (
        Measurement("latency_round_p90s", 1.0, "ms", "perf_counter",
                    samples=tuple(d * 1.2 * (1.6 if i == 3 else 1.0) for i, d in enumerate(drift))),))
    p90 = compare_metric(METRICS["latency_p90"], key, [tail_base], [tail_cand])
    assert p90.test == "wilcoxon signed-rank over paired rounds" and p90.ratio == pytest.approx(1.0)
    assert outcome([tail_base], [tail_cand], "latency_p90") == "noise"
    # Five pairs cannot reach p < 0.05: still tested as pairs (the pooled samples would call drift significant),
    # so even a clear 15% cannot fail the gate, and the note says why.
    few_base = ab_side(drift[:5])
    few_slow = ab_side([d * 1.15 for d in drift[:5]], side="candidate", seed=2)
    few = compare_metric(METRICS["latency_p50"], key, [few_base], [few_slow])
    assert few.test == "wilcoxon signed-rank over paired rounds" and "never significant" in few.note
    assert few.p_value == pytest.approx(2 / 2**5) and outcome([few_base], [few_slow]) == "info"


def test_p90_is_tested_over_round_p90s_when_both_sides_have_five():
    """Five separate runs a side whose processes drift by a few percent, the same drift on both sides: the pooled
    samples called the p90's small shift significant; the rounds' p90s (the unit of replication) do not."""
    key = ("k",) * 6
    base_scales, cand_scales = [1.00, 1.06, 0.95, 1.03, 0.98], [1.04, 0.97, 1.01, 1.07, 0.99]
    base = [job(lognormal(i, n=2000) * s) for i, s in enumerate(base_scales)]
    cand = [job(lognormal(20 + i, n=2000) * s) for i, s in enumerate(cand_scales)]
    pooled = compare_metric(METRICS["latency_p90"], key, base[:1], cand[:1])
    assert pooled.test == "bootstrap"
    # What the comparison did before: the bootstrap over the five runs' pooled samples calls this drift significant.
    pooled_p = stats.bootstrap_ratio([x for r in base for x in r.measurement("latency").samples],
                                     [x for r in cand for x in r.measurement("latency").samples], "p90")[3]
    assert pooled_p < 0.01
    c = compare_metric(METRICS["latency_p90"], key, base, cand)
    assert c.test == "mann-whitney-u over round p90s" and "5 vs 5 rounds" in c.note
    assert c.p_value > 0.3
    assert c.ci_low < 1 < c.ci_high  # the CI shown is the rounds' too
    round_p90s = [float(np.percentile(r.measurement("latency").samples, 90)) for r in base]
    assert c.base == pytest.approx(float(np.median(round_p90s)), rel=1e-3)
    # A real 15% slowdown of every round is still caught.
    slow = [job(lognormal(40 + i, n=2000) * s * 1.15) for i, s in enumerate(base_scales)]
    caught = compare_metric(METRICS["latency_p90"], key, base, slow)
    assert caught.p_value < 0.05 and caught.worse_by == pytest.approx(0.15, abs=0.05)


def test_a_job_whose_outputs_were_identical_and_now_degrade_fails_on_psnr():
    """Identical outputs leave PSNR out of the record (it is +inf); the comparison reads it as the 100 dB cap, so a
    drop from identical to 20 dB is a regression, and identical against identical or against round-off (150 dB) is
    no change."""
    def identical(r):
        return dataclasses.replace(r, measurements=r.measurements + (
            Measurement("max_abs_error", 0.0, "abs", "vs-torch-fp32"),))

    result = run_gate([identical(job(lognormal(1)))], [job(lognormal(1), psnr=20.0)], GateConfig())
    verdicts = {v.comparison.metric: v for v in result.verdicts}
    assert verdicts["psnr"].outcome == "regression" and result.failed
    assert verdicts["psnr"].comparison.base == 100.0  # identical reads as the cap (round-off is not a win)
    same = run_gate([identical(job(lognormal(1)))], [identical(job(lognormal(1)))], GateConfig())
    assert {v.comparison.metric: v.outcome for v in same.verdicts}["psnr"] == "noise" and not same.failed
    roundoff = run_gate([identical(job(lognormal(1)))], [job(lognormal(1), psnr=150.0)], GateConfig())
    assert {v.comparison.metric: v.outcome for v in roundoff.verdicts}["psnr"] == "noise"


def test_an_alpha_no_test_can_reach_is_said_not_silently_ungated():
    """8 pairs give p ≥ 2/256 = 0.0078: at α = 0.005 a 15% slowdown could never fail the gate. The verdict says so
    (info, 'not gated'), and the markdown summary warns; at the default α the same pairs are a regression."""
    drift = [1.00, 1.25, 0.90, 1.20, 1.05, 1.30, 0.92, 1.15]
    base, slowed = ab_side(drift), ab_side([d * 1.15 for d in drift], side="candidate", seed=2)
    strict = GateConfig(alpha=0.005)
    result = run_gate([base], [slowed], strict)
    p50 = next(v for v in result.verdicts if v.comparison.metric == "latency_p50")
    assert p50.outcome == "info" and "α=0.005" in p50.reason and "0.0078" in p50.reason
    assert p50.comparison.min_p == pytest.approx(2 / 2**8)
    summary = markdown_summary(result)
    assert result.untestable and "not judged (1 untestable)" in summary and "α=0.005" in summary
    assert outcome([base], [slowed]) == "regression"  # α = 0.05 is reachable
    assert not run_gate([base], [slowed], GateConfig()).untestable
