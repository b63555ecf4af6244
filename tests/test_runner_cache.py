"""The runner end to end on the tiny generator; the cache means a second run re-exports nothing."""
from __future__ import annotations

import dataclasses

import pytest

from harness.cli import QUICK_SETTINGS
from harness.config.paths import targets_dir
from harness.run.runner import SuiteRunner
from harness.results.store import read_records
from harness.config.suite import Suite
from harness.types import RunSettings

pytestmark = pytest.mark.slow


def tiny_suite(**overrides) -> Suite:
    suite = Suite(name="tiny", models=("tiny_gen",), targets=("x86-cpu",), formats=("torch", "onnx", "tflite"),
                  batch_sizes=(1, 2), export_tolerance=1e-4, settings=RunSettings(**QUICK_SETTINGS))
    return dataclasses.replace(suite, **overrides)


def make_runner(suite, out, cache, models_dir, **kw):
    return SuiteRunner(suite, out_dir=out, cache_dir=cache, models_dir=models_dir, targets_dir=targets_dir(),
                       progress=False, **kw)


def test_second_run_reexports_nothing(tmp_path, tiny_models_dir):
    cache = tmp_path / "cache"
    first = make_runner(tiny_suite(), tmp_path / "r1", cache, tiny_models_dir).run()
    # torch artifact + (onnx, tflite) × batch (1, 2)
    assert first.exports_built == 5 and first.exports_reused == 0
    assert first.statuses == {"ok": 6}
    second = make_runner(tiny_suite(), tmp_path / "r2", cache, tiny_models_dir).run()
    assert second.exports_built == 0
    assert second.statuses == {"ok": 6}

    records = read_records(first.results_path)
    assert {(r.format, r.runtime, r.batch_size) for r in records} == {
        (f, rt, b) for f, rt in (("torch", "torch"), ("onnx", "onnxruntime"), ("tflite", "litert")) for b in (1, 2)}
    for r in records:
        metrics = {m.metric for m in r.measurements}
        assert {"latency", "load_time", "first_inference", "throughput", "peak_rss", "artifact_size",
                "max_abs_error", "import_time"} <= metrics
        assert r.measurement("max_abs_error").value < 1e-4  # the export tolerance, over 256 samples
        assert r.context["cpu_model"] and r.context["runtime_versions"]
        assert r.context["artifact_sha256"]
        assert r.schema_version == 1
        # The x86-cpu profile lists rapl, then modelled: modelled is always reported; rapl is reported
        # where the powercap counters are readable, and otherwise the record says why it is not.
        energy = {m.method: m for m in r.measurements if m.metric == "energy_per_inference"}
        per_joule = {m.method: m for m in r.measurements if m.metric == "inferences_per_joule"}
        modelled = energy["modelled"]
        assert modelled.value > 0 and "not a measurement" in modelled.note
        assert modelled.stats["inferences"] >= 5 and modelled.stats["error_band"] == 0.5
        assert per_joule["modelled"].value == pytest.approx(1 / modelled.value)
        per_image = {m.method: m for m in r.measurements if m.metric == "energy_per_image"}
        assert per_image["modelled"].value == pytest.approx(modelled.value / r.batch_size)  # J per generated image
        assert r.measurement("images_per_kwh").value == pytest.approx(3.6e6 / per_image["modelled"].value)
        assert set(per_image) == set(energy)
        assert ("rapl" in energy) != ("rapl" in r.context["energy_unavailable"])
    b2 = next(r for r in records if r.batch_size == 2 and r.runtime == "onnxruntime")
    assert b2.measurement("throughput").value == pytest.approx(2 / (b2.measurement("latency").value / 1e3))


def test_a_changed_model_file_gets_new_artifacts(tmp_path, tiny_models_dir):
    models = tmp_path / "models"
    models.mkdir()
    src = (tiny_models_dir / "tiny_gen.py").read_text().replace('"tiny_gen"', '"tiny_gen_copy"')
    (models / "tiny_copy.py").write_text(src)
    suite = tiny_suite(models=("tiny_gen_copy",), formats=("torch",), batch_sizes=(1,))
    cache = tmp_path / "cache"
    first = make_runner(suite, tmp_path / "r1", cache, models).run()
    assert first.exports_built == 1
    # Edit the file (a comment is enough: the source digest is part of the id); the zoo re-imports it.
    (models / "tiny_copy.py").write_text(src + "\n# edited\n")
    second = make_runner(suite, tmp_path / "r2", cache, models).run()
    assert second.exports_built == 1


def test_failed_export_is_recorded_and_resume_skips_done_jobs(tmp_path, diverging_models_dir):
    suite = tiny_suite(models=("diverging_gen",), batch_sizes=(1,))
    out = tmp_path / "run"
    summary = make_runner(suite, out, tmp_path / "cache", diverging_models_dir).run()
    assert summary.statuses == {"ok": 1, "failed": 2}
    records = read_records(summary.results_path)
    failed = [r for r in records if r.status == "failed"]
    assert {r.format for r in failed} == {"onnx", "tflite"}
    assert all("exceeds tolerance" in r.error for r in failed)
    again = make_runner(suite, out, tmp_path / "cache", diverging_models_dir, resume=True).run()
    assert again.skipped_completed == 3 and again.statuses == {}
    assert len(read_records(summary.results_path)) == 3
