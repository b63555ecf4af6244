"""Structured channel pruning: remove the lowest-L1 output channels of conv / conv-transpose / linear layers
and rebuild a genuinely thinner network (Li et al., "Pruning Filters for Efficient ConvNets", 2017).

Which layers can lose channels is found by tracing the model with ``torch.fx``: a layer qualifies when its
output reaches only channel-wise operations (BatchNorm, element-wise activations, dropout) and then other
conv / conv-transpose / linear layers of the same kind, each used once; a linear layer whose output an
``nn.Unflatten(1, (C, H, W))`` turns into C feature maps for convs loses whole maps (blocks of H·W units).
Anything else downstream — the
model's output, a reshape, an add or concat (skip connections), a GroupNorm — keeps the layer whole. The
layers left alone are listed in the info, so a user sees why a model did not get thinner.
"""
from __future__ import annotations

import copy
from importlib.metadata import version
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn

from harness.compress import check_fraction
from harness.compress.layers import WEIGHT_LAYERS, parameter_count
from harness.registry import COMPRESSORS

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid,
                        nn.Hardswish, nn.Hardtanh, nn.Dropout, nn.Identity)
_ELEMENTWISE_FUNCTIONS = {torch.relu, torch.tanh, torch.sigmoid, F.relu, F.relu6, F.leaky_relu, F.elu, F.silu,
                          F.gelu, F.hardswish, F.hardtanh, F.dropout, torch.nn.functional.tanh,
                          torch.nn.functional.sigmoid}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "relu_", "tanh_", "sigmoid_"}


def out_dim(layer: nn.Module) -> int:
    """Weight dimension of output channels: conv-transpose weights are (in, out/groups, k…)."""
    return 1 if isinstance(layer, _CONV_T) else 0


def _in_dim(layer: nn.Module) -> int:
    return 0 if isinstance(layer, _CONV_T) else 1


def _kind(layer: nn.Module) -> str:
    return "linear" if isinstance(layer, nn.Linear) else "conv"


def _grouped(layer: nn.Module) -> bool:
    return getattr(layer, "groups", 1) != 1


def find_prunable(model: nn.Module) -> tuple[dict[str, dict[str, list[str]]], dict[str, str]]:
    """Trace ``model``; return (prunable layer → {"norms": [...], "consumers": [...]}, kept layer → why)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx cannot trace data-dependent control flow
        raise ValueError(f"torch.fx cannot trace the model ({type(exc).__name__}: {exc}); "
                         f"channel pruning needs a traceable forward") from None
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    prunable: dict[str, dict[str, list[str]]] = {}
    kept: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], WEIGHT_LAYERS):
            continue
        layer = modules[node.target]
        if _grouped(layer):
            kept[node.target] = "grouped convolution"
            continue
        if calls[node.target] > 1:
            kept[node.target] = "called more than once"
            continue
        why, links = _follow(node, layer, modules, calls)
        if why:
            kept[node.target] = why
        else:
            prunable[node.target] = links
    return prunable, kept


def _follow(start: fx.Node, layer: nn.Module, modules: dict[str, nn.Module],
            calls: dict[str, int]) -> tuple[str, dict[str, Any]]:
    """Walk the users of ``start``'s output: ('' or why not prunable, {"norms", "consumers"} plus, through an
    Unflatten, {"group": units per channel, "unflatten": [module]})."""
    norms: list[str] = []
    consumers: list[str] = []
    unflatten: list[str] = []
    group, kind = 1, _kind(layer)
    frontier = list(start.users)
    seen: set[fx.Node] = set()
    while frontier:
        node = frontier.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            mod = modules[node.target]
            if calls[node.target] > 1:
                return f"its output reaches {node.target}, which is called more than once", {}
            if isinstance(mod, _BATCH_NORM):
                norms.append(node.target)
                frontier.extend(node.users)
                continue
            if isinstance(mod, _ELEMENTWISE_MODULES):
                frontier.extend(node.users)
                continue
            blocks = _unflatten_blocks(mod, layer) if not unflatten else 0
            if blocks:
                unflatten.append(node.target)
                group, kind = blocks, "conv"
                frontier.extend(node.users)
                continue
            if isinstance(mod, WEIGHT_LAYERS) and _kind(mod) == kind and not _grouped(mod):
                consumers.append(node.target)
                continue
            return f"its output reaches {type(mod).__name__} {node.target}", {}
        if node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS and _only_tensor_arg(node):
            frontier.extend(node.users)
            continue
        if node.op == "call_method" and node.target in _ELEMENTWISE_METHODS and _only_tensor_arg(node):
            frontier.extend(node.users)
            continue
        what = "the model's output" if node.op == "output" else f"{node.op} {getattr(node.target, '__name__', node.target)}"
        return f"its output reaches {what}", {}
    if not consumers:
        return "no layer consumes its channels", {}
    links: dict[str, Any] = {"norms": norms, "consumers": consumers}
    if unflatten:
        links |= {"group": group, "unflatten": unflatten}
    return "", links


def _unflatten_blocks(mod: nn.Module, layer: nn.Module) -> int:
    """Units per channel when ``mod`` is an ``Unflatten(1, (C, *spatial))`` of a linear layer's output, else 0."""
    if not (isinstance(mod, nn.Unflatten) and isinstance(layer, nn.Linear) and mod.dim == 1):
        return 0
    sizes = tuple(int(v) for v in mod.unflattened_size)
    blocks = 1
    for v in sizes[1:]:
        blocks *= v
    return blocks if len(sizes) >= 2 and sizes[0] * blocks == layer.out_features else 0


def _only_tensor_arg(node: fx.Node) -> bool:
    return sum(isinstance(a, fx.Node) for a in (*node.args, *node.kwargs.values())) == 1


def _select(tensor: torch.Tensor, dim: int, index: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.detach().index_select(dim, index).clone(), requires_grad=tensor.requires_grad)


def _thin_outputs(layer: nn.Module, index: torch.Tensor) -> None:
    layer.weight = _select(layer.weight, out_dim(layer), index)
    if layer.bias is not None:
        layer.bias = _select(layer.bias, 0, index)
    if isinstance(layer, nn.Linear):
        layer.out_features = len(index)
    else:
        layer.out_channels = len(index)


def _thin_inputs(layer: nn.Module, index: torch.Tensor) -> None:
    layer.weight = _select(layer.weight, _in_dim(layer), index)
    if isinstance(layer, nn.Linear):
        layer.in_features = len(index)
    else:
        layer.in_channels = len(index)


def _thin_norm(norm: nn.Module, index: torch.Tensor) -> None:
    if norm.affine:
        norm.weight = _select(norm.weight, 0, index)
        norm.bias = _select(norm.bias, 0, index)
    if norm.track_running_stats:
        norm.running_mean = norm.running_mean.index_select(0, index).clone()
        norm.running_var = norm.running_var.index_select(0, index).clone()
    norm.num_features = len(index)


def restructure(model: nn.Module, structure: Mapping[str, Any]) -> nn.Module:
    """Apply a pruning plan ({layer: {"keep": [...], "norms": [...], "consumers": [...]}, optionally "group"
    and "unflatten"}) in place."""
    modules = dict(model.named_modules())
    for name, plan in structure.items():
        index = torch.tensor(plan["keep"], dtype=torch.long)
        group = int(plan.get("group", 1))
        units = (index[:, None] * group + torch.arange(group)[None, :]).reshape(-1) if group > 1 else index
        _thin_outputs(modules[name], units)
        for unflatten in plan.get("unflatten", ()):
            sizes = tuple(modules[unflatten].unflattened_size)
            modules[unflatten].unflattened_size = (len(index), *sizes[1:])
        for norm in plan["norms"]:
            _thin_norm(modules[norm], index)
        for consumer in plan["consumers"]:
            _thin_inputs(modules[consumer], index)
    return model


def kept_channels(layer: nn.Module, amount: float, multiple: int, group: int = 1) -> list[int]:
    """Indices (ascending) of the output channels with the largest L1 norm, count rounded up to ``multiple``;
    a channel is ``group`` consecutive output units (a linear layer unflattened into feature maps)."""
    weight = layer.weight.detach()
    dim = out_dim(layer)
    channels = weight.shape[dim] // group
    norms = weight.abs().transpose(0, dim).reshape(channels, -1).sum(dim=1)
    keep = max(1, round(channels * (1.0 - amount)))
    keep = min(channels, -(-keep // multiple) * multiple)
    order = torch.argsort(norms, descending=True, stable=True)[:keep]
    return sorted(int(i) for i in order)


def channel_counts(modules: Mapping[str, nn.Module], structure: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """{layer: {"kept": channels kept, "of": channels before}} for a pruning plan."""
    return {name: {"kept": len(plan["keep"]),
                   "of": modules[name].weight.shape[out_dim(modules[name])] // int(plan.get("group", 1))}
            for name, plan in structure.items()}


def thinner_network(model: nn.Module, amount: float, multiple: int) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` with ``amount`` of each prunable layer's output channels (lowest L1) removed, and
    what changed: the plan (``structure``), channels kept per layer, layers left whole and why, parameters."""
    prunable, kept = find_prunable(model)
    if not prunable:
        reasons = "; ".join(f"{n}: {why}" for n, why in kept.items()) or "no conv or linear layer"
        raise ValueError(f"no layer can lose channels ({reasons})")
    modules = dict(model.named_modules())
    structure = {name: {"keep": kept_channels(modules[name], amount, multiple, links.get("group", 1)), **links}
                 for name, links in prunable.items()}
    thinner = restructure(copy.deepcopy(model), structure).eval()
    return thinner, {"structure": structure, "channels": channel_counts(modules, structure),
                     "layers_left_whole": kept, "parameters_before": parameter_count(model),
                     "parameters": parameter_count(thinner)}


@COMPRESSORS.register("prune-channels")
class ChannelPruning:
    """Remove ``amount`` of each prunable layer's output channels (lowest L1 norm); ``multiple`` rounds the
    channels kept up to a multiple (SIMD-friendly widths)."""

    name = "prune-channels"
    stage = "torch"
    description = "structured L1 channel pruning: a thinner network (fx-traced dependencies)"
    params: Mapping[str, Any] = {"amount": 0.5, "multiple": 1}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {"torch": version("torch")}

    def check(self, params: Mapping[str, Any]) -> None:
        check_fraction(params)
        if params["multiple"] < 1:
            raise ValueError(f"multiple must be at least 1, not {params['multiple']}")

    def compress(self, model: nn.Module, params: Mapping[str, Any], latents: Any) -> tuple[nn.Module, dict]:
        return thinner_network(model, params["amount"], int(params["multiple"]))

    @staticmethod
    def restructure(model: nn.Module, structure: Mapping[str, Any]) -> nn.Module:
        return restructure(model, structure)
