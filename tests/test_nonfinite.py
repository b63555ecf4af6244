"""NaN and inf inside a normal suite: a generator whose fp32 output holds NaN, a distilled student that
diverges to inf / NaN, and a compressor that fails inside PyTorch, beside a normal generator. The suite
finishes, every job has its record, the other jobs are intact, and the report flags what went non-finite."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from harness.results.store import read_records
from tests.conftest import FIXTURES
from tests.helpers import QUICK_SETTINGS_TOML
from tests.test_cli import harness

pytestmark = pytest.mark.slow

SUITE = """
name = "nonfinite"
targets = ["x86-cpu"]
formats = ["torch", "onnx"]
batch_sizes = [2]
""" + QUICK_SETTINGS_TOML + """
[[variants]]
name = "distill-diverged"   # a learning rate far too high: the student's weights overflow
method = "distill"
amount = 0.5
steps = 30
lr = 1e12
models = ["unbounded_gen"]

[[variants]]
name = "int8"
method = "torch-int8"
calibration_batches = 2
models = ["gru_gen", "tiny_gen"]
"""


def expected_jobs() -> int:
    """4 models × fp32 in torch and onnx, the diverged student in both, eager int8 (PyTorch only) of two."""
    return 4 * 2 + 2 + 2


def models_folder(tmp: Path) -> Path:
    models = tmp / "models"
    models.mkdir(parents=True)
    shutil.copy(FIXTURES / "models" / "tiny_gen.py", models)
    for path in (FIXTURES / "nonfinite").glob("*.py"):
        shutil.copy(path, models)
    return models


def test_nan_and_inf_outputs_are_findings_and_the_suite_completes(tmp_path, shared_cache):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    proc = harness("run", "--suite", str(suite), "--out", str(out), "--cache", str(shared_cache), "--no-progress",
                   env={"EDGE_HARNESS_MODELS": str(models_folder(tmp_path))})
    assert proc.returncode == 1, proc.stderr  # one variant failed (eager int8 of the GRU); nothing else
    assert "Traceback" not in proc.stderr
    records = read_records(out / "results.jsonl")
    assert len(records) == expected_jobs()
    by = {(r.model, r.variant, r.format): r for r in records}

    def figures(r):
        return {m.metric: m for m in r.measurements}

    for fmt in ("torch", "onnx"):  # the normal generator is untouched by its neighbours
        tiny = by[("tiny_gen", "fp32", fmt)]
        assert tiny.status == "ok" and figures(tiny)["latency"].samples
        assert figures(tiny)["nonfinite_outputs"].value == 0.0
        # the NaN generator: measured, its NaN share recorded, error figures over the finite values
        nan = by[("nan_gen", "fp32", fmt)]
        assert nan.status == "ok", nan.error
        assert 0.2 < figures(nan)["nonfinite_outputs"].value < 0.8
        assert figures(nan)["max_abs_error"].value < 1e-4 and figures(nan)["latency"].value > 0
        # the diverged student: ok as a job, NaN/inf outputs recorded, no error figure, its NaN loss named
        student = by[("unbounded_gen", "distill-diverged", fmt)]
        assert student.status == "ok", student.error
        assert figures(student)["nonfinite_outputs"].value > 0.5
        assert "psnr" not in figures(student) and "max_abs_error" not in figures(student)
        assert "distill_loss" in student.context["unwritable"]
    assert by[("tiny_gen", "int8", "torch")].status == "ok"
    gru = by[("gru_gen", "int8", "torch")]
    assert gru.status == "failed"
    assert "on gru_gen failed while calibrating the observers" in gru.error
    assert "raised in torch/ao/quantization/" in gru.error

    flags = {(row["model"], row["variant"], row["format"]): row["flags"]
             for row in csv.DictReader((out / "summary.csv").open())}
    assert "where fp32 PyTorch differs (NaN/inf on one side only): no PSNR, not a usable variant" in \
        flags[("unbounded_gen", "distill-diverged", "onnx")]
    assert "(the model itself, in fp32)" in flags[("nan_gen", "fp32", "onnx")]
    assert flags[("tiny_gen", "fp32", "onnx")] == ""
    html = (out / "index.html").read_text()
    assert "non-finite outputs" in html
    # the best faithful variant of the unbounded generator is never the diverged student. Judged as on a quiet
    # machine: a busy one marks latency passes disturbed, and a disturbed pass picks no winner (the report then
    # names the jobs it could not judge, the student among them)
    import pandas as pd

    from harness.report.compression import LABEL_AGREEMENT_FLOOR, PSNR_FLOOR_DB
    from harness.report.plots import best_variants

    summary = pd.read_csv(out / "summary.csv").assign(disturbed="")
    (winner,) = [b for b in best_variants(summary, PSNR_FLOOR_DB, LABEL_AGREEMENT_FLOOR)
                 if b["model"] == "unbounded_gen"]
    assert winner["variant"] == "fp32"

    proc = harness("gate", "--baseline", str(out), "--candidate", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
