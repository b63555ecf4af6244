"""The command line as a user runs it: real processes, real exit codes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.config.paths import PROJECT_ROOT


def harness(*args, env=None, timeout=600):
    """``python -m harness ARGS`` from the checkout. A ``run`` without ``--suite`` runs ``suites/full.toml`` (batch 1
    and 8, every variant: what these tests were written against), not the smaller default suite."""
    if args[:1] == ("run",) and "--suite" not in args:
        args = (*args, "--suite", "full")
    full_env = dict(os.environ) | (env or {})
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT, env=full_env)


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["report"], ["compare"], ["gate"], ["sweep"], ["ab"],
                                     ["history"], ["node"]])
def test_help_for_every_command(command):
    proc = harness(*command, "--help")
    assert proc.returncode == 0 and "usage: harness" in proc.stdout


def test_list_models_and_targets():
    models = harness("list", "models")
    assert models.returncode == 0
    for name in ("mlp_gan", "dcgan", "vae_decoder", "unet_denoiser"):
        assert name in models.stdout
    targets = harness("list", "targets")
    assert targets.returncode == 0 and "x86-cpu" in targets.stdout


def test_a_dropped_model_file_is_discovered(tmp_path, tiny_models_dir):
    (tmp_path / "mine.py").write_text((tiny_models_dir / "tiny_gen.py").read_text().replace('"tiny_gen"', '"mine"'))
    proc = harness("list", "models", env={"EDGE_HARNESS_MODELS": str(tmp_path)})
    assert proc.returncode == 0 and "mine" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--variant", "none", "--target", "mars-rover"], "unknown target 'mars-rover'"),
    (["run", "--variant", "none", "--model", "nope"], "unknown model 'nope'"),
    (["report", "does/not/exist.jsonl"], "results file not found"),
])
def test_input_errors_exit_2_with_one_line(args, message):
    proc = harness(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_model_name_defined_twice_is_exit_2(tmp_path, tiny_models_dir):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text((tiny_models_dir / "tiny_gen.py").read_text())
    proc = harness("list", "models", env={"EDGE_HARNESS_MODELS": str(tmp_path)})
    assert proc.returncode == 2 and "'tiny_gen' is already defined in" in proc.stderr


def test_usage_error_exits_2():
    assert harness("run", "--no-such-flag").returncode == 2
    assert harness("list", "gpus").returncode == 2


def test_model_file_without_generator_is_exit_2(tmp_path):
    (tmp_path / "empty.py").write_text("x = 1\n")
    proc = harness("list", "models", env={"EDGE_HARNESS_MODELS": str(tmp_path)})
    assert proc.returncode == 2 and "defines no generator" in proc.stderr and "empty.py" in proc.stderr


def test_bad_suite_file_is_exit_2_and_debug_shows_traceback(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text("formats = [\n")
    proc = harness("run", "--suite", str(suite))
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr and "Traceback" not in proc.stderr
    assert "Traceback" in harness("--debug", "run", "--suite", str(suite)).stderr


@pytest.mark.slow
def test_run_writes_results_csv_and_html_then_report_regenerates(tmp_path, tiny_models_dir, shared_cache):
    out = tmp_path / "run"
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir)}
    proc = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--out", str(out), "--cache", str(shared_cache), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "results.jsonl")
    for name in ("results.jsonl", "results.csv", "summary.csv", "index.html"):
        assert (out / name).is_file()
    assert "8 ok" in proc.stderr  # torch, onnx, tflite, executorch × batch 1 and 8
    again = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--out", str(out), "--cache", str(shared_cache),
                    "--resume", env=env)
    assert again.returncode == 0 and "8 already done" in again.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == 8  # nothing measured twice
    (out / "index.html").unlink()
    rep = harness("report", str(out), "--out", str(tmp_path / "again"))
    assert rep.returncode == 0 and (tmp_path / "again" / "index.html").is_file()


@pytest.mark.slow
def test_run_exits_1_when_a_job_fails(tmp_path, diverging_models_dir, shared_cache):
    env = {"EDGE_HARNESS_MODELS": str(diverging_models_dir)}
    proc = harness("run", "--variant", "none", "--model", "diverging_gen", "--quick", "--out", str(tmp_path / "run"),
                   "--cache", str(shared_cache), "--format", "torch", "--format", "onnx", env=env)
    assert proc.returncode == 1
    assert proc.stdout.strip() == str(tmp_path / "run" / "results.jsonl")  # stdout: the results path only
    assert "failed" in proc.stderr and "exceeds tolerance" in proc.stderr
    assert (tmp_path / "run" / "index.html").is_file()  # the report is still written
