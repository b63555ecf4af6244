"""SSH targets against a real sshd on 127.0.0.1: the worker runs on the "board" from an uploaded bundle."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from harness.config.paths import targets_dir
from harness.results.store import read_records
from tests.sshd import Sshd, keygen, require_sshd
from tests.test_cli import harness

pytestmark = pytest.mark.slow


@pytest.fixture
def sshd(tmp_path):
    require_sshd()
    folder = tmp_path / "sshd"
    folder.mkdir()
    server = Sshd(folder).start()
    yield server
    server.stop()


def targets_with(tmp_path, **tomls):
    folder = tmp_path / "targets"
    folder.mkdir(exist_ok=True)
    shutil.copy(targets_dir() / "x86-cpu.toml", folder)
    for name, text in tomls.items():
        (folder / f"{name}.toml").write_text(text)
    return folder


def run_on(targets, tmp_path, tiny_models_dir, shared_cache, *target_names, out="run"):
    args = ["run", "--variant", "none", "--model", "tiny_gen", "--format", "onnx", "--format", "tflite", "--quick", "--no-progress",
            "--out", str(tmp_path / out), "--cache", str(shared_cache)]
    for name in target_names:
        args += ["--target", name]
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)}
    return harness(*args, env=env)


def test_ssh_target_runs_the_uploaded_worker_beside_the_local_cpu(sshd, tmp_path, tiny_models_dir, shared_cache):
    board = tmp_path / "board"
    targets = targets_with(tmp_path, board=sshd.target_toml("board", sys.executable, board))
    proc = run_on(targets, tmp_path, tiny_models_dir, shared_cache, "board", "x86-cpu")
    assert proc.returncode == 0, proc.stderr
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert {(r.target, r.runtime, r.status) for r in records} == {
        (t, rt, "ok") for t in ("board", "x86-cpu") for rt in ("onnxruntime", "litert")}
    for r in (r for r in records if r.target == "board"):
        assert r.context["launcher"] == f"ssh root@127.0.0.1:{sshd.port}"
        # outputs came back over SFTP: within the export tolerance over the 256-sample fidelity set
        assert r.measurement("max_abs_error").value < 1e-4
        assert r.measurement("latency").stats["n"] >= 5
    assert len(list(board.glob("worker-*.zip"))) == 1  # the self-contained worker bundle
    key_material = sshd.identity.read_text().splitlines()[1]
    for written in ("results.jsonl", "results.csv", "summary.csv", "index.html"):
        text = (tmp_path / "run" / written).read_text()
        assert str(sshd.identity) not in text and key_material not in text  # no credentials in results
    assert len(records) == 8  # 2 targets × 2 formats × batch 1 and 8
    assert len(list(board.glob("artifacts/*/model.*"))) == 4  # uploaded once each, content-addressed


def test_an_untrusted_host_key_is_refused_not_accepted(sshd, tmp_path, tiny_models_dir, shared_cache):
    keygen(tmp_path / "other")
    other = (tmp_path / "other.pub").read_text().split()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    targets = targets_with(tmp_path, changed=sshd.target_toml("changed", sys.executable, tmp_path / "b", known_hosts=wrong),
                           unknown=sshd.target_toml("unknown", sys.executable, tmp_path / "b", known_hosts=empty))
    proc = run_on(targets, tmp_path, tiny_models_dir, shared_cache, "changed", "unknown", "x86-cpu")
    assert proc.returncode == 1
    records = read_records(tmp_path / "run" / "results.jsonl")
    for r in records:
        if r.target == "x86-cpu":
            assert r.status == "ok"
        else:
            assert r.status == "unreachable" and "is not trusted" in r.error, r.error
    assert not (tmp_path / "b").exists()  # nothing was uploaded to a host we do not trust


def test_board_check_says_exactly_what_is_missing(sshd, tmp_path, tiny_models_dir, shared_cache):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    targets = targets_with(tmp_path, bare=sshd.target_toml("bare", str(bare / "bin" / "python"), tmp_path / "b"))
    proc = run_on(targets, tmp_path, tiny_models_dir, shared_cache, "bare")
    assert proc.returncode == 0  # unsupported is not a failure of the suite
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert {r.status for r in records} == {"unsupported"}
    assert all("the worker needs python packages numpy, psutil" in r.error for r in records)
    assert all(str(bare / "bin" / "python") in r.error for r in records)


def test_a_board_that_drops_mid_suite_is_marked_and_the_rest_goes_on(sshd, tmp_path, tiny_models_dir, shared_cache):
    import os

    fit = '[fit]\nmemory_mb = 2048\nstorage_mb = 64\nsource = "a 2 GB board"\n'
    targets = targets_with(tmp_path, board=sshd.target_toml("board", sys.executable, tmp_path / "board") + fit)
    out = tmp_path / "run"
    env = dict(os.environ) | {"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", "full", "--variant", "none", "--model", "tiny_gen", "--format", "onnx",
                             "--format", "tflite", "--quick", "--no-progress", "--out", str(out), "--cache",
                             str(shared_cache), "--target", "board", "--target", "x86-cpu"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while not (results.is_file() and results.read_text().strip()):  # the first board job is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    sshd.stop()  # the board vanishes
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    records = read_records(results)
    assert len(records) == 8  # every job has a record
    by = {(r.target, r.format, r.batch_size): r for r in records}
    assert by[("board", "onnx", 1)].status == "ok"  # measured before the board vanished: kept
    later = [r for r in records if r.target == "board" and r.job_key != by[("board", "onnx", 1)].job_key]
    assert {r.status for r in later} == {"unreachable"}
    assert "since an earlier job of this run" in later[-1].error  # given up on, not retried for every job
    assert {r.status for r in records if r.target == "x86-cpu"} == {"ok"}
    # will it fit: measured on the board while it was there; estimated from this machine's jobs once it was gone
    from harness.analysis.fit import fit_of

    measured = fit_of(by[("board", "onnx", 1)])
    assert measured.basis == "measured" and measured.verdict == "fits" and measured.memory_budget_mb == 2048
    assert measured.memory_mb == by[("board", "onnx", 1)].measurement("peak_rss").value / 2**20
    for r in later:
        estimate = fit_of(r, records)
        assert estimate.estimated and estimate.verdict == "fits", (r.job_key, estimate)
        # the runtime's base from the board itself where it ran there before dropping (ONNX Runtime), else this machine
        assert f"base footprint measured on {'board' if r.runtime == 'onnxruntime' else 'x86-cpu'} +" in estimate.basis
        assert "this artifact's measured peak over its runtime's base on x86-cpu" in estimate.basis
    assert "Will it fit" in (out / "index.html").read_text() and "(estimate)" in (out / "index.html").read_text()


def test_a_latent_diffusions_decoder_is_staged_on_the_board_beside_its_denoiser(sshd, tmp_path, shared_cache):
    from pathlib import Path

    board = tmp_path / "board"
    targets = targets_with(tmp_path, board=sshd.target_toml("board", sys.executable, board))
    env = {"EDGE_HARNESS_MODELS": str(Path(__file__).parent / "fixtures" / "latent"),
           "EDGE_HARNESS_TARGETS": str(targets)}
    proc = harness("run", "--variant", "none", "--model", "tiny_latent", "--format", "onnx", "--quick", "--no-progress", "--target", "board", "--out", str(tmp_path / "run"),
                   "--cache", str(shared_cache), env=env)
    assert proc.returncode == 0, proc.stderr
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert len(records) == 2 and {r.status for r in records} == {"ok"}, [r.error for r in records]  # batch 1 and 8
    for record in records:
        assert record.context["launcher"] == f"ssh root@127.0.0.1:{sshd.port}"
        assert record.measurement("loop_decode_latency").value > 0
        assert record.measurement("loop_psnr").value > 80  # denoiser and decoder both ran on the board
    assert len(list(board.glob("artifacts/*/*.onnx"))) == 4  # denoiser and decoder, per batch, content-addressed


def test_executorch_runs_on_a_board_from_an_uploaded_pte(sshd, tmp_path, tiny_models_dir, shared_cache):
    """The board's Python has executorch (the harness's own venv here): the .pte goes up over SFTP and the same
    worker runs it there through ExecuTorch's runtime."""
    board = tmp_path / "board"
    targets = targets_with(tmp_path, board=sshd.target_toml("board", sys.executable, board, runtimes=("executorch",)))
    proc = harness("run", "--variant", "none", "--model", "tiny_gen", "--format", "executorch", "--quick", "--no-progress",
                   "--target", "board", "--out", str(tmp_path / "run"), "--cache", str(shared_cache),
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)})
    assert proc.returncode == 0, proc.stderr
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert {(r.target, r.runtime, r.status) for r in records} == {("board", "executorch", "ok")}
    for r in records:
        assert r.context["launcher"].startswith("ssh ") and r.context["runtime_versions"]["executorch"]
        assert r.measurement("max_abs_error").value < 1e-4
    assert len(list(board.glob("artifacts/*/model.pte"))) == 2  # batch 1 and 8, uploaded once each


def test_start_sustained_and_energy_per_image_are_measured_on_the_board(sshd, tmp_path, tiny_models_dir,
                                                                          shared_cache):
    """The start pass's fresh workers run on the board: its copy of the file is dropped from its page cache, and
    ONNX Runtime's start-up cache is written and read back there. The sustained pass's windows and the energy
    window's J per generated image come from the board's worker too."""
    from tests.helpers import QUICK_SETTINGS_TOML, memory_backed

    board = tmp_path / "board"
    targets = targets_with(tmp_path, board=sshd.target_toml("board", sys.executable, board, energy=True))
    suite = tmp_path / "suite.toml"
    suite.write_text('models = ["tiny_gen"]\ntargets = ["board"]\nformats = ["onnx"]\nbatch_sizes = [2]\n'
                     + QUICK_SETTINGS_TOML.replace("start_runs = 0", "start_runs = 1") + "sustained_window_s = 0.5\n")
    proc = harness("run", "--suite", str(suite), "--sustained", "1.5", "--out", str(tmp_path / "run"),
                   "--cache", str(shared_cache), "--no-progress",
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)})
    assert proc.returncode == 0, proc.stderr
    (record,) = read_records(tmp_path / "run" / "results.jsonl")
    sustained = record.context["sustained"]
    assert sustained["duration_s"] == 1.5 and 1 <= len(sustained["windows"]) <= 3  # 3 unless a call stalls
    assert all(w["n"] > 0 and w["p50_ms"] > 0 and w["joules_per_inference"] > 0 for w in sustained["windows"])
    assert record.measurement("sustained_latency").samples and record.measurement("sustained_ratio").value > 0
    assert record.context["pass_seconds"]["sustained"] >= 1.25  # a last window under half its length is dropped
    per_inference = {m.method: m.value for m in record.measurements if m.metric == "energy_per_inference"}
    per_image = {m.method: m.value for m in record.measurements if m.metric == "energy_per_image"}
    assert set(per_image) == set(per_inference) == {"modelled"}  # the board's one energy source
    for method, joules in per_image.items():  # a batch of 2 images per inference
        assert joules == pytest.approx(per_inference[method] / 2)
    assert record.status == "ok" and record.context["launcher"] == f"ssh root@127.0.0.1:{sshd.port}"
    for kind in ("cold", "warm"):
        assert len(record.measurement(f"{kind}_start").samples) == 1
    start = record.context["start"]
    assert start["cold"]["cache"].startswith("written: ") and start["warm"]["cache"].startswith("read: ")
    dropped = "not fully dropped: " if memory_backed(board) else "dropped: 0 of"  # tmpfs keeps its pages
    assert start["cold"]["page_cache"][0].startswith(dropped)
