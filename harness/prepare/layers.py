"""The fp32 PyTorch model's intermediate outputs, the reference for "where fidelity breaks": every leaf module's
output on the job's inputs, in the order the modules ran, with each module's path (``net.3``) and its scope chain
as the TFLite converter names tensors (``pkg.Model/torch.nn.modules.container.Sequential_net/…ConvTranspose2d_3``),
so an artifact's intermediate tensors can be matched to the module that produced them."""
from __future__ import annotations

from typing import Any, Mapping


def _fqn(module: Any) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def scope_chains(model: Any) -> dict[str, str]:
    """Module path → the scope chain the TFLite converter writes into tensor names."""
    chains = {"": _fqn(model)}
    for path, module in model.named_modules():
        if path:
            parent, _, name = path.rpartition(".")
            chains[path] = f"{chains[parent]}/{_fqn(module)}_{name}"
    chains.pop("")
    return chains


def layer_outputs(model: Any, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every leaf module's output (numpy, float32; the first tensor of a tuple) on ``inputs`` (numpy arrays in the
    model's argument order), and the modules' paths in the order they ran (a module called twice: its last call)."""
    import torch

    outputs: dict[str, Any] = {}
    order: list[str] = []
    handles = []

    def hook(path: str):
        def record(module: Any, args: Any, out: Any) -> None:
            tensor = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                outputs[path] = tensor.detach().float().cpu().numpy().copy()
                if path in order:
                    order.remove(path)
                order.append(path)
        return record

    for path, module in model.named_modules():
        if path and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(hook(path)))
    try:
        with torch.no_grad():
            model(*(torch.from_numpy(v) for v in inputs.values()))
    finally:
        for handle in handles:
            handle.remove()
    return outputs, order
