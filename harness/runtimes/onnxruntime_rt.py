"""ONNX Runtime adapter: CPU execution provider, graph optimisation level, intra-op threads."""
from __future__ import annotations

import importlib.util
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.errors import HarnessInputError
from harness.registry import RUNTIMES
from harness.types import Artifact

if TYPE_CHECKING:
    import numpy as np

GRAPH_LEVELS = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")
"""ONNX Runtime's execution modes: one node at a time (each on the intra-op threads), or independent branches of
the graph at once (on inter-op threads as well)."""


@RUNTIMES.register("onnxruntime")
class OnnxRuntime:
    name = "onnxruntime"
    formats = ("onnx",)

    def __init__(self, options: Any) -> None:
        if options.graph_optimization not in GRAPH_LEVELS:
            raise HarnessInputError(
                f"onnx graph optimisation {options.graph_optimization!r} is not one of {GRAPH_LEVELS}"
            )
        if options.onnx_execution_mode not in EXECUTION_MODES:
            raise HarnessInputError(
                f"onnx execution mode {options.onnx_execution_mode!r} is not one of {EXECUTION_MODES}")
        self.options = options
        self._session: Any = None

    @staticmethod
    def versions() -> dict[str, str]:
        return {"onnxruntime": version("onnxruntime")}

    @staticmethod
    def missing() -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "python package 'onnxruntime' is not installed"
        return None

    @staticmethod
    def preload() -> None:
        import onnxruntime  # noqa: F401

    def session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.options.graph_optimization]
        if self.options.threads:
            so.intra_op_num_threads = self.options.threads
        if self.options.onnx_execution_mode == "parallel":
            so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            if self.options.threads:
                so.inter_op_num_threads = self.options.threads
        return so

    def load(self, artifact: Artifact) -> None:
        import onnxruntime as ort

        options, path = self.session_options(), artifact.path
        if self.options.cache_dir and self.options.graph_optimization != "disable":
            options, path = self._start_cache(options, artifact)
        self._session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    start_cache = ""
    """What the last ``load`` did with the start-up cache ('' = none used)."""

    def _start_cache(self, options: Any, artifact: Artifact) -> tuple[Any, str]:
        """ONNX Runtime's own start-up cache: the graph as optimised for this machine, saved on the first load
        (``SessionOptions.optimized_model_filepath``) and loaded by the next with graph optimisation off (the work
        is already in the file). Valid on the machine that wrote it only: the folder is that machine's."""
        import onnxruntime as ort

        from pathlib import Path

        key = (artifact.sha256 or Path(artifact.path).stem)[:16]
        saved = Path(self.options.cache_dir) / f"{key}-{self.options.graph_optimization}.optimized.onnx"
        if saved.is_file():
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self.start_cache = "read: ONNX Runtime's saved optimised model (graph optimisation not run again)"
            return options, str(saved)
        options.optimized_model_filepath = str(saved)
        self.start_cache = "written: ONNX Runtime optimised the graph and saved it (optimized_model_filepath)"
        return options, artifact.path

    @property
    def session(self) -> Any:
        """The loaded ``InferenceSession`` (the op profiler ends its profiling through it)."""
        return self._session

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self._session.run(None, inputs)

    def sync(self) -> None:
        """The CPU execution provider returns only when outputs are ready: nothing to wait for."""
