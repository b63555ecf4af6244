"""The fp32 reference is computed a few samples per call (64 images of a 256×256 generator in one batch held 4 GB):
the same outputs as one call, for models returning a tensor or a tuple, and for a sample count the chunk does not
divide."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness.prepare.artifacts import run_in_chunks


class _Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x) + t.float()[:, None, None, None]
        return y, y.mean(dim=(1, 2, 3))


def test_chunked_outputs_are_the_outputs_of_one_call():
    model = _Two().eval()
    x = np.random.default_rng(0).standard_normal((19, 2, 5, 5)).astype(np.float32)
    t = np.arange(19, dtype=np.int64)
    with torch.no_grad():
        whole = [o.numpy() for o in model(torch.from_numpy(x), torch.from_numpy(t))]
    chunked = run_in_chunks(model, [x, t], chunk=8)  # 8 + 8 + 3
    assert [c.shape for c in chunked] == [(19, 3, 5, 5), (19,)]
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    (single,) = run_in_chunks(nn.Identity(), [x], chunk=4)
    assert np.array_equal(single, x)
