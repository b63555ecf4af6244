"""Structured channel pruning: remove the least important output channels of conv / conv-transpose / linear
layers and everything coupled to them, leaving a genuinely thinner network (Li et al., "Pruning Filters for
Efficient ConvNets", 2017), through skip connections.

Which channels must go together is found by Torch-Pruning's dependency graph (Fang et al., "DepGraph",
CVPR 2023): a layer's output channels, the BatchNorm / GroupNorm / InstanceNorm that normalise them, the
input channels of every layer that reads them — through ``torch.cat`` (index-mapped), residual adds, time
embeddings broadcast over feature maps — form one *group*, ranked by one importance (L1 or L2 magnitude over
the whole group, or FPGM's distance to the geometric median) and pruned together. GroupNorm groups lose the
same number of channels each, so ``num_groups`` still divides the width. A linear layer whose output an
``nn.Unflatten(1, (C, H, W))`` turns into C feature maps loses whole maps (blocks of H·W units), which
Torch-Pruning does not map: that case is handled here.

The same holds for a linear layer reshaped in ``forward`` (the DCGAN stem ``fc(z).view(B, -1, H, W)``) when the
code lets the channel count follow the layer (``-1``); a reshape to a fixed count (``view(B, 64, 4, 4)``) is
tried on a copy first, and left whole, with the rewrite that frees it, when the pruned copy no longer runs.

Attention: the heads of a diffusers-style block (``to_q`` / ``to_k`` / ``to_v`` / ``to_out`` and ``heads``) are one
group, removed as whole heads (their rows of the three projections, their columns of the output projection).
The projections of any other block whose class names attention stay whole, named. Torch-Pruning's walk from a
layer through a reshape that splits channels (``qkv(x).reshape(B, 3, heads, C // heads, H·W)``) can grow
without bound (it took a 24 GB machine down), so every walk here is bounded (index lists at most
``WALK_BOUND_WIDTHS`` times the widest layer): a layer whose walk overflows stays whole, named with its block,
and so does every layer whose channels feed it; the rest of the network (the convs inside every ResBlock, the
time embedding) is still pruned. Wrapper modules that assert on a stored width (diffusers'
``Downsample2D.channels``) get the new width.

What stays whole, with the reason in the info: layers whose channels reach the model's output, layers whose
channels no other layer reads, layers whose channels are split by a reshape the planner cannot follow.

The plan is recorded twice: ``groups`` (each group's root layer, the channels it removed, how many it kept, the
layers it reached: what a user reads) and ``structure`` (each changed module's new sizes and tensor shapes: what a
worker needs to rebuild the thinner skeleton before loading the ``state_dict``, without Torch-Pruning and
without unpickling a module).
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import warnings
from importlib.metadata import version
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from harness.compress import check_choice, check_fraction, phase
from harness.compress.layers import WEIGHT_LAYERS, parameter_count
from harness.registry import COMPRESSORS

IMPORTANCE = ("l1", "l2", "fpgm")
"""Channel importance criteria: group L1 magnitude (the 2017 paper's), group L2 magnitude, and FPGM (He et al.,
CVPR 2019: channels nearest the geometric median of their layer are redundant, whatever their size)."""

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def out_dim(layer: nn.Module) -> int:
    """Weight dimension of output channels: conv-transpose weights are (in, out/groups, k…)."""
    return 1 if isinstance(layer, _CONV_T) else 0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Torch-Pruning prints and warns about what it traces; the harness reports what it decided instead."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _importance(name: str) -> Any:
    import torch_pruning as tp

    if name == "fpgm":
        return tp.importance.FPGMImportance(p=2)
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def _example_inputs(latents: Any) -> tuple[torch.Tensor, ...]:
    if latents is None:
        raise ValueError("channel pruning traces the model on example inputs, and none were given")
    return tuple(torch.from_numpy(a) for a in latents.batch(2, 0).values())


def _outputs(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _graph(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    import torch_pruning as tp

    try:
        with _quiet(), torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=list(inputs), verbose=False)
    except Exception as exc:
        raise ValueError(f"Torch-Pruning cannot trace the model ({type(exc).__name__}: {exc})") from None


def _member_name(graph: Any, module: nn.Module) -> str | None:
    """A group member's module name, or None for Torch-Pruning's stand-ins for functions (cat, add, reshape)."""
    return graph._module2name.get(module) if isinstance(module, nn.Module) else None


def _member(graph: Any, dep: Any) -> str | None:
    """'layer.in' / 'layer.out' for a conv or linear layer a group reaches, the name alone for a norm layer."""
    name = _member_name(graph, dep.target.module)
    if name is None or not isinstance(dep.target.module, WEIGHT_LAYERS):
        return name
    return f"{name}.{'out' if graph.is_out_channel_pruning_fn(dep.handler) else 'in'}"


class UnboundedWalk(Exception):
    """Torch-Pruning's index mapping grew past the bound (a reshape that splits channels, e.g. attention heads)."""


WALK_BOUND_WIDTHS = 64
"""A walk's index lists may hold at most this many times the widest layer's channel count (in or out): a flatten
legitimately multiplies channels by a feature map's size, a channel-splitting reshape multiplies without end."""


SPLIT = "its channels are split by a reshape"


def walk_bound(model: nn.Module) -> int:
    """The most channel indices one step of a dependency walk may carry in ``model`` (indices)."""
    widths = [max(m.weight.shape[0], m.weight.shape[1] * getattr(m, "groups", 1))
              for m in model.modules() if isinstance(m, WEIGHT_LAYERS) and m.weight.dim() >= 2]
    return WALK_BOUND_WIDTHS * max(widths, default=1)


@contextlib.contextmanager
def bounded_walks(bound: int) -> Iterator[None]:
    """Torch-Pruning's flatten index mapping (the only one that multiplies indices) refuses, with
    ``UnboundedWalk``, to produce more than ``bound`` indices: a walk through a channel-splitting reshape otherwise
    grows until the machine runs out of memory."""
    from torch_pruning.dependency import index_mapping

    mapping = index_mapping._FlattenIndexMapping
    original = mapping.__call__

    def bounded(self: Any, idxs: Any) -> Any:
        if not self.reverse and len(idxs) * self._stride > bound:
            raise UnboundedWalk(f"{len(idxs)} indices × stride {self._stride} > {bound}")
        return original(self, idxs)

    mapping.__call__ = bounded
    try:
        yield
    finally:
        mapping.__call__ = original


def _full_group(graph: Any, layer: nn.Module) -> Any:
    pruner = graph.get_pruner_of_module(layer)
    return graph.get_pruning_group(layer, pruner.prune_out_channels, list(range(pruner.get_out_channels(layer))))


def _block_of(model: nn.Module, name: str) -> str:
    """The block a layer belongs to, for a user: the nearest enclosing module whose class names attention, else
    the layer's parent ("'mid.attn' (Attention)")."""
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        path = ".".join(parts[:end])
        if "attn" in type(model.get_submodule(path)).__name__.lower() or "attention" in type(
                model.get_submodule(path)).__name__.lower():
            return f"{path!r} ({type(model.get_submodule(path)).__name__})"
    parent = ".".join(parts[:-1])
    return f"{parent!r} ({type(model.get_submodule(parent)).__name__})" if parent else "the model"


def _unflatten_for(model: nn.Module, layer: nn.Module) -> tuple[str, int] | None:
    """(name, units per channel) of the ``nn.Unflatten(1, (C, *spatial))`` that shapes ``layer``'s output, if any."""
    if not isinstance(layer, nn.Linear):
        return None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Unflatten) and mod.dim == 1 and len(mod.unflattened_size) >= 2:
            sizes = [int(v) for v in mod.unflattened_size]
            if math.prod(sizes) == layer.out_features:
                return name, math.prod(sizes[1:])
    return None


def _names_attention(module: nn.Module) -> bool:
    kind = type(module).__name__.lower()
    return isinstance(module, nn.MultiheadAttention) or "attention" in kind or "attn" in kind


def attention_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """{name: module} of the innermost modules whose class names attention (``Attention``, ``Attn``,
    ``nn.MultiheadAttention``): a down block named ``AttnDownBlock2D`` is not one, the ``Attention`` inside it is."""
    named = {n: m for n, m in model.named_modules() if n and _names_attention(m)}
    return {n: m for n, m in named.items() if not any(o.startswith(f"{n}.") for o in named)}


def _head_projections(block: nn.Module) -> tuple[list[nn.Linear], nn.Linear] | None:
    """([to_q, to_k, to_v], to_out) of a diffusers-style attention block whose heads can be removed as units, or
    None (other layouts: nn.MultiheadAttention's packed projection, per-head norms, added key/value projections)."""
    projections = [getattr(block, k, None) for k in ("to_q", "to_k", "to_v")]
    out = getattr(block, "to_out", None)
    out = out[0] if isinstance(out, (nn.ModuleList, nn.Sequential)) and len(out) else out
    heads = getattr(block, "heads", None)
    if (not all(isinstance(m, nn.Linear) for m in [*projections, out]) or not isinstance(heads, int) or heads < 2
            or any(getattr(block, k, None) is not None for k in ("norm_q", "norm_k", "add_k_proj", "add_v_proj"))):
        return None
    inner = {m.out_features for m in projections} | {out.in_features}
    if len(inner) != 1 or inner.pop() % heads:
        return None
    return projections, out


def _prune_heads(model: nn.Module, name: str, amount: float, importance: str) -> dict[str, Any] | None:
    """Remove ``amount`` of attention block ``name``'s heads (the lowest L1 — L2 for ``l2`` / ``fpgm`` — over the
    head's rows of the query, key and value projections and its columns of the output projection), in place;
    the group's record, or None when it keeps every head."""
    block = model.get_submodule(name)
    projections, out = _head_projections(block)
    heads = block.heads
    size = out.in_features // heads
    keep_count = max(1, _keep_count(heads, amount, 1))
    if keep_count == heads:
        return None
    p = 1 if importance == "l1" else 2
    weights = [m.weight.detach().reshape(heads, -1) for m in projections]
    weights.append(out.weight.detach().t().reshape(heads, -1))
    score = torch.cat(weights, dim=1).abs().pow(p).sum(dim=1)
    keep = sorted(int(i) for i in torch.argsort(score, descending=True, stable=True)[:keep_count])
    rows = torch.tensor([h * size + i for h in keep for i in range(size)])
    with torch.no_grad():
        for m in projections:
            m.weight = nn.Parameter(m.weight[rows].clone())
            if m.bias is not None:
                m.bias = nn.Parameter(m.bias[rows].clone())
            m.out_features = len(rows)
        out.weight = nn.Parameter(out.weight[:, rows].clone())
        out.in_features = len(rows)
    block.heads = keep_count
    for attribute in ("inner_dim", "inner_kv_dim"):
        if isinstance(getattr(block, attribute, None), int):
            setattr(block, attribute, len(rows))
    children = {id(m): f"{name}.{n}" for n, m in block.named_modules() if n}
    return {"layer": f"{name}.heads", "kept": keep_count, "of": heads,
            "removed": sorted(set(range(heads)) - set(keep)),
            "members": [*(f"{children[id(m)]}.out" for m in projections), f"{children[id(out)]}.in"]}


def _reshaped_in_forward(graph: Any, layer: nn.Module, consumers: list[tuple[nn.Module, Any]]
                         ) -> tuple[None, int] | None:
    """(None, units per channel) for a linear layer whose output ``forward`` reshapes into C feature maps (``view``,
    ``reshape``): C is the width of the layers that read them."""
    if not isinstance(layer, nn.Linear):
        return None
    widths = {graph.get_pruner_of_module(m).get_in_channels(m) for m, _ in consumers} - {layer.out_features}
    if len(widths) != 1 or layer.out_features % (channels := widths.pop()):
        return None
    return None, layer.out_features // channels


def _returned_layers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> set[str]:
    """Layers whose output tensor the model returns as it is (no activation after them)."""
    seen: list[tuple[Any, str]] = []  # the tensors themselves: an id alone can be reused once a tensor is freed

    def note(name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            seen.append((out, name))
        return hook

    hooks = [m.register_forward_hook(note(name)) for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    try:
        with torch.no_grad():
            outputs = _outputs(model(*inputs))
        return {name for out, name in seen if any(out is o for o in outputs)}
    finally:
        for h in hooks:
            h.remove()


def _shuffle_kind(node_module: Any) -> str | None:
    """"pixel shuffle" (or "pixel unshuffle", "channel shuffle") when a traced graph node is that op — an SRGAN /
    ESPCN upsampler (``nn.PixelShuffle``, ``F.pixel_shuffle``) moves channels into space, r² of them per output
    channel — else None."""
    grad_fn = str(getattr(node_module, "_grad_fn", "") or "")
    for op, kind in (("PixelShuffle", "pixel shuffle"), ("PixelUnshuffle", "pixel unshuffle"),
                     ("ChannelShuffle", "channel shuffle")):
        if op in grad_fn:
            return kind
    return None


def survey(model: nn.Module, graph: Any, inputs: tuple[torch.Tensor, ...]
           ) -> tuple[dict[str, str], dict[str, tuple[str | None, int]], dict[str, list[str]]]:
    """(layer → why its channels stay whole, linear layer → (Unflatten module or None for a reshape in forward,
    units per channel), layer → the other layers whose output channels its group removes) for every
    conv / conv-transpose / linear layer of ``model``."""
    from torch_pruning import ops

    returned = _returned_layers(model, inputs)
    whole: dict[str, str] = {}
    blocked: dict[str, tuple[str | None, int]] = {}
    ties: dict[str, list[str]] = {}
    reached: dict[str, set[str]] = {}
    blocks = attention_blocks(model)
    for name, layer in model.named_modules():
        if not isinstance(layer, WEIGHT_LAYERS):
            continue
        block = next((b for b in blocks if name.startswith(f"{b}.")), None)
        if block is not None:
            whole[name] = (f"inside attention block {block!r}, whose heads are pruned as units"
                           if _head_projections(blocks[block]) is not None else
                           f"inside attention block {block!r} ({type(blocks[block]).__name__}), whose heads the "
                           "planner cannot remove as units")
            continue
        if layer not in graph.module2node:
            whole[name] = "not reached by the traced forward"
            continue
        try:
            group = _full_group(graph, layer)
        except UnboundedWalk:
            whole[name] = (f"{SPLIT} in block {_block_of(model, name)} (attention heads, or similar) that the "
                           "channel planner does not follow")
            continue
        reached[name] = {m for dep, _ in group if (m := _member_name(graph, dep.target.module)) is not None}
        ties[name] = sorted({m for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)
                             and (m := _member_name(graph, dep.target.module)) not in (None, name)})
        consumers = [(dep.target.module, idxs) for dep, idxs in group
                     if isinstance(dep.target.module, WEIGHT_LAYERS) and graph.is_in_channel_pruning_fn(dep.handler)]
        shuffles = sorted({kind for dep, _ in group if (kind := _shuffle_kind(dep.target.module))})
        if shuffles:  # Torch-Pruning passes channels through it one for one, and its index walk goes out of range
            whole[name] = (f"its channels are rearranged by a {' and a '.join(shuffles)} before other layers read "
                           "them (the planner does not map channels through it; the layers before it still lose "
                           "channels)")
        elif name in returned or any(isinstance(dep.target.module, ops._OutputOp) for dep, _ in group):
            whole[name] = "its channels reach the model's output"
        elif not consumers:
            whole[name] = "no layer reads its channels"
        elif (any(isinstance(dep.target.module, ops._ReshapeOp) for dep, _ in group)
              and any(len(set(idxs)) != graph.get_out_channels(layer) for _, idxs in consumers)):
            # a reshape between them, which Torch-Pruning does not map channel for channel
            unflatten = _unflatten_for(model, layer) or _reshaped_in_forward(graph, layer, consumers)
            if unflatten is None:
                whole[name] = ("its output is reshaped before other layers read it (into a channel count that does "
                               "not divide its width)" if isinstance(layer, nn.Linear) else
                               "its output is reshaped before other layers read it (a flatten, or the token layout "
                               "of an attention block)")
            else:
                blocked[name] = unflatten
    split = {n for n, why in whole.items() if why.startswith(SPLIT)}
    for name, members in reached.items():
        if name not in whole and (feeds := sorted(members & split)):
            whole[name] = (f"its channels feed {', '.join(feeds[:3])}, whose channels are split by a reshape "
                           "the planner does not follow")
    return whole, blocked, ties


def _keep_count(channels: int, amount: float, multiple: int) -> int:
    """Channels kept: ``int(channels × (1 − amount))`` rounded down to ``multiple`` (Torch-Pruning's rule)."""
    keep = int(channels * (1.0 - amount))
    return keep - keep % multiple


def _prune_through_unflatten(model: nn.Module, graph: Any, name: str, unflatten: tuple[str, int], amount: float,
                             multiple: int) -> dict[str, Any]:
    """Remove whole feature maps from linear layer ``name`` (blocks of units, lowest L1 over each map's units
    whatever the ``importance``) and the same channels from everything after its ``nn.Unflatten``; the group's
    record."""
    modules = dict(model.named_modules())
    layer, (unflatten_name, units) = modules[name], unflatten
    channels = layer.out_features // units
    norms = layer.weight.detach().abs().reshape(channels, -1).sum(dim=1)
    keep = sorted(int(i) for i in torch.argsort(norms, descending=True, stable=True)[:_keep_count(channels, amount,
                                                                                                     multiple)])
    drop = sorted(set(range(channels)) - set(keep))
    drop_units = [c * units + u for c in drop for u in range(units)]
    members = []
    for dep, _ in _full_group(graph, layer):
        target = dep.target.module
        member = _member_name(graph, target)
        if member is None or target is layer:
            continue
        pruner = graph.get_pruner_of_module(target)
        width = (pruner.get_out_channels(target) if graph.is_out_channel_pruning_fn(dep.handler)
                 else pruner.get_in_channels(target))
        dep.handler(target, drop_units if width == layer.out_features else drop)  # before / after the reshape
        members.append(_member(graph, dep))
    graph.get_pruner_of_module(layer).prune_out_channels(layer, drop_units)
    if unflatten_name is None:
        reshape = f"the reshape in forward (whole maps of {units})"
    else:
        sizes = tuple(modules[unflatten_name].unflattened_size)
        modules[unflatten_name].unflattened_size = (len(keep), *sizes[1:])
        reshape = f"{unflatten_name} (whole maps of {units})"
    return {"layer": name, "kept": len(keep), "of": channels, "removed": drop, "members": [reshape, *members]}


def _fixed_reshapes(model: nn.Module, inputs: tuple[torch.Tensor, ...], blocked: Mapping[str, tuple[str | None, int]],
                    amount: float, multiple: int) -> bool:
    """Whether ``forward`` reshapes the linear layers of ``blocked`` that have no ``nn.Unflatten`` to a fixed channel
    count: they are pruned on a copy, which must still run."""
    trial = copy.deepcopy(model)
    graph = _graph(trial, inputs)
    with torch.no_grad():
        for name, unflatten in blocked.items():
            if unflatten[0] is None:
                _prune_through_unflatten(trial, graph, name, unflatten, amount, multiple)
        try:
            trial(*inputs)
        except Exception:
            return True
    return False


def _sync_wrapper_widths(before: nn.Module, after: nn.Module) -> None:
    """Give wrapper modules (not conv / linear / norm layers themselves) the new width of a stored
    ``channels`` / ``in_channels`` / ``out_channels`` attribute, when the conv or linear layers directly inside them
    that had that width now all have one new width (diffusers' ``Downsample2D`` asserts on ``self.channels``)."""
    old = dict(before.named_modules())
    for name, module in after.named_modules():
        if isinstance(module, (*WEIGHT_LAYERS, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            continue
        layers = [(old[f"{name}.{child}" if name else child], layer) for child, layer in module.named_children()
                  if isinstance(layer, WEIGHT_LAYERS)]
        for attribute, side in (("channels", "in"), ("in_channels", "in"), ("out_channels", "out")):
            width = vars(module).get(attribute)  # stored on the module (not a diffusers config lookup)
            if not isinstance(width, int) or isinstance(width, bool):
                continue
            # its own side first: the first layer reading that width (an input), the last writing it (an output) —
            # a Downsample2D's conv had 64 in and 64 out and may keep 32 in and 48 out
            matching = [now for was, now in (layers if side == "in" else layers[::-1]) if _width(was, side) == width]
            new = ({_width(matching[0], side)} if matching else
                   {_width(now, s) for was, now in layers for s in ("in", "out") if _width(was, s) == width})
            if len(new) == 1 and (value := new.pop()) != width:
                setattr(module, attribute, value)


def _width(layer: nn.Module, side: str) -> int:
    """A conv / linear layer's input or output channel count."""
    if isinstance(layer, nn.Linear):
        return layer.in_features if side == "in" else layer.out_features
    return layer.in_channels if side == "in" else layer.out_channels


def _sizes(module: nn.Module) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(module).items()
            if not k.startswith("_") and (isinstance(v, int) and not isinstance(v, bool)
                                          or isinstance(v, tuple) and all(isinstance(i, int) for i in v))}


def shape_plan(before: nn.Module, after: nn.Module) -> dict[str, Any]:
    """{module: {"sizes": {attribute: new value}, "tensors": {parameter or buffer: new shape}}} for every module
    of ``after`` that differs from the same-named module of ``before``."""
    old = dict(before.named_modules())
    plan: dict[str, Any] = {}
    for name, module in after.named_modules():
        sizes = {k: v for k, v in _sizes(module).items() if _sizes(old[name]).get(k) != v}
        tensors = {k: list(t.shape) for k, t in [*module.named_parameters(recurse=False),
                                                  *module.named_buffers(recurse=False)]
                   if t is not None and tuple(t.shape) != tuple(getattr(old[name], k).shape)}
        if sizes or tensors:
            plan[name] = {"sizes": sizes, "tensors": tensors}
    return plan


def apply_shape_plan(model: nn.Module, plan: Mapping[str, Any]) -> nn.Module:
    """Resize ``model``'s modules (in place) as ``shape_plan`` recorded; the tensors are left uninitialised,
    for ``load_state_dict`` to fill."""
    for name, change in plan.items():
        module = model.get_submodule(name) if name else model
        for key, value in change["sizes"].items():
            setattr(module, key, tuple(value) if isinstance(value, list) else value)
        for key, shape in change["tensors"].items():
            old = getattr(module, key)
            if isinstance(old, nn.Parameter):
                setattr(module, key, nn.Parameter(torch.empty(shape, dtype=old.dtype), requires_grad=old.requires_grad))
            else:
                module.register_buffer(key, torch.empty(shape, dtype=old.dtype))
    return model


def first_recurrent(model: nn.Module) -> tuple[str, nn.Module] | None:
    """(path, module) of the first GRU / LSTM / RNN layer of ``model``, or None."""
    return next(((p, m) for p, m in model.named_modules() if isinstance(m, nn.RNNBase)), None)


def refuse_recurrent(model: nn.Module) -> None:
    """A ``ValueError`` naming the first recurrent layer (GRU, LSTM, RNN): Torch-Pruning's index mapping fails inside
    them (``IndexError``), so a channel plan is refused up front with what to use instead."""
    found = first_recurrent(model)
    if found:
        path, module = found
        raise ValueError(f"channel pruning does not reach into recurrent layers ({type(module).__name__} at "
                         f"{path!r}): distill into a smaller model instead (method = \"distill\" with "
                         "student_kwargs = { <your hidden-size argument> = … }, or student_builder)")


def _out_of_place(model: nn.Module) -> nn.Module:
    """``model`` (in place, and returned) with its in-place activations made out-of-place (``nn.ReLU(True)`` →
    ``inplace = False``; the same numbers). Torch-Pruning maps a module to the autograd node of its output; an
    in-place activation after a norm that returns a view (InstanceNorm: CycleGAN's ``InstanceNorm2d`` →
    ``ReLU(True)``) rewrites that node, the norm drops out of the graph and keeps its width while its conv is
    thinned ("expected input's size at dim=1 to match num_features")."""
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool) and not isinstance(module, WEIGHT_LAYERS):
            module.inplace = False
    return model


def thinner_network(model: nn.Module, amount: float, multiple: int, latents: Any,
                    importance: str = "l1") -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` with ``amount`` of each group's channels removed (the least important by
    ``importance``), and what changed: ``groups``, ``channels`` (kept / of, per root layer), ``layers_left_whole``
    with the reasons, parameters before and after, and the ``structure`` a worker rebuilds it from."""
    refuse_recurrent(model)
    inputs = _example_inputs(latents)
    try:
        with torch.no_grad():
            reference = [o.shape for o in _outputs(model.eval()(*inputs))]
    except Exception as exc:
        raise ValueError(f"the model does not run on its example inputs ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    thinner = _out_of_place(copy.deepcopy(model).eval())
    try:
        with bounded_walks(walk_bound(model)):
            return _thinner(model, thinner, inputs, reference, amount, multiple, importance)
    except UnboundedWalk:
        raise ValueError("Torch-Pruning's channel walk grew without bound (a reshape that splits channels); "
                         "use distill with student_kwargs instead") from None


def _thinner(model: nn.Module, thinner: nn.Module, inputs: tuple[torch.Tensor, ...], reference: list[Any],
             amount: float, multiple: int, importance: str) -> tuple[nn.Module, dict[str, Any]]:
    import torch_pruning as tp

    with phase("tracing the model's channel dependencies (Torch-Pruning)"):
        graph = _graph(thinner, inputs)
        whole, blocked, ties = survey(thinner, graph, inputs)
    in_forward = {n: u for n, u in blocked.items() if u[0] is None}
    if in_forward and _fixed_reshapes(thinner, inputs, in_forward, amount, multiple):
        for name in in_forward:
            blocked.pop(name)
            whole[name] = ("forward reshapes its output to a fixed channel count; write view(B, -1, H, W) (or an "
                           "nn.Unflatten(1, (C, H, W)) module) and it loses whole feature maps")
    modules = dict(thinner.named_modules())
    roots = [n for n, m in modules.items() if isinstance(m, WEIGHT_LAYERS) and n not in whole and n not in blocked]
    heads = [n for n, b in attention_blocks(thinner).items() if _head_projections(b) is not None]
    if not roots and not blocked and not heads:
        reasons = "; ".join(f"{n}: {why}" for n, why in whole.items()) or "no conv or linear layer"
        raise ValueError(f"no layer can lose channels ({reasons})")
    groups = []
    with phase("pruning whole feature maps through reshapes"), torch.no_grad():
        for name, unflatten in blocked.items():
            groups.append(_prune_through_unflatten(thinner, graph, name, unflatten, amount, multiple))
    with phase("pruning channel groups (Torch-Pruning)"), _quiet(), torch.enable_grad():
        ignored = [modules[n] for n in (*whole, *blocked)]
        pruner = tp.pruner.BasePruner(thinner, list(inputs), importance=_importance(importance),
                                      pruning_ratio=amount, ignored_layers=ignored, round_to=multiple)
        for group in pruner.step(interactive=True):
            root = group[0][0].target.module
            before = pruner.DG.get_out_channels(root)
            members = sorted({m for dep, _ in group if (m := _member(pruner.DG, dep)) is not None}
                             - {f"{_member_name(pruner.DG, root)}.out"})
            removed = sorted(int(i) for i in group[0][1])
            group.prune()
            groups.append({"layer": _member_name(pruner.DG, root), "kept": before - len(removed), "of": before,
                           "removed": removed, "members": members})
    with phase("pruning attention heads"), torch.no_grad():
        for name, block in attention_blocks(thinner).items():
            if _head_projections(block) is not None and (heads := _prune_heads(thinner, name, amount, importance)):
                groups.append(heads)
    thinner.eval()
    _sync_wrapper_widths(model, thinner)
    emptied = [n for n, m in thinner.named_modules() if isinstance(m, WEIGHT_LAYERS) and 0 in m.weight.shape]
    if emptied:
        raise ValueError(f"no channel would be left in {', '.join(emptied)} (amount {amount}, multiple {multiple}: "
                         "the channels kept are rounded down to the multiple); lower the amount or the multiple")
    try:
        with torch.no_grad():
            after = [o.shape for o in _outputs(thinner(*inputs))]
    except Exception as exc:
        raise ValueError(f"the pruned model no longer runs ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'no message'}): its code keeps a width "
                         "the planner cannot see; distill with student_kwargs instead") from None
    if after != reference:
        raise ValueError(f"pruning changed the model's output shapes ({reference} → {after}); a layer whose output "
                         "is also returned directly cannot be traced apart from its other uses")
    untouched = {n: _why_untouched(modules[n], amount, multiple, [t for t in ties.get(n, []) if t in whole])
                 for n in roots
                 if not any(g["layer"] == n or f"{n}.out" in g["members"] for g in groups)}
    if not groups:
        reasons = "; ".join(f"{n}: {why}" for n, why in {**whole, **untouched}.items())
        raise ValueError(f"no layer lost channels ({reasons})")
    return thinner, {"structure": {"shapes": shape_plan(model, thinner)},
                     "groups": groups, "importance": importance,
                     "channels": {g["layer"]: {"kept": g["kept"], "of": g["of"]} for g in groups},
                     "layers_left_whole": {**whole, **untouched}, "parameters_before": parameter_count(model),
                     "parameters": parameter_count(thinner)}


def _why_untouched(layer: nn.Module, amount: float, multiple: int, tied_to_whole: list[str]) -> str:
    if tied_to_whole:
        return (f"its channels are tied (a residual add, a concatenation) to {', '.join(tied_to_whole[:3])}"
                f"{' …' if len(tied_to_whole) > 3 else ''}, which stay{'s' if len(tied_to_whole) == 1 else ''} whole")
    channels = layer.weight.shape[out_dim(layer)] * (getattr(layer, "groups", 1) if out_dim(layer) else 1)
    keep = _keep_count(channels, amount, multiple)
    if keep == 0:
        return f"it would keep no channel: int({channels} × (1 − {amount})) rounded down to a multiple of {multiple} is 0"
    if keep == channels:
        return f"amount {amount} removes none of its {channels} channels"
    return "Torch-Pruning left its group whole"


def restructure(model: nn.Module, structure: Mapping[str, Any]) -> nn.Module:
    """The freshly built parent resized as the pruning plan recorded (weights to be loaded)."""
    return apply_shape_plan(model, structure["shapes"])


@COMPRESSORS.register("prune-channels")
class ChannelPruning:
    """Remove ``amount`` of each channel group (lowest ``importance``); ``multiple`` rounds the channels kept to
    a multiple (SIMD-friendly widths)."""

    name = "prune-channels"
    stage = "torch"
    description = "structured channel pruning through skips and norms: a thinner network (Torch-Pruning DepGraph)"
    params: Mapping[str, Any] = {"amount": 0.5, "multiple": 1, "importance": "l1"}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {"torch": version("torch"), "torch-pruning": version("torch-pruning")}

    def check(self, params: Mapping[str, Any]) -> None:
        check_fraction(params)
        check_choice(params, "importance", IMPORTANCE)
        if params["multiple"] < 1:
            raise ValueError(f"multiple must be at least 1, not {params['multiple']}")

    def compress(self, model: nn.Module, params: Mapping[str, Any], latents: Any) -> tuple[nn.Module, dict]:
        return thinner_network(model, params["amount"], int(params["multiple"]), latents, params["importance"])

    @staticmethod
    def restructure(model: nn.Module, structure: Mapping[str, Any]) -> nn.Module:
        return restructure(model, structure)
