"""BatchNorm folded into the grouped transposed convolution before it (depthwise upsampling: the separable
variant's ``ConvTranspose2d(C, C, groups=C)`` then ``BatchNorm2d``), before ExecuTorch lowers the model: XNNPACK's
``FuseBatchNormPass`` (executorch 1.x) folds that pair with the wrong weight layout and stops the export ("expected
bias to be 1-dimensional with 256 elements"). Folding an eval-mode BatchNorm is exact: the output changes only by
float rounding. Pairs are found in the exported graph, so a transposed convolution whose output is also read by
anything other than its BatchNorm is left as it is."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

_TRANSPOSED = {"aten.conv_transpose1d.default", "aten.conv_transpose2d.input", "aten.conv_transpose3d.input"}
_NORM = {"aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default"}


def _module(node: Any) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


def grouped_transposed_norm_pairs(exported: Any, model: nn.Module) -> list[tuple[str, str]]:
    """(transposed conv, BatchNorm) module names of ``exported``'s graph where a BatchNorm reads only the output of a
    grouped transposed convolution that nothing else reads."""
    modules = dict(model.named_modules())
    pairs = []
    for node in exported.graph.nodes:
        if node.op != "call_function" or str(node.target) not in _NORM:
            continue
        source = node.args[0]
        if getattr(source, "op", None) != "call_function" or str(source.target) not in _TRANSPOSED:
            continue
        conv, norm = _module(source), _module(node)
        if (len(source.users) == 1 and conv in modules and norm in modules and getattr(modules[conv], "groups", 1) > 1
                and isinstance(modules[norm], nn.modules.batchnorm._BatchNorm)):
            pairs.append((conv, norm))
    return pairs


def fold_into_transposed(conv: nn.Module, norm: nn.Module) -> None:
    """Scale ``conv``'s weight and bias by eval-mode ``norm`` (in place). A transposed conv's weight is
    (in, out / groups, k…): weight[i, j] feeds output channel (i // (in / groups)) · (out / groups) + j."""
    with torch.no_grad():
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else \
            1.0 / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale if norm.affine else -norm.running_mean * scale
        w = conv.weight
        per_group_in, per_group_out = w.shape[0] // conv.groups, w.shape[1]
        rows = torch.arange(w.shape[0])[:, None] // per_group_in * per_group_out
        channel = rows + torch.arange(per_group_out)[None, :]
        conv.weight = nn.Parameter(w * scale[channel].reshape(*channel.shape, *([1] * (w.dim() - 2))))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        conv.bias = nn.Parameter(bias * scale + shift)


def without_grouped_transposed_norms(model: nn.Module, exported: Any) -> nn.Module | None:
    """A copy of ``model`` with each such BatchNorm folded into its transposed conv and replaced by an identity;
    None when there is none."""
    pairs = grouped_transposed_norm_pairs(exported, model)
    if not pairs:
        return None
    folded = copy.deepcopy(model).eval()
    for conv, norm in pairs:
        fold_into_transposed(folded.get_submodule(conv), folded.get_submodule(norm))
        parent, _, child = norm.rpartition(".")
        setattr(folded.get_submodule(parent) if parent else folded, child, nn.Identity())
    return folded
