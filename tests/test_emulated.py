"""The emulated arm64 target: artifacts load and agree with PyTorch on aarch64 under qemu-user, and every
measurement from it is labelled emulated. Needs the rootfs from scripts/arm64-rootfs.sh (CI builds it)."""
from __future__ import annotations

import shutil

import pytest

from harness.launch.emulated import EmulatedLauncher
from harness.config.paths import targets_dir
from harness.results.store import read_records
from harness.config.targets import get_target
from tests.test_cli import harness

pytestmark = pytest.mark.slow


def test_without_the_rootfs_the_target_is_unsupported_and_says_how_to_build_it(tmp_path, tiny_models_dir,
                                                                              shared_cache):
    targets = tmp_path / "targets"
    targets.mkdir()
    text = (targets_dir() / "rpi4-emulated.toml").read_text().replace(
        "# rootfs = ", f'rootfs = "{tmp_path / "no-rootfs"}"\n# was: ')
    (targets / "rpi4-emulated.toml").write_text(text)
    shutil.copy(targets_dir() / "x86-cpu.toml", targets)
    out = tmp_path / "run"
    proc = harness("run", "--variant", "none", "--target", "rpi4-emulated", "--target", "x86-cpu", "--model", "tiny_gen", "--format",
                   "onnx", "--quick", "--out", str(out), "--cache", str(shared_cache),
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)})
    assert proc.returncode == 0, proc.stderr
    records = read_records(out / "results.jsonl")
    emulated = [r for r in records if r.target == "rpi4-emulated"]
    assert emulated and all(r.status == "unsupported" and "scripts/arm64-rootfs.sh" in r.error for r in emulated)
    assert {r.status for r in records if r.target == "x86-cpu"} == {"ok"}


def rootfs_ready() -> str | None:
    return EmulatedLauncher(get_target(targets_dir(), "rpi4-emulated").emulated).missing()


def test_artifacts_load_and_agree_on_aarch64_and_are_labelled_emulated(tmp_path, tiny_models_dir, shared_cache):
    why = rootfs_ready()
    if why:
        pytest.skip(why)
    out = tmp_path / "run"
    proc = harness("run", "--variant", "none", "--target", "rpi4-emulated", "--model", "tiny_gen", "--format", "onnx", "--format",
                   "tflite", "--format", "executorch", "--quick", "--out", str(out), "--cache", str(shared_cache),
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    assert proc.returncode == 0, proc.stderr
    records = read_records(out / "results.jsonl")
    # The rootfs has no torch (PyPI's aarch64 torch is a CUDA build): ExecuTorch is unsupported there, by name.
    unsupported = [r for r in records if r.runtime == "executorch"]
    assert unsupported and all(r.status == "unsupported" and "'executorch'" in r.error for r in unsupported)
    records = [r for r in records if r.runtime != "executorch"]
    assert {(r.runtime, r.status) for r in records} == {("onnxruntime", "ok"), ("litert", "ok")}
    for r in records:
        assert r.context["machine"] == "aarch64" and r.context["emulated"] is True
        assert r.context["cpu_model"] == "Raspberry Pi 4 Model B Rev 1.4"  # the fake cpuinfo the board sees
        # agrees with PyTorch on the x86 host within the export tolerance, over the 256-sample fidelity set
        assert r.measurement("max_abs_error").value <= 1e-4
        for metric in ("latency", "load_time", "first_inference", "throughput", "peak_rss"):
            m = r.measurement(metric)
            assert m.method.endswith("+emulated") and "never a latency claim" in m.note
        assert r.context["fit"]["basis"] == "measured under emulation"  # qemu's own memory is in the peak
    from harness.analysis.fit import fit_of

    for r in unsupported:  # never ran, and ExecuTorch ran nowhere in this run: its memory is unknown, its file fits
        estimate = fit_of(r, read_records(out / "results.jsonl"))
        assert estimate.basis.startswith("estimate: file size only") and estimate.verdict == "unknown"
    import pandas as pd

    tidy = pd.read_csv(out / "results.csv")
    timings = tidy[tidy["metric"].isin(["latency", "load_time", "first_inference", "throughput"])]
    assert len(timings) == 4 * len(records) and timings["method"].str.endswith("+emulated").all()  # the CSV view keeps the label
