"""Will it fit: jobs against a target's ``[fit]`` memory and storage — the verdict's arithmetic, the profile's table
and its one-line errors, estimates for jobs that could not run, and the best-variant table that honours it. (The
measured verdict over SSH and on the lab: tests/test_ssh.py and tests/test_cluster.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.fit import FitVerdict, fit_of, judge_fit
from harness.config.targets import load_target
from harness.errors import HarnessInputError
from harness.report.plots import best_variant_gaps, best_variants
from harness.report.tables import summary_frame
from harness.types import FitBudget, Measurement, RunRecord

MIB = 2**20
BOARD = FitBudget(memory_mb=1000, storage_mb=100, margin=0.2, source="a 1 GB board")


def record(target="board", status="ok", peak_mb=None, baseline_mb=None, artifact_id="a1", size_mb=10.0,
           variant="fp32", latency_ms=5.0, runtime="onnxruntime", fit=True, work=None) -> RunRecord:
    ms = []
    if peak_mb is not None:
        ms.append(Measurement("peak_rss", peak_mb * MIB, "bytes", "vmhwm"))
    if baseline_mb is not None:
        ms += [Measurement("rss_baseline", baseline_mb * MIB, "bytes", "psutil-after-imports"),
               Measurement("peak_rss_over_baseline", (peak_mb - baseline_mb) * MIB, "bytes", "vmhwm")]
    if latency_ms is not None and status == "ok":
        ms.append(Measurement("latency", latency_ms, "ms", "perf_counter", samples=(latency_ms,) * 5,
                              stats={"p50": latency_ms, "p90": latency_ms, "n": 5}))
        ms.append(Measurement("max_abs_error", 0.0, "abs", "vs-torch-fp32"))
    context = {"fit_budget": BOARD.to_dict()} if fit else {}
    if work:
        context["work"] = work
    if status == "ok" and fit and peak_mb is not None:
        context["fit"] = judge_fit(peak_mb * MIB, size_mb * MIB, BOARD).to_dict()
    return RunRecord(job_key=f"{artifact_id}:{runtime}:{target}:b1", model="gen", variant=variant, format="onnx",
                     runtime=runtime, target=target, batch_size=1, artifact_id=artifact_id,
                     artifact_bytes=int(size_mb * MIB), status=status, error="" if status == "ok" else "down",
                     measurements=tuple(ms), context=context, started_at="t", duration_s=1.0)


def test_the_verdict_per_resource_and_for_the_job():
    fits = judge_fit(500 * MIB, 10 * MIB, BOARD)
    assert fits.verdict == "fits" and fits.memory_headroom == pytest.approx(0.5)
    assert fits.storage_headroom == pytest.approx(0.9) and fits.basis == "measured" and not fits.estimated
    assert fits.words() == "fits: memory 500 MB of 1000 (50% free), storage 10 MB of 100 (90% free)"
    tight = judge_fit(850 * MIB, 10 * MIB, BOARD)  # 15% free: under the budget, inside the 20% margin
    assert tight.verdict == "tight"
    over = judge_fit(500 * MIB, 130 * MIB, BOARD)  # the job's verdict is its worst resource's
    assert over.verdict == "does not fit" and "storage 130 MB of 100 (30% over)" in over.words()
    memory_only = judge_fit(2000 * MIB, None, FitBudget(memory_mb=4000))
    assert memory_only.verdict == "fits" and memory_only.storage_headroom is None
    assert judge_fit(500 * MIB, 10 * MIB, FitBudget()) is None  # nothing declared: no verdict
    assert FitVerdict.from_dict(over.to_dict()) == over


def target_file(tmp_path: Path, fit: str) -> Path:
    path = tmp_path / "dev.toml"
    path.write_text('name = "dev"\narch = "x86_64"\nreach = "local"\nruntimes = ["onnxruntime"]\n' + fit)
    return path


@pytest.mark.parametrize("table, message", [
    ("[fit]\nmemory_mb = -1\n", "[fit] memory_mb and storage_mb must be >= 0"),
    ("[fit]\nmemory_mb = inf\n", "[fit] memory_mb and storage_mb must be >= 0"),
    ("[fit]\nmemory_mb = 100\nmargin = 1.5\n", "[fit] margin must be a fraction in [0, 1)"),
    ("[fit]\nmemory = 100\n", "[fit] unknown key 'memory'"),
    ("[fit]\nsource = \"nothing\"\n", "[fit] declares neither memory_mb nor storage_mb"),
    ("[fit]\nmemory_mb = \"4 GB\"\n", "'memory_mb' must be float or int"),
])
def test_a_bad_fit_table_is_a_one_line_error(tmp_path, table, message):
    with pytest.raises(HarnessInputError) as err:
        load_target(target_file(tmp_path, table))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_shipped_boards_declare_what_an_application_may_take_and_say_where_it_comes_from():
    from harness.config.paths import targets_dir

    for name in ("rpi4", "rpi5", "jetson-orin-nano", "x86-cpu", "rpi4-emulated"):
        fit = load_target(targets_dir() / f"{name}.toml").fit
        assert fit.memory_mb > 0 and fit.storage_mb > 0 and fit.source, name
    assert not load_target(targets_dir() / "cuda-gpu.toml").fit.declared  # GPU memory is another budget: not set


def test_a_job_that_could_not_run_gets_an_estimate_labelled_as_one():
    measured = record(target="x86", peak_mb=400, baseline_mb=150)  # the same artifact, measured on another target
    other = record(target="x86", peak_mb=300, baseline_mb=100, artifact_id="a2")
    down = record(status="unreachable")
    estimate = fit_of(down, [measured, other, down])
    # the runtime's base (median of 150 and 100 MB) + this artifact's measured 250 MB over its base
    assert estimate.estimated and estimate.memory_mb == pytest.approx(125 + 250)
    assert "estimate: onnxruntime's base footprint measured on x86" in estimate.basis
    assert "this artifact's measured peak over its runtime's base on x86" in estimate.basis
    unseen = record(status="unreachable", artifact_id="a3", size_mb=40, work={"largest_op_bytes": 20 * MIB})
    estimate = fit_of(unseen, [measured, other, unseen])  # never measured anywhere: weights + largest activation
    assert estimate.memory_mb == pytest.approx(125 + 40 + 20) and "largest activation" in estimate.basis
    size_only = fit_of(record(status="unreachable", runtime="litert"), [measured])
    assert size_only.basis.startswith("estimate: file size only")  # no base footprint of its runtime anywhere
    assert size_only.verdict == "unknown"  # its file fits, its memory is not known: never "fits" on half the facts
    assert size_only.words() == ("unknown (estimate): memory not known (budget 1000 MB), storage 10 MB of 100 "
                                 "(90% free)")
    too_big = fit_of(record(status="unreachable", runtime="litert", size_mb=150), [measured])
    assert too_big.verdict == "does not fit"  # what is known is over: that decides
    assert fit_of(record(status="failed"), [measured]) is None  # it ran and failed: nothing to estimate
    assert fit_of(record(status="unreachable", fit=False), [measured]) is None  # its target declares no [fit]


def test_the_best_variant_must_fit_and_the_gap_says_when_none_does():
    fast_but_big = record(variant="fp32-big", peak_mb=1200, latency_ms=1.0, artifact_id="b1")
    slow_small = record(variant="int8", peak_mb=300, latency_ms=4.0, artifact_id="b2")
    summary = summary_frame([fast_but_big, slow_small])
    assert dict(zip(summary["variant"], summary["fits"])) == {"fp32-big": "does not fit", "int8": "fits"}
    (best,) = best_variants(summary, 30.0, 0.95)
    assert best["variant"] == "int8"  # the faster one does not fit the board
    summary = summary_frame([fast_but_big, record(variant="fp16", peak_mb=1100, artifact_id="b3")])
    assert best_variants(summary, 30.0, 0.95) == []
    (gap,) = best_variant_gaps(summary, 30.0, 0.95)
    assert gap["why"].startswith("no job fits its target's [fit] memory or storage")
    assert "nearest fp16 onnx/onnxruntime, 10% over" in gap["why"]


def test_optimize_takes_the_targets_fit_as_its_memory_and_size_caps():
    from harness.config.optimize import Budget

    budget, taken = Budget(min_speedup=2.0).within(BOARD)
    assert budget.max_memory_mb == 1000 and budget.max_size_mb == 100 and len(taken) == 2
    budget, taken = Budget(max_memory_mb=300.0).within(BOARD)  # the user's own cap stands
    assert budget.max_memory_mb == 300.0 and taken == ["size ≤ 100 MB"]
    assert Budget().within(FitBudget()) == (Budget(), [])
