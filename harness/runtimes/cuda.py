"""CUDA adapters: PyTorch eager on the GPU and ONNX Runtime's CUDA execution provider (TensorRT EP first when
present). Without a usable GPU, ``missing()`` says so and the job is recorded ``unsupported``.

Timing stays in the harness's loop: ``sync()`` waits for the GPU (torch.cuda.synchronize), so each
perf_counter sample covers the whole inference, host↔device copies included. PyTorch on the GPU also
declares the stream it computes on, so the loop brackets each call with CUDA events (``gpu_latency``);
ONNX Runtime's CUDA EP computes on its own stream and keeps host timing only.
"""
from __future__ import annotations

import importlib.util
from importlib.metadata import version
from typing import TYPE_CHECKING, Mapping, Sequence

from harness.registry import RUNTIMES
from harness.runtimes.onnxruntime_rt import OnnxRuntime
from harness.runtimes.torch_eager import TorchEagerRuntime
from harness.types import Artifact

if TYPE_CHECKING:
    import numpy as np


def no_cuda_reason() -> str | None:
    """None when torch sees a CUDA device, else why not."""
    if importlib.util.find_spec("torch") is None:
        return "python package 'torch' is not installed"
    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda
        return "no CUDA device" + ("" if built else " (this torch is a CPU-only build)")
    return None


@RUNTIMES.register("torch-cuda")
class TorchCudaRuntime(TorchEagerRuntime):
    name = "torch-cuda"
    formats = ("torch",)
    device = "cuda"
    event_stream = "torch-current"  # harness.engine.device_timing: CUDA events on this stream bracket its work

    @staticmethod
    def versions() -> dict[str, str]:
        import torch

        return {"torch": version("torch"), "cuda": str(torch.version.cuda)}

    @staticmethod
    def missing() -> str | None:
        return no_cuda_reason()

    def load(self, artifact: Artifact) -> None:
        import torch

        # fp32 means fp32: cuDNN's default TF32 convolutions on Ampere and newer drift by ~3e-4 at batch 64 (seen on
        # an H100), past the harness's export tolerance, and would mix a precision change into an fp32 figure.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        super().load(artifact)
        self._model = self._model.to("cuda")

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        torch = self._torch
        out = self._model(*(torch.from_numpy(a).to("cuda", non_blocking=True) for a in inputs.values()))
        return [out.cpu().numpy()]

    def sync(self) -> None:
        self._torch.cuda.synchronize()


@RUNTIMES.register("onnxruntime-cuda")
class OnnxRuntimeCuda(OnnxRuntime):
    name = "onnxruntime-cuda"
    formats = ("onnx",)
    device = "cuda"

    @staticmethod
    def missing() -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "python package 'onnxruntime-gpu' is not installed"
        import onnxruntime as ort

        available = ort.get_available_providers()
        if "CUDAExecutionProvider" in available:
            return None
        no_ep = (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (its providers: "
                 f"{', '.join(available)}): install onnxruntime-gpu")
        no_device = no_cuda_reason()
        return f"{no_device}; {no_ep}" if no_device else no_ep

    def load(self, artifact: Artifact) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        self._session = ort.InferenceSession(artifact.path, sess_options=self.session_options(),
                                             providers=providers + ["CPUExecutionProvider"])
        if self._session.get_providers()[0] not in providers:
            raise RuntimeError(f"CUDA execution provider failed to initialise (got {self._session.get_providers()})")
