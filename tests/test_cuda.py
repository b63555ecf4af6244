"""The CUDA target: without a GPU its jobs are `unsupported: no CUDA device` and other targets still run;
with one (e.g. on a lent GPU machine) its runtimes measure and agree with PyTorch on the CPU."""
from __future__ import annotations

import pytest
import torch

from harness.results.store import read_records
from tests.test_cli import harness

pytestmark = pytest.mark.slow
HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present: the no-GPU path does not apply")
def test_without_a_gpu_cuda_jobs_are_unsupported_and_the_cpu_still_runs(tmp_path, tiny_models_dir, shared_cache):
    out = tmp_path / "run"
    proc = harness("run", "--variant", "none", "--target", "cuda-gpu", "--target", "x86-cpu", "--model", "tiny_gen", "--format", "torch",
                   "--format", "onnx", "--quick", "--out", str(out), "--cache", str(shared_cache),
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    assert proc.returncode == 0, proc.stderr  # unsupported is not a failure
    records = read_records(out / "results.jsonl")
    gpu = [r for r in records if r.target == "cuda-gpu"]
    assert {r.runtime for r in gpu} == {"torch-cuda", "onnxruntime-cuda"}
    assert all(r.status == "unsupported" and "no CUDA device" in r.error for r in gpu)
    assert {r.status for r in records if r.target == "x86-cpu"} == {"ok"}


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_runtimes_measure_on_the_gpu(tmp_path, tiny_models_dir, shared_cache):
    out = tmp_path / "run"
    proc = harness("run", "--variant", "none", "--target", "cuda-gpu", "--model", "tiny_gen", "--format", "torch", "--format", "onnx",
                   "--quick", "--out", str(out), "--cache", str(shared_cache), env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    records = read_records(out / "results.jsonl")
    torch_gpu = [r for r in records if r.runtime == "torch-cuda"]
    assert torch_gpu and all(r.status == "ok" for r in torch_gpu), proc.stderr
    for r in torch_gpu:
        assert r.measurement("max_abs_error").value < 1e-4
        host, gpu = r.measurement("latency"), r.measurement("gpu_latency")
        assert gpu is not None and gpu.method == "cuda-event" and len(gpu.samples) == len(host.samples)
        assert 0 < gpu.value <= host.value * 1.05  # the device sees part of the host-timed call, not more
        assert r.measurement("gpu_memory").value > 0
        energy = r.measurement("energy_per_inference")
        if energy is not None:  # NVML energy needs a Volta or newer GPU and a driver that exposes it
            assert energy.method == "nvml" and energy.value > 0
    ort_gpu = [r for r in records if r.runtime == "onnxruntime-cuda"]
    for r in ort_gpu:  # ok with onnxruntime-gpu installed; otherwise unsupported, naming the missing package
        assert r.status == "ok" or (r.status == "unsupported" and "onnxruntime-gpu" in r.error), r.error
        assert r.measurement("gpu_latency") is None  # its own stream: host timing only


def test_every_shipped_model_runs_wholly_on_the_device_of_its_inputs():
    """A tensor made inside forward() without ``device=`` lands on the CPU and breaks the model on a GPU (the lent
    H100 caught this in the UNet's timestep embedding). The meta device shows it without a GPU: mixing meta and
    CPU tensors raises the same error."""
    from harness.config.paths import models_dir
    from harness.zoo import discover, get_model

    for name in discover(models_dir()):
        spec = get_model(name)
        model = spec.builder(**spec.builder_kwargs).to("meta").eval()
        inputs = [torch.from_numpy(a).to("meta") for a in spec.make_inputs(2, 0).values()]
        with torch.no_grad():
            out = model(*inputs)
        assert out.device.type == "meta", name
