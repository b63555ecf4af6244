"""A denoiser's whole sampling loop as one inference, so the harness's one timing loop (warm-up, stopping rule,
statistics) measures time per generated image end to end: every step calls the runtime adapter's ``infer`` and
``sync`` on the same loaded artifact, and the sampler's own arithmetic (numpy) runs between steps, as it would in
the user's application. Each step's time (denoiser call, sync and the copy of its output to the host) is kept,
so a loop's time splits into its steps and the sampler's overhead.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness.sampling import Sampler, sample

NOISE_INPUT = "noise"
"""The loop's input: the initial noise x_T (float32, the denoiser's image shape with the batch)."""
ROW_INPUT = "row"
"""And each image's row in its sample set (int64; seeds DDPM's per-image noise)."""


class SamplingLoop:
    """``load / infer / sync`` over a runtime adapter: ``infer({"noise": x_T})`` runs every step and returns
    the generated images. The timestep goes to the denoiser as ``time_dtype`` (its input's own type). ``loops`` holds, per ``infer`` call, each step's time in ns."""

    def __init__(self, runtime: Any, sampler: Sampler, input_names: Sequence[str], time_dtype: str = "float32",
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        if set(input_names) != {sampler.image_input, sampler.time_input}:
            raise ValueError(f"the sampler's inputs ({sampler.image_input!r}, {sampler.time_input!r}) are not the "
                             f"denoiser's ({', '.join(map(repr, input_names))})")
        self.runtime, self.sampler, self.input_names, self.clock = runtime, sampler, list(input_names), clock
        self.time_dtype = np.dtype(time_dtype)
        self.loops: list[list[int]] = []

    def load(self, artifact: Any) -> None:
        self.runtime.load(artifact)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        steps: list[int] = []
        runtime, clock = self.runtime, self.clock
        image, time_input = self.sampler.image_input, self.sampler.time_input

        def denoise(x: np.ndarray, t: np.ndarray) -> np.ndarray:
            start = clock()
            values = {image: x, time_input: t.astype(self.time_dtype)}
            out = runtime.infer({name: values[name] for name in self.input_names})
            runtime.sync()
            eps = np.asarray(out[0])
            steps.append(clock() - start)
            return eps

        images = sample(denoise, self.sampler, np.asarray(inputs[NOISE_INPUT]), rows=inputs.get(ROW_INPUT))
        self.loops.append(steps)
        return [images]

    def sync(self) -> None:
        """Every step already waited for its output (the next step needs it)."""
