"""Compressed variants in suites: parsing and its errors, and a suite of variants run end to end."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.cli import QUICK_SETTINGS
from harness.errors import HarnessInputError
from harness.config.paths import targets_dir
from harness.run.runner import SuiteRunner
from harness.results.store import read_records
from harness.config.suite import Suite, load_suite
from harness.types import RunSettings

COMPRESS_MODELS = Path(__file__).parent / "fixtures" / "compress"

VARIANTS = """
[[variants]]
name = "l1"
method = "prune-l1"
amount = 0.5

[[variants]]
name = "thin"
method = "prune-channels"
amount = 0.5

[[variants]]
name = "qdq"
method = "quant-static"
calibration_batches = 4

[[variants]]
name = "thin-qdq"
method = "quant-static"
after = "thin"

[[variants]]
name = "dyn"
method = "quant-dynamic"

[[variants]]
name = "half"
method = "fp16"
"""


def _suite(tmp_path: Path, body: str) -> Suite:
    path = tmp_path / "s.toml"
    path.write_text('name = "v"\nmodels = ["tiny_deconv"]\n' + body)
    return load_suite(path)


def test_variants_load_with_resolved_parameters(tmp_path):
    suite = _suite(tmp_path, VARIANTS)
    by_name = {v.name: v for v in suite.variants}
    assert [v.name for v in suite.variants] == ["l1", "thin", "qdq", "thin-qdq", "dyn", "half"]
    assert by_name["l1"].params == {"amount": 0.5, "scope": "layer", "seed": 0}
    assert by_name["qdq"].params["calibration_batches"] == 4 and by_name["qdq"].params["per_channel"] is True
    assert by_name["thin-qdq"].after == "thin"
    assert [v.name for v in suite.select_variants(("thin-qdq",)).variants] == ["thin", "thin-qdq"]
    assert suite.select_variants(("none",)).variants == ()


@pytest.mark.parametrize("body, message", [
    ('[[variants]]\nname = "a"\n', "needs a 'method'"),
    ('[[variants]]\nmethod = "prune-magic"\n', "unknown compressor 'prune-magic'"),
    ('[[variants]]\nmethod = "prune-l1"\namount = 2.0\n', r"variants\[0\].*strictly between"),
    ('[[variants]]\nmethod = "prune-l1"\nname = 3\n', "'name' must be str"),
    ('[[variants]]\nmethod = "prune-l1"\n[[variants]]\nmethod = "prune-l1"\n', "'prune-l1' is used twice"),
    ('[[variants]]\nmethod = "prune-l1"\nname = "fp32"\n', "'fp32' is used twice \\(or is reserved\\)"),
    ('[[variants]]\nmethod = "fp16"\nafter = "later"\n', "names no earlier variant"),
    ('[[variants]]\nmethod = "fp16"\n[[variants]]\nmethod = "prune-l1"\nafter = "fp16"\n', "works on a PyTorch model"),
    ('variants = [1]\n', "must be a table"),
    ('[[variants]]\nmethod = "prune-l1"\nmodels = [1]\n', "'variants\\[0\\].models' must be a list of str"),
    ('[[variants]]\nmethod = "prune-l1"\nmodels = ["a"]\n[[variants]]\nmethod = "fp16"\nafter = "prune-l1"\n',
     "'after' = 'prune-l1' is made only of a; list those"),
])
def test_bad_variants_are_one_line_errors_naming_the_file(tmp_path, body, message):
    with pytest.raises(HarnessInputError, match=message) as info:
        _suite(tmp_path, body)
    assert str(tmp_path / "s.toml") in str(info.value)


def test_selecting_an_unknown_variant_names_the_known_ones(tmp_path):
    with pytest.raises(HarnessInputError, match="no variant 'x' \\(known: l1, thin"):
        _suite(tmp_path, VARIANTS).select_variants(("x",))


@pytest.mark.slow
def test_a_suite_of_variants_measures_each_and_reports_fidelity_and_coverage(tmp_path):
    suite = Suite(name="v", models=("tiny_deconv",), targets=("x86-cpu",), formats=("torch", "onnx", "tflite"),
                  batch_sizes=(2,), export_tolerance=1e-4, settings=RunSettings(**QUICK_SETTINGS))
    suite = dataclasses.replace(suite, variants=_suite(tmp_path, VARIANTS).variants)
    cache = tmp_path / "cache"

    def run(out: str):
        runner = SuiteRunner(suite, out_dir=tmp_path / out, cache_dir=cache, models_dir=COMPRESS_MODELS,
                             targets_dir=targets_dir(), progress=False)
        return runner, runner.run()

    runner, summary = run("r1")
    records = read_records(summary.results_path)
    assert len(records) == runner.job_count() == 3 * 3 + 4  # (fp32, l1, thin) × 3 formats + 4 ONNX-only
    assert summary.statuses == {"ok": len(records)}, [r.error for r in records if r.status != "ok"]
    by = {(r.variant, r.format): r for r in records}

    def value(variant: str, fmt: str, metric: str) -> float:
        m = by[(variant, fmt)].measurement(metric)
        assert m is not None, f"{variant}/{fmt} has no {metric}"
        return m.value

    from harness.zoo import get_model

    spec = get_model("tiny_deconv")
    full = sum(p.numel() for p in spec.builder(**spec.builder_kwargs).parameters())
    for fmt in ("torch", "onnx", "tflite"):  # the worker rebuilt the thinner torch model from its recipe
        assert value("thin", fmt, "parameters") < 0.45 * full
        assert value("l1", fmt, "weight_sparsity") == pytest.approx(0.5, abs=0.01)
        assert 10 < value("l1", fmt, "psnr") < 80  # compressed: near the reference, not equal to it
        assert value("l1", "torch", "psnr") == pytest.approx(value("l1", fmt, "psnr"), rel=1e-3)
    assert value("qdq", "onnx", "ops_int8_fraction") == 1.0
    assert value("thin-qdq", "onnx", "parameters") == value("thin", "onnx", "parameters")
    assert value("dyn", "onnx", "ops_int8_fraction") == 0.0  # ConvTranspose only: nothing to quantize
    assert value("dyn", "onnx", "max_abs_error") == value("fp32", "onnx", "max_abs_error")
    assert value("half", "onnx", "ops_fp16_fraction") == 1.0
    assert value("l1", "onnx", "artifact_gzip_size") < 0.8 * value("fp32", "onnx", "artifact_gzip_size")
    assert value("l1", "onnx", "artifact_size") == value("fp32", "onnx", "artifact_size")

    summary_csv = (summary.results_path.parent / "summary.csv")
    from harness.report import write_report

    written = write_report(summary.results_path)
    assert "no compute op was quantized" in summary_csv.read_text()
    assert "Compressed variants: what each one buys" in written["html"].read_text()

    _, again = run("r2")  # content-addressed: nothing compressed or exported twice
    assert again.exports_built == 0


DIGITS_MODELS = Path(__file__).parent / "fixtures" / "digits"
DIGITS_VARIANTS = """
[[variants]]
name = "student"
method = "distill"
amount = 0.5
steps = 60
models = ["tiny_digits"]

[[variants]]
name = "sep"
method = "separable"
steps = 30
min_channels = 4

[[variants]]
name = "elsewhere"
method = "prune-l1"
models = ["tiny_gen"]
"""


def test_a_variant_naming_an_unknown_model_is_an_input_error(tmp_path):
    suite = dataclasses.replace(_suite(tmp_path, DIGITS_VARIANTS), models=("tiny_digits",))
    with pytest.raises(HarnessInputError, match="variant 'elsewhere' names unknown model\\(s\\) tiny_gen"):
        SuiteRunner(suite, out_dir=tmp_path / "r", cache_dir=tmp_path / "c", models_dir=DIGITS_MODELS,
                    targets_dir=targets_dir(), progress=False)


@pytest.mark.slow
def test_a_digits_trained_generator_gets_distribution_fidelity_and_distilled_variants(tmp_path):
    """Trained at prepare time; fidelity over a sample set: PSNR, Fréchet distance, label agreement; a variant
    limited to another model is not made of this one."""
    suite = Suite(name="d", models=("tiny_digits",), targets=("x86-cpu",), formats=("torch", "onnx"),
                  batch_sizes=(2,), export_tolerance=1e-4,
                  settings=RunSettings(**QUICK_SETTINGS | {"fidelity_samples": 65}))
    variants = _suite(tmp_path, DIGITS_VARIANTS.replace('"tiny_gen"', '"tiny_digits_other"')).variants
    assert not variants[2].applies_to("tiny_digits")
    suite = dataclasses.replace(suite, variants=variants)
    runner = SuiteRunner(suite, out_dir=tmp_path / "r", cache_dir=tmp_path / "cache", models_dir=DIGITS_MODELS,
                         targets_dir=targets_dir(), progress=False)
    records = read_records(runner.run().results_path)
    assert len(records) == runner.job_count() == 3 * 2  # fp32, student, sep × torch, onnx; not "elsewhere"
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    by = {(r.variant, r.format): r for r in records}
    fp32 = by[("fp32", "onnx")]
    assert fp32.measurement("frechet_distance").value == pytest.approx(0.0, abs=1e-6)
    assert fp32.measurement("label_agreement").value == 1.0
    assert "64 samples" in fp32.measurement("psnr").note  # 65 samples, whole batches of 2
    assert by[("fp32", "torch")].context["artifact_recipe"]["training"]["curve"][-1][0] == 300
    student = by[("student", "onnx")]
    assert 0.0 < student.measurement("frechet_distance").value < student.measurement("frechet_distance_digits").value
    assert 0.0 <= student.measurement("label_agreement").value <= 1.0
    assert student.measurement("psnr").value > 15
    loss = student.measurement("distill_loss")
    assert loss.samples and len(loss.samples) >= 10 and loss.value == loss.samples[-1] < loss.samples[0]
    from harness.zoo import get_model

    spec = get_model("tiny_digits")
    full = sum(p.numel() for p in spec.builder(**spec.builder_kwargs).parameters())
    assert by[("sep", "torch")].measurement("parameters").value < full


@pytest.mark.slow
def test_a_failing_compressor_fails_its_variant_only(tmp_path, tiny_models_dir):
    """tiny_gen's only conv feeds the output: channel pruning has nothing to thin and says why."""
    suite = Suite(name="v", models=("tiny_gen",), targets=("x86-cpu",), formats=("torch", "onnx"),
                  batch_sizes=(1,), export_tolerance=1e-4, settings=RunSettings(**QUICK_SETTINGS))
    suite = dataclasses.replace(suite, variants=_suite(tmp_path, VARIANTS).select_variants(("thin-qdq",)).variants)
    runner = SuiteRunner(suite, out_dir=tmp_path / "r", cache_dir=tmp_path / "cache", models_dir=tiny_models_dir,
                         targets_dir=targets_dir(), progress=False)
    records = read_records(runner.run().results_path)
    status = {(r.variant, r.format): (r.status, r.error) for r in records}
    assert status[("fp32", "onnx")][0] == status[("fp32", "torch")][0] == "ok"
    for key in (("thin", "torch"), ("thin", "onnx"), ("thin-qdq", "onnx")):
        assert status[key][0] == "failed"
        assert "no layer can lose channels" in status[key][1]
