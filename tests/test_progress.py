"""What the harness shows while it prepares, and the first report while later models still run."""
from __future__ import annotations

import re
import shutil

import pytest

from harness.build import progress
from tests.conftest import FIXTURES


def test_progress_lines_read_back_as_text(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    assert progress.latest(path) == ""
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "_started", {})
    monkeypatch.setattr(progress, "_written", {})
    clock = iter([100.0, 110.0, 110.2, 130.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    progress.report("training on digits (vae)", 0, 600)      # t=100: started
    progress.report("training on digits (vae)", 100, 600)    # t=110: 10 s for 100 steps → 50 s left
    assert progress.latest(path) == "training on digits (vae) 100/600, ~50 s left"
    progress.report("training on digits (vae)", 101, 600)    # 0.2 s later: not written (at most 2 a second)
    assert "100/600" in progress.latest(path)
    progress.report("exporting fp32 → onnx, batch 1")
    assert progress.latest(path) == "exporting fp32 → onnx, batch 1"
    path.write_text(path.read_text() + "{torn")
    assert progress.latest(path) == "exporting fp32 → onnx, batch 1"


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.report("anything", 1, 2)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_report_is_written_after_each_model_and_preparation_shows_its_steps(tmp_path, monkeypatch, capfd,
                                                                              isolated_models):
    import harness.report
    from harness import api

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(FIXTURES / "models" / "tiny_gen.py", models)
    shutil.copy(FIXTURES / "nonfinite" / "unbounded_gen.py", models)
    monkeypatch.setenv("EDGE_HARNESS_MODELS", str(models))
    written = []
    original = harness.report.write_report
    monkeypatch.setattr(harness.report, "write_report",
                        lambda path, *a: written.append(len(path.read_text().splitlines())) or original(path, *a))
    run = api.run(models=["tiny_gen", "unbounded_gen"], formats=["onnx"], variants=["none"], quick=True,
                  out=tmp_path / "run", cache=tmp_path / "cache", progress=True)
    assert run.statuses == {"ok": 2}  # 2 models, batch 1 (the default suite)
    assert written == [1, 2]  # after the first model (its job), then the final report
    shown = capfd.readouterr().err  # the progress bar's lines
    for text in ("preparing tiny_gen", "tiny_gen onnx/onnxruntime b1 @x86-cpu"):
        assert text in shown, shown[-2000:]
    # the prepare child's steps (polled twice a second over its few seconds: at least one is seen)
    assert re.search(r"preparing unbounded_gen: (building|exporting fp32 → onnx, batch 1)", shown), shown[-2000:]
    record = run.records[0]
    assert set(record.context["pass_seconds"]) == {"latency", "memory", "energy", "harness"}
    assert abs(sum(record.context["pass_seconds"].values()) - record.duration_s) < 0.05
