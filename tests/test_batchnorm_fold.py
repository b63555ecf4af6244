"""A BatchNorm after a grouped transposed convolution (the separable variant's depthwise upsampling) is folded before
ExecuTorch lowers the model: XNNPACK's own FuseBatchNormPass stopped that export with a multi-line error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness.exporters.batchnorm_fold import grouped_transposed_norm_pairs, without_grouped_transposed_norms


def _model(groups: int, shared: bool = False) -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.mix = nn.Conv2d(8, 16, 1)
            self.up = nn.ConvTranspose2d(16, 16, 4, 2, 1, groups=groups, bias=False)
            self.norm = nn.BatchNorm2d(16)
            self.norm.running_mean.uniform_(-1, 1)
            self.norm.running_var.uniform_(0.5, 2)
            self.norm.weight.data.uniform_(0.5, 2)
            self.norm.bias.data.uniform_(-1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.up(self.mix(x))
            return torch.relu(self.norm(h)) + (h if shared else 0)

    return Net().eval()


@pytest.mark.parametrize("groups", [16, 4])
def test_the_fold_is_exact_and_found_in_the_graph(groups):
    model, x = _model(groups), torch.randn(2, 8, 4, 4)
    exported = torch.export.export(model, (x,))
    assert grouped_transposed_norm_pairs(exported, model) == [("up", "norm")]
    folded = without_grouped_transposed_norms(model, exported)
    assert isinstance(folded.norm, nn.Identity) and isinstance(model.norm, nn.BatchNorm2d)  # a copy
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_a_convolution_read_elsewhere_or_ungrouped_is_left_alone():
    for model in (_model(16, shared=True), _model(1)):
        exported = torch.export.export(model, (torch.randn(1, 8, 4, 4),))
        assert without_grouped_transposed_norms(model, exported) is None


@pytest.mark.slow
def test_the_separable_shape_lowers_to_executorch_and_matches(tmp_path):
    pytest.importorskip("executorch", reason="executorch is not installed (pip install 'edge-harness[executorch]')")
    from harness.exporters.executorch_export import ExecuTorchExporter
    from harness.runtimes.executorch_rt import load_program

    model = _model(16)
    inputs = {"x": np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32)}
    path = str(tmp_path / "m.pte")
    ExecuTorchExporter.export(model, inputs, path)  # raised "An error occurred when running the 'FuseBatchNormPass'"
    out = load_program(path).load_method("forward")([torch.from_numpy(inputs["x"])])[0]
    with torch.no_grad():
        np.testing.assert_allclose(out.numpy(), model(torch.from_numpy(inputs["x"])).numpy(), rtol=1e-4, atol=1e-4)
