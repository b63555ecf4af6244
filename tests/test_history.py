"""Change points and `harness history`: the step finder on synthetic series with known steps and on noise with
none; the command on run folders made from a real record with known latency steps; the page in real Chromium."""
from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.changepoints import find_steps
from harness.results.store import ResultsStore, read_records
from harness.stats import summarize
from harness.types import Measurement
from tests.test_cli import harness
from tests.test_report_views import console_messages, needs_chromium

FIXTURE = Path(__file__).parent / "fixtures" / "results" / "small-run.jsonl"


def noisy(n: int, sd: float, seed: int) -> np.ndarray:
    return np.exp(sd * np.random.default_rng(seed).standard_normal(n))


# -- the step finder -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_noise_within_a_third_of_the_threshold_has_no_step(seed):
    assert find_steps(noisy(12, 0.03, seed), 0.10).steps == ()


def test_noise_alone_rarely_steps_even_at_half_the_threshold():
    """5% noise against a 10% threshold (the gate would see such runs differ too): fewer than 5% of 400 series."""
    false = sum(bool(find_steps(noisy(12, 0.05, seed), 0.10).steps) for seed in range(400))
    assert false < 20


@pytest.mark.parametrize("seed", range(20))
def test_a_step_at_run_7_is_named_there_and_nowhere_else(seed):
    values = noisy(12, 0.03, seed)
    values[6:] *= 1.25
    (step,) = find_steps(values, 0.10).steps
    assert step.index == 6 and step.runs_after == 6 and 0.15 < step.change < 0.35


def test_steps_up_and_down_absolute_metrics_outliers_and_the_newest_run():
    values = np.r_[np.full(4, 10.0), np.full(4, 13.0), np.full(4, 9.0)] * noisy(12, 0.01, 1)
    assert [(s.index, s.change > 0) for s in find_steps(values, 0.10).steps] == [(4, True), (8, False)]
    psnr = np.r_[np.full(6, 42.0), np.full(6, 38.5)] + 0.1 * np.random.default_rng(2).standard_normal(12)
    (drop,) = find_steps(psnr, 1.0, relative=False).steps
    assert drop.index == 6 and -4 < drop.change < -3
    spike = noisy(12, 0.02, 3)
    spike[5] *= 1.6
    fit = find_steps(spike, 0.10)
    assert fit.steps == () and fit.outliers == (5,)  # up and back: an outlier, not two steps
    newest = noisy(12, 0.02, 4)
    newest[-1] *= 1.3
    (step,) = find_steps(newest, 0.10).steps
    assert step.index == 11 and step.runs_after == 1


def test_a_fitted_change_below_the_threshold_is_not_a_step():
    size = np.r_[np.full(6, 1000.0), np.full(6, 1005.0)]  # +0.5%: exact, fitted, but under the 1% threshold
    assert find_steps(size, 0.01).steps == ()
    (step,) = find_steps(np.r_[np.full(6, 1000.0), np.full(6, 1020.0)], 0.01).steps
    assert step.index == 6


def test_an_excursion_before_a_real_step_is_an_outlier_and_the_step_is_measured_from_before_it():
    """20 runs, 2% noise, one run 30% up and then every run 12% up: one step of about +12% from the level before
    the excursion, the excursion an outlier; never a +30% step followed by an 'improvement'."""
    values = noisy(20, 0.02, 0)
    values[18] *= 1.30
    values[19:] *= 1.12
    fit = find_steps(values, 0.10)
    assert [(s.index, s.runs_after) for s in fit.steps] == [(19, 1)] and fit.outliers == (18,), fit
    assert 0.10 < fit.steps[0].change < 0.16 and fit.steps[0].before == pytest.approx(np.median(values[:18]))
    values = noisy(20, 0.02, 1)
    values[17] *= 1.30
    values[18:] *= 1.12
    fit = find_steps(values, 0.10)
    assert [(s.index, s.runs_after) for s in fit.steps] == [(18, 2)] and fit.outliers == (17,), fit
    ramp = np.r_[np.full(8, 1.0), [1.2], np.full(8, 1.44)] * noisy(17, 0.01, 2)  # a level between: two steps
    assert [s.index for s in find_steps(ramp, 0.10).steps] == [8, 9]


@pytest.mark.parametrize("seed", range(20))
def test_an_excursion_never_turns_the_step_after_it_into_an_improvement(seed):
    for excursion in (17, 18):
        values = noisy(20, 0.02, seed)
        values[excursion] *= 1.30
        values[excursion + 1:] *= 1.12
        steps = find_steps(values, 0.10).steps
        assert all(s.change > 0 for s in steps), (excursion, steps)


def test_a_new_nan_share_steps_though_it_is_under_the_old_absolute_noise_floor():
    """nonfinite_outputs is gated at 0 (any new share fails): a share of 0.002 in the newest run is a step."""
    share = np.zeros(20)
    share[-1] = 0.002
    (step,) = find_steps(share, 0.0, relative=False).steps
    assert step.index == 19 and step.change == pytest.approx(0.002)
    assert find_steps(np.zeros(20), 0.0, relative=False).steps == ()
    psnr = np.full(12, 40.0)
    psnr[6:] -= 1e-9  # round-off of a deterministic figure is no step, whatever the threshold
    assert find_steps(psnr, 1.0, relative=False).steps == ()


def test_values_a_relative_metric_cannot_have_are_refused():
    with pytest.raises(ValueError):
        find_steps([1.0, 0.0, 1.0], 0.1)
    with pytest.raises(ValueError):
        find_steps([1.0, float("nan"), 1.0], 0.1)
    assert find_steps([], 0.1).steps == () and find_steps([2.0], 0.1).steps == ()


# -- harness history -------------------------------------------------------------------------------------------------
def make_history(folder: Path, factors: list[float], seed: int = 0, machines: list[str] | None = None,
                 nonfinite: list[float] | None = None) -> None:
    """Run folders from the fixture's real records, each run's latency samples scaled by its factor (plus 2%
    noise) and its stats recomputed, one hour apart, each with its own commit (and, where given, its CPU model and
    its share of NaN/inf outputs)."""
    base = read_records(FIXTURE)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    rng = np.random.default_rng(seed)
    for i, factor in enumerate(factors):
        scale = factor * float(np.exp(0.02 * rng.standard_normal()))
        store = ResultsStore(folder / f"run-{i:02d}" / "results.jsonl")
        for r in base:
            measurements = []
            for m in r.measurements:
                if m.metric == "latency" and m.samples:
                    samples = tuple(v * scale for v in m.samples)
                    m = dataclasses.replace(m, value=float(np.median(samples)), samples=samples,
                                            stats=summarize(samples))
                if m.metric == "nonfinite_outputs" and nonfinite is not None:
                    m = dataclasses.replace(m, value=nonfinite[i])
                measurements.append(m)
            store.append(dataclasses.replace(
                r, measurements=tuple(measurements), started_at=(start + timedelta(hours=i)).isoformat(),
                context=dict(r.context) | {"commit": f"{i:02d}" + "ab" * 19}
                | ({"cpu_model": machines[i]} if machines else {})))


def test_history_names_run_7_and_no_other_and_fails_only_when_asked(tmp_path):
    runs = tmp_path / "runs"
    make_history(runs, [1.0] * 6 + [1.3] * 6)
    proc = harness("history", str(runs), "--out", str(tmp_path / "h"), "--metric", "latency_p50")
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stderr.splitlines() if line.startswith("step:")]
    latency_jobs = {r.job_key for r in read_records(FIXTURE) if r.status == "ok" and r.measurement("latency")}
    assert len(steps) == len(latency_jobs) and all("at run 7 " in line and "(worse)" in line for line in steps)
    summary = (tmp_path / "h" / "summary.md").read_text()
    assert "05abababab..06abababab" in summary  # the commit range of the step
    assert re.search(r"\| \+(2\d|3\d)\.\d% \| worse \|", summary)  # +30% injected, 2% noise per run
    assert proc.stdout.strip() == str(tmp_path / "h" / "summary.md")

    flat = tmp_path / "flat"
    make_history(flat, [1.0] * 12)
    proc = harness("history", str(flat), "--out", str(tmp_path / "f"), "--fail-on-new-step")
    assert proc.returncode == 0 and "0 steps" in proc.stderr, proc.stderr
    assert "No step beyond the gate's thresholds" in (tmp_path / "f" / "summary.md").read_text()

    newest = tmp_path / "newest"
    make_history(newest, [1.0] * 11 + [1.4])
    md = tmp_path / "step-summary.md"
    proc = harness("history", str(newest), "--out", str(tmp_path / "n"), "--fail-on-new-step",
                   "--markdown", str(md))
    assert proc.returncode == 1, proc.stderr
    assert "start at the newest run" in md.read_text() and "newest run only so far" in md.read_text()
    proc = harness("history", str(newest), "--out", str(tmp_path / "n"))
    assert proc.returncode == 0  # opt-in


def test_a_regression_right_after_a_one_run_excursion_fails_the_new_step_check(tmp_path):
    """The newest run 12% slower, the run before it 30% slower (one run off): `--fail-on-new-step` stops on a
    worsening step at the newest run, measured from before the excursion, which is marked an outlier."""
    runs = tmp_path / "runs"
    make_history(runs, [1.0] * 18 + [1.3, 1.12])
    proc = harness("history", str(runs), "--out", str(tmp_path / "h"), "--metric", "latency_p50",
                   "--fail-on-new-step")
    steps = [line for line in proc.stderr.splitlines() if line.startswith("step:")]
    assert proc.returncode == 1 and steps, proc.stderr
    assert all("at run 20 " in line and "(worse)" in line for line in steps), steps
    page = (tmp_path / "h" / "index.html").read_text()
    assert "outlier" in page


def runs_of(folder: Path) -> list:
    from harness.results.runs import find_runs

    return find_runs([folder])


def test_a_new_nan_share_is_a_new_worsening_step_as_the_gate_fails_it(tmp_path):
    from harness.analysis.gate import GateConfig, run_gate
    from harness.analysis.history import new_worsening_steps, series_of, steps_of

    make_history(tmp_path / "runs", [1.0] * 20, nonfinite=[0.0] * 19 + [0.002])
    runs = runs_of(tmp_path / "runs")
    assert run_gate(list(runs[-2].records), list(runs[-1].records), GateConfig()).failed  # the gate fails it
    series = series_of([run.records for run in runs], metrics=["nonfinite_outputs"])
    new = new_worsening_steps(steps_of(series), len(runs) - 1)
    assert len(new) == len({r.job_key for r in runs[-1].records if r.status == "ok"}), new
    assert all(r.series.metric.name == "nonfinite_outputs" and r.change == pytest.approx(0.002) for r in new)


def test_runs_on_another_cpu_model_are_a_series_of_their_own_and_said_so(tmp_path):
    """Six runs on one CPU, six 30% slower on another: no step (the machines are not compared), one series per CPU
    model labelled with it, and the summary names the runs on each."""
    from harness.analysis.history import series_of, steps_of
    from harness.report.history import markdown_summary

    make_history(tmp_path / "runs", [1.0] * 6 + [1.3] * 6, machines=["AMD EPYC"] * 6 + ["Intel Xeon"] * 6)
    runs = runs_of(tmp_path / "runs")
    series = series_of([run.records for run in runs], metrics=["latency_p50"])
    assert steps_of(series) == []
    jobs = {r.job_key for r in runs[0].records if r.status == "ok" and r.measurement("latency")}
    assert sorted(s.machine for s in series) == ["AMD EPYC"] * len(jobs) + ["Intel Xeon"] * len(jobs)
    assert all(s.label.endswith(f"on {s.machine}") and len(s.points) == 6 for s in series)
    summary = markdown_summary(runs, series, [], [])
    assert "one series per CPU model" in summary
    assert "AMD EPYC (runs 1, 2, 3, 4, 5, 6); Intel Xeon (runs 7, 8" in summary
    make_history(tmp_path / "one-cpu", [1.0] * 3)
    single = series_of([run.records for run in runs_of(tmp_path / "one-cpu")], metrics=["latency_p50"])
    assert single and all(s.machine == "" and " on " not in s.label for s in single)  # one CPU model: as before


def rounds_record(template, round_scales: list[float], rng: np.random.Generator):
    """The fixture's first latency record measured in rounds: 80 samples per round at that round's scale (1% noise),
    with the rounds' medians and p90s as the worker records them."""
    rounds = [scale * np.exp(0.01 * rng.standard_normal(80)) for scale in round_scales]
    samples = tuple(float(v) for r in rounds for v in r)
    keep = [m for m in template.measurements if m.metric not in ("latency", "latency_round_medians",
                                                                  "latency_round_p90s")]
    return dataclasses.replace(template, measurements=tuple(keep) + (
        Measurement("latency", float(np.median(samples)), "ms", "perf_counter", samples=samples,
                    stats=summarize(samples)),
        Measurement("latency_round_medians", 1.0, "ms", "perf_counter",
                    samples=tuple(float(np.median(r)) for r in rounds)),
        Measurement("latency_round_p90s", 1.0, "ms", "perf_counter",
                    samples=tuple(float(np.percentile(r, 90)) for r in rounds))))


def test_a_newest_run_step_must_be_significant_by_the_gates_test():
    """Two fast rounds and three slow ones: the pooled p50 is 30% up, but the rounds (the gate's unit) straddle the
    old level, so it is not a step yet; all five rounds up is one. One noisy round moves no p90 level."""
    from harness.analysis.history import series_of

    template = next(r for r in read_records(FIXTURE) if r.status == "ok" and r.measurement("latency"))
    rng = np.random.default_rng(0)
    old = [[rounds_record(template, list(1 + 0.03 * rng.uniform(-1, 1, 5)), rng)] for _ in range(11)]
    split = series_of(old + [[rounds_record(template, [0.8, 0.9, 1.3, 1.3, 1.3], rng)]], metrics=["latency_p50"])
    (series,) = split
    assert series.points[-1].value > 1.25 and series.fit.steps == ()
    step, why = series.unconfirmed
    assert step.index == 11 and "not significant" in why and "mann-whitney-u over round medians" in why
    (clear,) = series_of(old + [[rounds_record(template, [1.3] * 5, rng)]], metrics=["latency_p50"])
    assert [s.index for s in clear.fit.steps] == [11] and clear.unconfirmed is None
    (tail,) = series_of(old + [[rounds_record(template, [1.0, 1.0, 1.0, 1.0, 1.6], rng)]], metrics=["latency_p90"])
    assert tail.fit.steps == () and tail.unconfirmed is None and tail.points[-1].value < 1.1


def test_history_input_errors_are_one_line(tmp_path):
    proc = harness("history", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "no such folder" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    proc = harness("history", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "no run results in it" in proc.stderr
    make_history(tmp_path / "one", [1.0])
    proc = harness("history", str(tmp_path / "one"))
    assert proc.returncode == 2 and "at least 2 runs" in proc.stderr
    bad = tmp_path / "bad" / "run"
    bad.mkdir(parents=True)
    (bad / "results.jsonl").write_text('{"not": "a record"}\n')
    proc = harness("history", str(tmp_path / "bad"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@needs_chromium
def test_the_history_page_loads_offline_in_chromium(tmp_path):
    runs = tmp_path / "runs"
    make_history(runs, [1.0] * 6 + [1.3] * 6)
    assert harness("history", str(runs), "--out", str(tmp_path / "h")).returncode == 0
    page = tmp_path / "h" / "index.html"
    html = page.read_text()
    assert 'class="step"' in html and "<polyline" in html and "https://" not in html
    assert console_messages(page) == []
    assert json.dumps("05abababab..06abababab")[1:-1] in html
