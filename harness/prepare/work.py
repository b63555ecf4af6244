"""The work one inference does, counted on the PyTorch model: FLOPs (``torch.utils.flop_counter.FlopCounterMode``:
a multiply-add is 2 FLOPs; it counts matrix products and convolutions — Linear, Conv, ConvTranspose, attention —
and not biases, activations, norms or other elementwise ops) and bytes moved (every op's tensor inputs, weights
included, and outputs, at their dtype's size; views move nothing), per op family. Counted on the model a variant's
artifacts were exported from (a quantized file's FLOPs are its float parent's, at lower precision)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from harness.profiling.families import op_family


@dataclass(frozen=True)
class Work:
    """Per inference of one batch: ``flops`` (FLOP), ``bytes`` (bytes moved), ``by_family``: {family: {"flops",
    "bytes"}}."""

    flops: float
    bytes: float
    by_family: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    largest_op_bytes: float = 0.0
    """The most bytes one op touched (its tensor inputs, weights and output): a floor on the memory live at once."""
    method: str = ("torch.utils.flop_counter (2 FLOPs per multiply-add of matmul/conv; biases, activations and "
                   "elementwise ops not counted); bytes = tensor inputs + outputs of every non-view aten op")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aten_family(func: Any, args: tuple) -> str:
    name = func.overloadpacket.__name__
    if name in ("convolution", "_convolution") and len(args) > 6 and args[6] is True:
        return "conv-transpose"  # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, …)
    return op_family(name)


def count_work(model: Any, inputs: Mapping[str, Any]) -> Work:
    """FLOPs and bytes of one forward pass of ``model`` on ``inputs`` (numpy arrays, in the model's argument order)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.flop_counter import FlopCounterMode

    families: dict[str, dict[str, float]] = {}
    largest = [0]

    class _Bytes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            before = counter.get_total_flops()
            out = func(*args, **(kwargs or {}))
            if func.is_view:
                return out
            tensors = [t for t in tree_flatten((args, kwargs or {}, out))[0] if isinstance(t, torch.Tensor)]
            entry = families.setdefault(_aten_family(func, args), {"flops": 0.0, "bytes": 0.0})
            entry["flops"] += counter.get_total_flops() - before
            moved = sum(t.numel() * t.element_size() for t in tensors)
            entry["bytes"] += moved
            largest[0] = max(largest[0], moved)
            return out

    counter = FlopCounterMode(display=False)
    values = [torch.from_numpy(v) for v in inputs.values()]
    with torch.no_grad(), counter, _Bytes():
        model(*values)
    ordered = dict(sorted(families.items(), key=lambda kv: (-kv[1]["flops"], -kv[1]["bytes"])))
    return Work(float(counter.get_total_flops()), float(sum(f["bytes"] for f in ordered.values())), ordered,
                float(largest[0]))
