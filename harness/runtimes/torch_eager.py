"""PyTorch eager: rebuild the generator from its model file (compressed variants in their compressed shape),
load the saved state_dict."""
from __future__ import annotations

import importlib.util
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.registry import RUNTIMES
from harness.types import Artifact

if TYPE_CHECKING:
    import numpy as np


@RUNTIMES.register("torch")
class TorchEagerRuntime:
    name = "torch"
    no_start_cache = "none: PyTorch eager keeps no start-up cache (its import is a part of its own)"
    formats = ("torch",)

    def __init__(self, options: Any) -> None:
        self.options = options
        self._model: Any = None
        self._torch: Any = None

    @staticmethod
    def versions() -> dict[str, str]:
        return {"torch": version("torch")}

    @staticmethod
    def missing() -> str | None:
        return None if importlib.util.find_spec("torch") else "python package 'torch' is not installed"

    @staticmethod
    def preload() -> None:
        import torch  # noqa: F401

    def load(self, artifact: Artifact) -> None:
        import torch

        from harness.prepare.torch_model import load_torch_artifact

        self._torch = torch
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        torch.set_grad_enabled(False)
        self._model = load_torch_artifact(artifact)

    @property
    def model(self) -> Any:
        """The loaded ``nn.Module`` (intermediate outputs are read through hooks on it)."""
        return self._model

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        out = self._model(*(self._torch.from_numpy(a) for a in inputs.values()))
        return [out.numpy()]

    def sync(self) -> None:
        """CPU execution is synchronous: nothing to wait for."""
