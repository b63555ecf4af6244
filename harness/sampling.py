"""The old name of ``harness.diffusion`` (the diffusion samplers), kept so that model files written against it still
import: ``harness.sampling`` *is* the ``harness.diffusion`` module (one module object, two names)."""
import sys

from harness import diffusion

sys.modules[__name__] = diffusion
