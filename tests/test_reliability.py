"""Reliability, one class at a time: records stay writable whatever their values; NaN outputs are gated;
bad suites, targets, artifacts and --resume are one-line errors; compressor failures say what was being done."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from harness.compress import failure_text, phase
from harness.errors import HarnessInputError
from harness.analysis.gate import GateConfig, run_gate
from harness.results.records import parse_records
from harness.results.store import ResultsStore
from harness.config.suite import load_suite
from harness.config.targets import load_target
from harness.types import Measurement
from tests.test_cli import harness
from tests.test_gate import job
from tests.test_results_fuzz import cli
from tests.test_store_config import record


def test_a_record_with_non_finite_values_is_written_and_says_what_was_left_out(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(record("before"))
    odd = dataclasses.replace(record("odd"), measurements=(
        Measurement("latency", 1.5, "ms", "perf_counter", samples=(1.0, float("nan"), 2.0),
                    stats={"p50": 1.5, "cv": float("inf")}),
        Measurement("distill_loss", float("nan"), "mse", "distillation-vs-teacher", samples=(0.5, float("nan"))),
        Measurement("max_abs_error", float("inf"), "abs", "vs-torch-fp32"),
        Measurement("psnr", np.float32(31.5), "dB", "vs-torch-fp32"),
        Measurement("energy_per_inference", 3.2e21, "J", "meter"),  # finite, but beyond what the reader takes
        Measurement("load_time", 2.0, "ms", "perf_counter", samples=(2.0, -1.0)),  # a negative duration
    ), context={"cpu_model": "x", "temp": float("nan"), "numpy": np.float64(2.5), "thing": object(),
                "nested": {"a": [float("-inf"), 1]}})
    store.append(odd)
    store.append(record("after"))
    records = parse_records(store.path)  # strict JSON, valid records: every later reader takes them
    assert [r.job_key for r in records] == ["before", "odd", "after"]
    written = records[1]
    assert [m.metric for m in written.measurements] == ["latency", "psnr", "load_time"]
    assert written.measurement("latency").samples == (1.0, 2.0)
    assert written.measurement("latency").stats == {"p50": 1.5}
    assert written.measurement("psnr").value == 31.5
    assert written.context["unwritable"] == (
        "left out, not a finite number within ±1e15 (durations ≥ 0): 1 of the latency samples (e.g. nan); "
        "latency statistics cv; distill_loss=nan; max_abs_error=inf; energy_per_inference=3.2e+21; "
        "1 of the load_time samples (e.g. -1.0)")
    assert written.context["temp"] is None and written.context["numpy"] == 2.5
    assert written.context["nested"] == {"a": [None, 1]} and written.context["thing"].startswith("<object")
    assert "NaN" not in store.path.read_text() and "Infinity" not in store.path.read_text()


def test_a_new_nan_share_fails_the_gate():
    def with_nonfinite(share):
        r = job([1.0, 1.1, 0.9, 1.0, 1.05] * 20)
        return dataclasses.replace(r, measurements=(
            *r.measurements, Measurement("nonfinite_outputs", share, "fraction", "isfinite")))

    result = run_gate([with_nonfinite(0.0)], [with_nonfinite(0.125)], GateConfig())
    verdict = next(v for v in result.verdicts if v.comparison.metric == "nonfinite_outputs")
    assert verdict.outcome == "regression" and result.failed
    assert not run_gate([with_nonfinite(0.0)], [with_nonfinite(0.0)], GateConfig()).failed


def test_compressor_failure_names_the_phase_and_the_library_frame():
    try:
        with phase("calibrating the observers on 2 batches"):
            json.loads("{")  # raised inside the standard library, as a library's internal error would be
    except ValueError as exc:
        text = failure_text(exc, "torch-int8", "int8", "gru_gen")
    assert text.startswith("torch-int8 (int8) on gru_gen failed while calibrating the observers on 2 batches: "
                           "JSONDecodeError: ")
    assert "(raised in json/decoder.py:" in text


def test_a_missing_optional_package_says_what_to_install():
    """A user without the executorch extra: the ExecuTorch export and PT2E for it say which extra installs it (was:
    "executorch export failed: ModuleNotFoundError: No module named 'executorch'")."""
    from harness.errors import missing_package

    try:
        try:
            import executorch_not_a_package.exir  # noqa: F401
        except ModuleNotFoundError as inner:
            inner.name = "executorch.exir"  # as `import executorch.exir` raises it where the extra is missing
            raise RuntimeError("lowering failed") from inner
    except RuntimeError as exc:
        assert missing_package(exc) == ("python package 'executorch' is not installed here "
                                        "(pip install 'edge-harness[executorch]')")
        text = failure_text(exc, "pt2e-int8", "pt2e", "unet")
    assert text == ("pt2e-int8 (pt2e) on unet needs what is not installed: python package 'executorch' is not "
                    "installed here (pip install 'edge-harness[executorch]')")
    assert missing_package(ModuleNotFoundError("No module named 'google.protobuf'", name="google.protobuf")) == (
        "module 'google.protobuf' is not installed here")
    assert missing_package(ValueError("bad")) is None
    try:
        try:
            import executorch_not_a_package  # noqa: F401
        except ModuleNotFoundError:
            raise ValueError("a fallback that replaced the import error on purpose") from None
    except ValueError as replaced:
        assert missing_package(replaced) is None  # `from None`: the import error is not the cause


@pytest.mark.parametrize("text, message", [
    ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ("", "the suite is empty"),
    ("# nothing but a comment\n", "the suite is empty"),
    ('name = "../escape"\ntargets = ["x86-cpu"]\n', "must be a plain name"),
    ('name = "a/b"\ntargets = ["x86-cpu"]\n', "must be a plain name"),
])
def test_suite_files_refused_with_one_line(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(HarnessInputError) as info:
        load_suite(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_suite_named_by_its_file_gets_a_plain_folder_name(tmp_path):
    path = tmp_path / "my suite (v2).toml"
    path.write_text('targets = ["x86-cpu"]\n')
    assert load_suite(path).name == "my_suite__v2_"


@pytest.mark.parametrize("extra, message", [
    ('arch = "ARM"\n', "unknown arch 'ARM'"),
    ('arch = "x86_64"\ncpu_affinity = [0, 4096]\n', "names CPU 4096, which this machine does not let"),
])
def test_target_profiles_validated_at_load(tmp_path, extra, message):
    path = tmp_path / "t.toml"
    path.write_text('name = "t"\nreach = "local"\nruntimes = ["onnxruntime"]\n' + extra)
    with pytest.raises(HarnessInputError) as info:
        load_target(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_board_profile_may_name_cpus_this_machine_lacks(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text('name = "board"\narch = "aarch64"\nreach = "ssh"\nruntimes = ["onnxruntime"]\n'
                    'cpu_affinity = [4095]\n[ssh]\nhost = "b"\nuser = "pi"\npython = "/usr/bin/python3"\n')
    assert load_target(path).cpu_affinity == (4095,)


def test_an_artifact_symlink_loop_is_one_line(tmp_path):
    loop = tmp_path / "loop.onnx"
    os.symlink(loop, loop)
    code, err = cli("run", "--artifact", str(loop), "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "loop.onnx: cannot resolve the path" in err, err


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path):
    proc = harness("run", "--resume", "--out", str(tmp_path / "never"), "--no-progress")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"harness: error: --resume --out {tmp_path / 'never'}: no run to resume there (no results.jsonl); "
        "drop --resume to start a new run in that folder"]
    assert not (tmp_path / "never").exists()


def test_an_empty_results_file_is_named_not_a_traceback(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"")
    for args in (["report", str(path)], ["compare", str(path), str(path)],
                 ["gate", "--baseline", str(path), "--candidate", str(path)]):
        code, err = cli(*args)
        assert code == 2 and err.strip() == (f"harness: error: {path}: is empty: no job was recorded (did the run "
                                             "stop before its first job?)"), err
    assert ResultsStore(path).completed_keys() == set()  # --resume of a run that stopped that early starts over


@pytest.mark.slow
def test_an_error_in_the_harness_itself_fails_one_job_and_the_suite_goes_on(tmp_path, monkeypatch, tiny_models_dir,
                                                                            shared_cache):
    import harness.run.job as runner  # the job module runs the fidelity step

    calls = []

    def broken_fidelity(*args, **kwargs):  # the first job's fidelity step raises, as a harness bug would
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("float division by zero")
        return original(*args, **kwargs)

    original = runner.sample_fidelity
    monkeypatch.setattr(runner, "sample_fidelity", broken_fidelity)
    monkeypatch.setenv("EDGE_HARNESS_MODELS", str(tiny_models_dir))
    out = tmp_path / "run"
    code, err = cli("run", "--suite", "full", "--model", "tiny_gen", "--format", "onnx", "--format", "tflite",
                    "--variant", "none",
                    "--quick", "--out", str(out), "--cache", str(shared_cache), "--no-progress")
    assert code == 1 and "Traceback" not in err
    records = parse_records(out / "results.jsonl")
    assert [r.status for r in records] == ["failed", "ok", "ok", "ok"]  # onnx, tflite × batch 1, 8
    assert records[0].error.startswith("harness error while measuring: ZeroDivisionError: float division by zero")
    assert (out / "index.html").is_file()


def _session_side(rounds: list[float]):
    r = job([1.0, 1.1, 0.9, 1.2] * 10)
    return dataclasses.replace(r, context={"ab": {"session": "s1", "pairs": len(rounds)}}, measurements=(
        *r.measurements, Measurement("latency_round_medians", float(np.median(rounds)), "ms", "perf_counter",
                                     samples=tuple(rounds))))


def test_a_session_round_of_zero_is_reported_not_a_traceback(tmp_path):
    base, cand = tmp_path / "base.jsonl", tmp_path / "cand.jsonl"
    ResultsStore(base).append(_session_side([1.0, 0.0, 1.1, 1.0, 1.0, 1.0]))
    ResultsStore(cand).append(_session_side([1.0, 1.0, 1.1, 1.0, 1.2, 1.0]))
    code, err = cli("compare", str(base), str(cand))
    assert code == 0, err
    code, err = cli("gate", "--baseline", str(base), "--candidate", str(cand), "--markdown", str(tmp_path / "m"))
    assert code == 0, err
    from harness.analysis.compare import compare_runs

    comparisons, _ = compare_runs(parse_records(base), parse_records(cand), ["latency_p50"])
    assert comparisons[0].note == "a round's statistic is 0: no ratio, not tested"


def test_a_run_whose_latencies_are_all_zero_still_reports(tmp_path):
    path = tmp_path / "results.jsonl"
    zero = job([0.0] * 8)
    ResultsStore(path).append(zero)
    ResultsStore(path).append(dataclasses.replace(zero, variant="fp16", job_key="k2"))
    code, err = cli("report", str(path))
    assert code == 0, err
    assert (tmp_path / "index.html").is_file()
