"""The noise-aware Pareto front, sweep files, and `harness sweep` on a tiny grid."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessInputError
from harness.config.paths import PROJECT_ROOT
from harness.analysis.pareto import Objective, Point, best_under, dominates, pareto_front
from harness.run.sweep import aggregate, fronts, load_sweep, thread_targets

LAT, PSNR, SIZE = Objective("latency_ms", "min"), Objective("psnr_db", "max"), Objective("size_mb", "min")
OBJ = (LAT, PSNR, SIZE)
COMPRESS_MODELS = Path(__file__).parent / "fixtures" / "compress"


def _p(key: str, lat: tuple[float, float], psnr: float, size: float) -> Point:
    return Point(key, {"latency_ms": lat, "psnr_db": (psnr, psnr), "size_mb": (size, size)})


# -- Pareto ---------------------------------------------------------------------------------------------
def test_a_point_better_everywhere_dominates():
    assert dominates(_p("a", (1, 1.1), 40, 1), _p("b", (2, 2.2), 30, 2), OBJ)
    assert not dominates(_p("b", (2, 2.2), 30, 2), _p("a", (1, 1.1), 40, 1), OBJ)


def test_overlapping_latencies_are_a_tie_not_a_win():
    """Same PSNR and size, latencies known only to within overlapping intervals: neither dominates."""
    a, b = _p("a", (1.0, 1.2), 30, 1), _p("b", (1.1, 1.3), 30, 1)
    assert not dominates(a, b, OBJ) and not dominates(b, a, OBJ)
    assert [p.key for p in pareto_front([a, b], OBJ)] == ["a", "b"]
    c = _p("c", (1.25, 1.3), 30, 1)  # entirely slower than a: dominated
    assert [p.key for p in pareto_front([a, c], OBJ)] == ["a"]


def test_the_front_keeps_every_trade_off():
    fast_rough = _p("fast", (0.2, 0.25), 28, 0.5)
    slow_exact = _p("exact", (1.0, 1.1), 90, 2.0)
    small = _p("small", (1.0, 1.1), 40, 0.4)
    worse = _p("worse", (1.2, 1.3), 35, 2.5)  # slower, rougher and bigger than exact
    front = pareto_front([fast_rough, slow_exact, small, worse], OBJ)
    assert [p.key for p in front] == ["fast", "exact", "small"]


def test_best_under_limits_is_the_fastest_point_that_fits():
    pts = [_p("fast", (0.2, 0.25), 28, 0.5), _p("ok", (0.5, 0.6), 33, 1.0), _p("big", (0.3, 0.35), 40, 9.0)]
    assert best_under(pts, {"psnr_db": 30}, OBJ, "latency_ms").key == "big"
    assert best_under(pts, {"psnr_db": 30, "size_mb": 2}, OBJ, "latency_ms").key == "ok"
    assert best_under(pts, {"latency_ms": 0.3, "psnr_db": 30}, OBJ, "latency_ms") is None  # big's CI reaches 0.35
    with pytest.raises(ValueError, match="direction"):
        Objective("x", "up")


# -- aggregation -----------------------------------------------------------------------------------------
def _row(variant: str, p50: float, lo: float, hi: float, psnr: float | None, size: float, status: str = "ok") -> dict:
    return {"model": "m", "target": "t", "batch_size": 1, "variant": variant, "format": "onnx",
            "runtime": "onnxruntime", "status": status, "latency_p50_ms": p50, "latency_ci_low_ms": lo,
            "latency_ci_high_ms": hi, "psnr_db": psnr, "max_abs_error": 0.0 if psnr is None else 0.1,
            "size_mb": size, "error": "" if status == "ok" else "boom"}


def test_aggregate_takes_the_median_of_run_medians_and_the_widest_interval():
    rounds = [[_row("fp32", 1.0, 0.9, 1.1, None, 2.0), _row("v", 0.5, 0.45, 0.55, 35.0, 1.0)],
              [_row("fp32", 1.2, 1.1, 1.3, None, 2.0), _row("v", 0.7, 0.6, 0.8, 35.0, 1.0)],
              [_row("fp32", 1.1, 1.0, 1.2, None, 2.0), _row("v", 0.6, 0.5, 0.9, 35.0, 1.0, status="timeout")]]
    rows = {r["variant"]: r for r in aggregate(rounds)}
    assert rows["fp32"]["latency_ms"] == 1.1 and rows["fp32"]["latency_low_ms"] == 0.9
    assert rows["fp32"]["latency_high_ms"] == 1.3 and rows["fp32"]["psnr_db"] == float("inf")
    assert rows["v"]["runs"] == 3 and rows["v"]["runs_ok"] == 2 and rows["v"]["latency_ms"] == 0.6
    assert rows["v"]["error"] == "boom"
    summary = fronts(list(rows.values()), {"psnr_db": 30.0})
    assert summary[0]["front"] == ["fp32 onnx/onnxruntime", "v onnx/onnxruntime"]
    assert summary[0]["best"] == "v onnx/onnxruntime"


def test_psnrs_beyond_float_round_off_are_ties():
    """fp32 in two formats: 148 vs 146 dB is round-off, so the faster one alone is on the front."""
    slow = _row("fp32", 0.40, 0.39, 0.41, 148.4, 0.34) | {"format": "onnx", "runtime": "onnxruntime"}
    fast = _row("fp32", 0.26, 0.25, 0.27, 146.8, 0.34) | {"format": "tflite", "runtime": "litert"}
    (group,) = fronts(aggregate([[slow, fast]]), {})
    assert group["front"] == ["fp32 tflite/litert"]
    a = _row("v", 0.19, 0.18, 0.20, 34.3601, 0.14)  # the same variant in two runtimes: round-off apart
    b = _row("v", 0.13, 0.12, 0.14, 34.3598, 0.14) | {"format": "tflite", "runtime": "litert"}
    (group,) = fronts(aggregate([[a, b]]), {})
    assert group["front"] == ["v tflite/litert"]


# -- sweep files -----------------------------------------------------------------------------------------
SWEEP = """
name = "tiny"
models = ["tiny_deconv"]
formats = ["onnx"]
batch_sizes = [1]

[sweep]
search = "{search}"
budget = {budget}
repeats = 2
seed = 3
[sweep.limits]
psnr_db = 20.0

[[sweep.space]]
method = "prune-channels"
amount = [0.25, 0.5]

[[sweep.space]]
method = "quant-static"
per_channel = [true, false]
calibration_batches = 2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_a_grid_expands_every_combination_with_resolved_parameters(tmp_path):
    suite, sweep = load_sweep(_write(tmp_path, SWEEP.format(search="grid", budget=0)))
    names = [p.name for p in sweep.points]
    assert names == ["prune-channels(amount=0.25)", "prune-channels(amount=0.5)",
                     "quant-static(per_channel=True, calibration_batches=2)",
                     "quant-static(per_channel=False, calibration_batches=2)"]
    assert sweep.points[0].params == {"amount": 0.25, "multiple": 1, "importance": "l1"}
    assert sweep.repeats == 2 and sweep.limits == {"psnr_db": 20.0} and suite.models == ("tiny_deconv",)


def test_a_random_search_draws_budget_points_reproducibly(tmp_path):
    a = load_sweep(_write(tmp_path, SWEEP.format(search="random", budget=2)))[1]
    b = load_sweep(_write(tmp_path, SWEEP.format(search="random", budget=2)))[1]
    assert len(a.points) == 2 and a.points == b.points and a.grid_size == 4


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('search = "grid"', 'search = "bayes"'), "search must be one of grid, random"),
    (lambda s: s.replace("budget = 0", "budget = 3"), "the grid has 4 points, over the budget of 3"),
    (lambda s: s.replace("amount = [0.25, 0.5]", "amount = [0.25, 2.0]"), r"sweep.space\[0\].*strictly between"),
    (lambda s: s.replace("amount = [0.25, 0.5]", "amount = []"), "an empty list gives no point"),
    (lambda s: s.replace("psnr_db = 20.0", "psnr = 20.0"), "unknown key 'psnr'"),
    (lambda s: s.replace("[sweep]\n", "[sweep]\nthreads = [-1]\n"), "threads must be >= 0"),
    (lambda s: s.split("[sweep]")[0], "needs a \\[sweep\\] table"),
    (lambda s: s.replace('search = "grid"', 'search = "optuna"').replace("budget = 0", "budget = 2")
     .replace('formats = ["onnx"]', 'formats = ["onnx"]\ntargets = ["x86-cpu", "rpi4"]'), "exactly one of each"),
    (lambda s: s.replace('search = "grid"', 'search = "optuna"'), "(>= 1 for search = 'optuna')"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, edit, message):
    with pytest.raises(HarnessInputError, match=message):
        load_sweep(_write(tmp_path, edit(SWEEP.format(search="grid", budget=0))))


def test_thread_counts_copy_each_target():
    from harness.config.targets import get_target
    from harness.config.paths import targets_dir

    base = get_target(targets_dir(), "x86-cpu")
    copies = thread_targets([base], [1, 2])
    assert [(t.name, t.threads) for t in copies] == [("x86-cpu@1t", 1), ("x86-cpu@2t", 2)]
    assert thread_targets([base], []) == [base]


def _harness_sweep(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    """`harness sweep --quick` on the compression fixtures, into tmp_path/out; asserts it exits 0."""
    env = {"EDGE_HARNESS_MODELS": str(COMPRESS_MODELS), "EDGE_HARNESS_CACHE": str(tmp_path / "cache"),
           "EDGE_HARNESS_REPORTS": str(tmp_path / "reports"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "harness", "sweep", str(_write(tmp_path, text)), "--quick",
                           "--no-progress", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=900, cwd=PROJECT_ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_harness_sweep_measures_a_tiny_grid_and_writes_the_front(tmp_path):
    text = SWEEP.format(search="grid", budget=0).replace("[sweep]\n", "[sweep]\nthreads = [1]\n")
    proc = _harness_sweep(tmp_path, text)
    data = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert len(data["rows"]) == 5  # fp32 + 4 points, ONNX Runtime, one target copy
    assert all(r["runs"] == 2 and r["runs_ok"] == 2 and r["target"] == "x86-cpu@1t" for r in data["rows"])
    (group,) = data["fronts"]
    assert "fp32 onnx/onnxruntime" in group["front"]  # the only point with outputs identical to fp32
    assert group["best"] is not None
    assert (tmp_path / "out" / "run-1" / "index.html").is_file() and (tmp_path / "out" / "sweep.csv").is_file()
    assert "front:" in proc.stderr and "best within" in proc.stderr


def test_optuna_search_reads_its_space(tmp_path):
    text = SWEEP.format(search="optuna", budget=3)
    suite, sweep = load_sweep(_write(tmp_path, text))
    assert sweep.space[0] == ("prune-channels", (("amount", (0.25, 0.5)),))
    assert sweep.space[1][1] == (("per_channel", (True, False)), ("calibration_batches", (2,)))


@pytest.mark.slow
def test_harness_sweep_with_optuna_asks_budget_trials(tmp_path):
    pytest.importorskip("optuna", reason="the optuna package is not installed")
    text = SWEEP.format(search="optuna", budget=3).replace("repeats = 2", "repeats = 1")
    text = text.split("[[sweep.space]]\nmethod = \"quant-static\"")[0]  # channel pruning only: 2 points
    proc = _harness_sweep(tmp_path, text)
    data = json.loads((tmp_path / "out" / "sweep.json").read_text())
    measured = set(data["measured"]) - {"fp32"}
    # 3 trials over a 2-point space: each point measured once at most, a repeat is told its earlier figures
    assert 1 <= len(measured) <= 2 and measured <= {"prune-channels(amount=0.25)", "prune-channels(amount=0.5)"}
    assert len(list((tmp_path / "out").glob("trial-*/run-1/results.jsonl"))) == len(measured)
    fp32 = [r for r in data["rows"] if r["variant"] == "fp32"]
    assert len(fp32) == 1 and fp32[0]["runs"] == len(measured)  # fp32 measured in every trial, pooled
