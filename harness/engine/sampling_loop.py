"""A denoiser's whole sampling loop as one inference, so the harness's one timing loop (warm-up, stopping rule,
statistics) measures time per generated image end to end: every step calls the runtime adapter's ``infer`` and
``sync`` on the same loaded artifact, and the sampler's own arithmetic (numpy) runs between steps, as it would in
the user's application; a latent diffusion's decoder (a second adapter of the same runtime) turns the final latents
into images. Each step's time (denoiser call, sync and the copy of its output to the host) and the decoder's are
kept, so a loop's time splits into its steps, the decoder and the sampler's overhead.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness.diffusion import Sampler, sample

NOISE_INPUT = "noise"
"""The loop's input: the initial noise x_T (float32, the denoiser's image shape with the batch)."""
ROW_INPUT = "row"
"""And each image's row in its sample set (int64; seeds DDPM's per-image noise)."""
CONDITION_PREFIX = "condition:"
"""And a conditional denoiser's conditioning, each image's own (``condition:<input name>``), at every step."""


class SamplingLoop:
    """``load / infer / sync`` over a runtime adapter: ``infer({"noise": x_T})`` runs every step and returns
    the generated images. The timestep goes to the denoiser as ``time_dtype`` (its input's own type). ``loops``
    holds, per ``infer`` call, each step's time in ns; ``decodes`` the decoder's (``decoder``: a runtime adapter,
    fed the final latents as its input ``decoder_input``; its artifact is ``load``'s second)."""

    def __init__(self, runtime: Any, sampler: Sampler, input_names: Sequence[str], time_dtype: str = "float32",
                 clock: Callable[[], int] = time.perf_counter_ns, decoder: Any = None,
                 decoder_input: str = "", decoder_artifact: Any = None) -> None:
        self.conditioning = sampler.conditioning_inputs(list(input_names))
        self.runtime, self.sampler, self.input_names, self.clock = runtime, sampler, list(input_names), clock
        self.time_dtype = np.dtype(time_dtype)
        if decoder is not None and not decoder_input:
            raise ValueError("a sampling loop's decoder needs the name of its input")
        self.decoder, self.decoder_input, self.decoder_artifact = decoder, decoder_input, decoder_artifact
        self.loops: list[list[int]] = []
        self.decodes: list[int] = []

    def load(self, artifact: Any) -> None:
        """The denoiser's artifact, then the decoder's (both count as the loop's load)."""
        self.runtime.load(artifact)
        if self.decoder is not None:
            self.decoder.load(self.decoder_artifact)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        steps: list[int] = []
        runtime, clock = self.runtime, self.clock
        image, time_input = self.sampler.image_input, self.sampler.time_input

        condition = conditioning(inputs, self.conditioning)

        def denoise(x: np.ndarray, t: np.ndarray) -> np.ndarray:
            start = clock()
            values = {image: x, time_input: t.astype(self.time_dtype), **condition}
            out = runtime.infer({name: values[name] for name in self.input_names})
            runtime.sync()
            eps = np.asarray(out[0])
            steps.append(clock() - start)
            return eps

        images = sample(denoise, self.sampler, np.asarray(inputs[NOISE_INPUT]), rows=inputs.get(ROW_INPUT))
        self.loops.append(steps)
        if self.decoder is not None:
            start = clock()
            out = self.decoder.infer({self.decoder_input: images})
            self.decoder.sync()
            images = np.asarray(out[0])
            self.decodes.append(clock() - start)
        return [images]

    def sync(self) -> None:
        """Every step already waited for its output (the next step needs it)."""


def conditioning(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """A loop input's conditioning arrays by the denoiser's input names (``CONDITION_PREFIX`` keys); a KeyError
    naming the one a loop's inputs lack."""
    missing = [n for n in names if CONDITION_PREFIX + n not in inputs]
    if missing:
        raise KeyError(f"the loop's inputs carry no conditioning for {', '.join(map(repr, missing))}: prepare the "
                       "model again with this harness")
    return {n: np.asarray(inputs[CONDITION_PREFIX + n]) for n in names}
