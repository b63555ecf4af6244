"""What the harness shows while it prepares, and the first report while later models still run."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from harness.prepare import progress
from tests.conftest import FIXTURES


def test_progress_lines_read_back_as_text(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    assert progress.latest(path) == ""
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "_started", {})
    monkeypatch.setattr(progress, "_written", {})
    monkeypatch.setattr(progress, "_current", [""])
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


def test_a_step_that_begins_again_gets_its_own_start(tmp_path, monkeypatch):
    """Two variants distilled one after the other: the second's ETA counts from its own start."""
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "_started", {})
    monkeypatch.setattr(progress, "_written", {})
    monkeypatch.setattr(progress, "_current", [""])
    clock = iter([0.0, 10.0, 11.0, 100.0, 101.0, 111.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    progress.report("distilling the student", 0, 100)
    progress.report("distilling the student", 50, 100)       # 10 s for 50 steps
    progress.report("compressing: second (distill)")
    progress.report("distilling the student", 0, 100)        # t=100: begins again
    progress.report("distilling the student", 1, 100)        # not written: 1 s since the line before
    progress.report("distilling the student", 50, 100)       # t=111: 11 s for 50 → 11 s left, not 111
    assert progress.latest(path) == "distilling the student 50/100, ~11 s left"


def test_the_preparation_timeline_has_each_steps_seconds_and_peak_memory(tmp_path):
    import json

    from harness.launch.preparing import timeline

    path = tmp_path / "progress.jsonl"
    assert timeline(path, 0.0) == []
    lines = [("building", 1000.0, 300.0), ("training on digits (vae)", 1002.0, 310.0),
             ("training on digits (vae)", 1030.0, 900.0), ("exporting fp32 → onnx, batch 1", 1031.5, 950.0)]
    path.write_text("\n".join(json.dumps({"what": w, "t": t, "peak_mb": m}) for w, t, m in lines) + "\n{torn")
    assert timeline(path, 1040.0) == [
        {"step": "building", "seconds": 2.0, "peak_mb": 310.0},  # its peak: as the next step began
        {"step": "training on digits (vae)", "seconds": 29.5, "peak_mb": 950.0},
        {"step": "exporting fp32 → onnx, batch 1", "seconds": 8.5, "peak_mb": 950.0}]


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
    steps = [json.loads(line) for line in (tmp_path / "run" / "preparation.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s["model"] == "tiny_gen"][:1] == ["building"]
    assert "exporting fp32 → onnx, batch 1" in [s["step"] for s in steps if s["model"] == "unbounded_gen"]
    assert all(s["seconds"] >= 0 and s["peak_mb"] > 50 and s["status"] == "ok" for s in steps)
    record = run.records[0]
    assert set(record.context["pass_seconds"]) == {"latency", "memory", "energy", "harness"}
    assert abs(sum(record.context["pass_seconds"].values()) - record.duration_s) < 0.05
