"""PT2E int8: PyTorch's post-training static quantization on an exported graph (``torch.export`` → a backend's
``Quantizer`` annotates it → ``prepare_pt2e`` places observers → calibration → ``convert_pt2e`` leaves
quantize / dequantize pairs around the int8 ops), then lowered by that backend's own converter. One recipe, two
backends:

- ``executorch``: ExecuTorch's ``XNNPACKQuantizer`` (symmetric int8, per-channel weights), lowered with the XNNPACK
  partitioner to a ``.pte`` in which the delegate runs the QDQ patterns as int8 kernels;
- ``tflite``: litert-torch's ``PT2EQuantizer`` (the same scheme), converted by ``litert_torch.convert`` with a
  static ``QuantConfig``, which folds the pairs into int8 TFLite ops (the model's inputs and outputs may become
  int8; the LiteRT adapter quantizes and dequantizes them, as an app must).

``quantizer = "xnnpack"`` uses the XNNPACKQuantizer's annotations for TFLite too: litert-torch's quantizer
annotates conv2d, linear, add and pooling only, so a generator built from transposed convolutions (DCGAN) gets no
int8 op from it — the coverage reader then says so ("no compute op was quantized").

``keep_float_before = ["sin", "cos"]`` (aten op names) leaves those ops and every node upstream of them
unannotated, so they stay float — a diffusion timestep embedding, as ``quant-static``'s parameter of the same name
does for ONNX. ``keep_float_layers = ["time_mlp.0"]`` (module paths, as the layers pass names them) leaves the
nodes torch.export recorded inside those modules float, with what feeds them up to the nearest op with weights:
mixed precision, which ``harness optimize`` finds from measured per-layer fidelity. Only the XNNPACKQuantizer takes
a node filter (``set_filter_function``): with litert-torch's quantizer both parameters are refused with the reason.

This is a compressor of stage ``export``: ``export_file(model, inputs, path, fmt, params, calibration)`` writes
the quantized file of format ``fmt`` directly from the torch model (its parent variant), because PT2E quantizes
the graph the exporter produces. It replaces the eager ``torch-int8`` recipe (``torch.ao.quantization``,
deprecated upstream in favour of PT2E).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from harness.compress import Calibration, check_choice, phase, refuse_missing_layers
from harness.exporters import package_version
from harness.registry import COMPRESSORS

QUANTIZERS = ("backend", "xnnpack")
RECIPE_VERSION = "5"
"""Part of the artifact id: bumped when this recipe changes what it writes (a cached failure is then tried again)."""


def _xnnpack_quantizer(per_channel: bool) -> Any:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))


def _litert_quantizer(per_channel: bool) -> Any:
    from litert_torch.quantize import pt2e_quantizer

    return pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel))


def upstream_nodes(graph: Any, op_names: Sequence[str]) -> set[str]:
    """Names of the nodes of an exported graph whose aten op is one of ``op_names`` (``sin`` for aten.sin.default)
    and of every node upstream of them."""
    wanted = set(op_names)
    stack = [n for n in graph.nodes if n.op == "call_function"
             and str(getattr(n.target, "__name__", "")).split(".")[0] in wanted]
    names = {n.name for n in stack}
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent.name not in names:
                names.add(parent.name)
                stack.append(parent)
    return names


WEIGHTED_OPS = frozenset({"conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d",
                          "conv_transpose3d", "linear", "addmm", "mm", "bmm", "matmul"})
"""aten ops with weights: where the walk upstream from a layer kept float stops (that op included)."""


def _module_paths(node: Any) -> set[str]:
    """The module paths torch.export recorded for ``node`` (its ``nn_module_stack``), without a strict export's
    ``L['self'].`` prefix."""
    stack = node.meta.get("nn_module_stack") or {}
    return {str(path).removeprefix("L['self'].") for path, _ in stack.values()}


def layer_graph_nodes(graph: Any, layers: Sequence[str]) -> set[str]:
    """Names of the nodes of an exported graph inside the modules ``layers`` (or their children), and of what feeds
    them up to and including the nearest op with weights (a quantized producer would hand the float layer int8
    values); a one-line error naming the graph's layers when one of ``layers`` has no node."""
    if not layers:
        return set()
    found: dict[str, set[str]] = {layer: set() for layer in layers}
    seen: set[str] = set()
    for node in graph.nodes:
        paths = _module_paths(node)
        seen |= paths
        for layer in layers:
            if any(path == layer or path.startswith(layer + ".") for path in paths):
                found[layer].add(node.name)
    refuse_missing_layers(found, seen, "the exported graph")
    names = set().union(*found.values())
    by_name = {n.name: n for n in graph.nodes}
    stack = [by_name[name] for name in names]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent.name in names or parent.op != "call_function":
                continue
            names.add(parent.name)
            if str(getattr(parent.target, "__name__", "")).split(".")[0] not in WEIGHTED_OPS:
                stack.append(parent)
    return names


def without_integer_observers(prepared: Any) -> Any:
    """``prepared`` (in place, and returned) without the observers a quantizer put on integer tensors: litert-torch's
    PT2EQuantizer observes both inputs of an op such as ``mul`` even when one is an int64 timestep (diffusers'
    ``timesteps * torch.ones(...)``), and its histogram observer has no integer kernel ("histogram_cpu" not
    implemented for 'Long'). Such an op stays float, as integer tensors are not quantized."""
    import torch
    from torchao.quantization.pt2e import ObserverBase

    modules = dict(prepared.named_modules())
    dropped = False
    for node in list(prepared.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), ObserverBase) or not node.args:
            continue
        source = node.args[0]
        value = getattr(source, "meta", {}).get("val")
        if value is None and getattr(source, "op", None) == "get_attr":  # a constant the graph holds
            value = getattr(prepared, str(source.target), None)
        if isinstance(value, torch.Tensor) and not value.dtype.is_floating_point:
            node.replace_all_uses_with(node.args[0])
            prepared.graph.erase_node(node)
            dropped = True
    if dropped:
        prepared.graph.lint()
        prepared.recompile()
    return prepared


def refuse_recurrent_for_litert(model: Any) -> None:
    """A ``ValueError`` naming the first GRU / LSTM / RNN layer: litert-torch's PT2EQuantizer fails inside its
    recurrent annotation (``IndexError`` in ``_annotate_gru_io_only``); XNNPACKQuantizer leaves the layer float and
    its TFLite file converts."""
    from harness.compress.channels import first_recurrent

    found = first_recurrent(model)
    if found:
        path, module = found
        raise ValueError(f"litert-torch's PT2EQuantizer cannot annotate the recurrent layer {path!r} "
                             f"({type(module).__name__}): set quantizer = \"xnnpack\" (the layer stays float), or "
                             "use tflite-int8 / tflite-dynamic")


def _converter_pads(graph_module: Any, node: Any) -> list[int] | None:
    """The ``aten.pad`` widths (``[left, right, top, bottom]``) that take a ``conv2d`` node's padding out of the conv,
    or None when TFLite expresses it as the conv's own SAME or VALID padding: litert-torch's converter otherwise emits
    a ``tfl.pad`` inside the conv's quantized region, whose input and output scales the quantizer never tied
    ("'tfl.pad' op quantization parameters violate the same scale constraint": diffusers' ``Downsample2D``, a stride-2
    conv with padding 1)."""
    args = list(node.args) + [None] * (7 - len(node.args))
    weight, stride, padding, dilation = args[1], args[3] or [1, 1], args[4] or [0, 0], args[5] or [1, 1]
    if isinstance(padding, str) or not any(padding):
        return None
    value = getattr(weight, "meta", {}).get("val")
    if value is None and getattr(weight, "op", None) == "get_attr":  # an unlifted graph holds its weights
        value = _attribute(graph_module, str(weight.target))
    if value is None or value.dim() != 4 or len(padding) != 2:
        return None
    kernel = tuple(value.shape[2:])
    same = all(s == 1 for s in stride) and all(2 * p == d * (k - 1) for p, d, k in zip(padding, dilation, kernel))
    return None if same else [padding[1], padding[1], padding[0], padding[0]]


def _attribute(module: Any, dotted: str) -> Any:
    """``module``'s attribute at a dotted path (a get_attr node's target), or None."""
    for part in dotted.split("."):
        module = getattr(module, part, None)
    return module


def explicit_conv_padding(graph_module: Any) -> int:
    """Rewrite (in place) every ``conv2d`` whose zero padding TFLite cannot hold in the conv itself into an explicit
    ``aten.pad`` and a conv with padding 0 — the same arithmetic; the pad then runs before the conv's input is
    quantized, where the converter takes it (as diffusers' ``downsample_padding = 0`` writes it). The pad keeps the
    conv's module path (``nn_module_stack``), so layer names still find it. Returns how many convs were rewritten."""
    import torch

    rewritten = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.conv2d.default:
            continue
        pads = _converter_pads(graph_module, node)
        if pads is None:
            continue
        source = node.args[0]
        with graph_module.graph.inserting_before(node):
            pad = graph_module.graph.call_function(torch.ops.aten.pad.default, (source, pads, "constant", 0.0))
        pad.meta = {key: value for key, value in node.meta.items() if key in ("nn_module_stack", "stack_trace")}
        value = source.meta.get("val")
        if value is not None:
            with value.fake_mode:
                pad.meta["val"] = torch.ops.aten.pad.default(value, pads, "constant", 0.0)
        args = list(node.args) + [None] * (5 - len(node.args))
        args[0], args[3], args[4] = pad, args[3] or [1, 1], [0, 0]
        node.args = tuple(args)
        rewritten += 1
    if rewritten:
        graph_module.graph.lint()
        graph_module.recompile()
    return rewritten


def quantized_graph(model: Any, args: tuple, quantizer: Any, calibration: Calibration, fold: bool,
                    keep_float_before: Sequence[str] = (), keep_float_layers: Sequence[str] = (),
                    explicit_padding: bool = False) -> Any:
    """The model exported, annotated by ``quantizer``, calibrated on ``calibration`` and converted: a GraphModule
    with quantize / dequantize pairs around the int8 ops. ``fold``: weights stored int8 (ExecuTorch's lowering
    needs this: it has no kernel to quantize a weight at run time); else fp32 weights behind a QDQ pair (what
    litert-torch's converter folds itself). ``explicit_padding``: convs whose padding TFLite cannot hold get an
    explicit pad first (:func:`explicit_conv_padding`; for the TFLite converter)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with phase("exporting the graph (torch.export)"):
        graph = torch.export.export(model.eval(), args).module()
        if explicit_padding:
            explicit_conv_padding(graph)
    kept: set[str] = set()
    if keep_float_before:
        kept = upstream_nodes(graph.graph, keep_float_before)
        if not kept:
            raise ValueError(f"keep_float_before: no {', '.join(keep_float_before)} op in the exported graph")
    kept |= layer_graph_nodes(graph.graph, keep_float_layers)
    if kept:
        quantizer.set_filter_function(lambda node: node.name not in kept)
    with phase(f"placing observers ({type(quantizer).__name__}, prepare_pt2e)"):
        prepared = without_integer_observers(prepare_pt2e(graph, quantizer))
    with torch.no_grad(), phase(f"calibrating on {len(calibration)} batches"):
        for batch in calibration:
            prepared(*(torch.from_numpy(a) for a in batch.values()))
    with phase("converting (convert_pt2e)"):
        return convert_pt2e(prepared, fold_quantize=fold)


class _PadScales(Exception):
    """litert-torch's converter refused a ``tfl.pad`` whose input and output scales differ."""


def _convert_to_tflite(converted: Any, args: tuple, path: str, per_channel: bool, model: Any) -> None:
    """``litert_torch.convert`` of a PT2E graph to ``path``; a pad-scale refusal raises ``_PadScales``, a convolution
    it cannot legalize is named in one line (as the fp32 export does)."""
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    from harness.exporters.tflite_export import conversion_error

    # The static QuantConfig tells the converter to fold the QDQ pairs; its quantizer only sets that mode.
    config = QuantConfig(pt2e_quantizer=_litert_quantizer(per_channel))
    with phase("converting to TFLite (litert_torch.convert, static PT2E)"):
        try:
            litert_torch.convert(converted, args, quant_config=config).export(path)
        except Exception as exc:
            if "'tfl.pad' op quantization parameters violate the same scale constraint" in str(exc):
                raise _PadScales() from None
            named = conversion_error(exc, model)
            if named is exc:
                raise
            raise named from None


@COMPRESSORS.register("pt2e-int8")
class PT2EInt8:
    name = "pt2e-int8"
    stage = "export"
    formats = ("executorch", "tflite")
    description = ("PT2E static int8 (torch.export + backend quantizer, calibrated): XNNPACKQuantizer → ExecuTorch, "
                   "litert-torch PT2EQuantizer → TFLite")
    params: Mapping[str, Any] = {"calibration_batches": 16, "per_channel": True, "quantizer": "backend",
                                 "keep_float_before": [], "keep_float_layers": []}

    @staticmethod
    def tool_versions() -> dict[str, str]:
        return {p: package_version(p) for p in ("torch", "torchao", "executorch", "litert-torch", "ai-edge-litert")} \
            | {"recipe": RECIPE_VERSION}

    def check(self, params: Mapping[str, Any]) -> None:
        check_choice(params, "quantizer", QUANTIZERS)
        if params["calibration_batches"] < 1:
            raise ValueError("calibration_batches must be at least 1")
        if not all(isinstance(op, str) and op for op in params["keep_float_before"]):
            raise ValueError("keep_float_before must be a list of aten op names, e.g. [\"sin\", \"cos\"]")
        if not all(isinstance(path, str) and path for path in params.get("keep_float_layers", ())):
            raise ValueError("keep_float_layers must list module paths (strings), e.g. [\"time_mlp.0\"]")

    def export_file(self, model: Any, inputs: Mapping[str, Any], path: str, fmt: str, params: Mapping[str, Any],
                    calibration: Calibration) -> dict[str, Any]:
        """Write the int8 file of format ``fmt`` to ``path``; returns what it contains (``coverage``) and how."""
        import torch

        args = tuple(torch.from_numpy(a) for a in inputs.values())
        per_channel = bool(params["per_channel"])
        keep = tuple(params["keep_float_before"])
        layers = tuple(params.get("keep_float_layers", ()))  # a step saved before the parameter existed
        if fmt == "executorch" or params["quantizer"] == "xnnpack":
            quantizer = _xnnpack_quantizer(per_channel)
        elif keep or layers:
            given = "keep_float_before" if keep else "keep_float_layers"
            raise ValueError(f"{given} needs quantizer = \"xnnpack\" for TFLite: litert-torch's PT2EQuantizer "
                             "takes no node filter")
        else:
            refuse_recurrent_for_litert(model)
            quantizer = _litert_quantizer(per_channel)
        padded = False
        if fmt == "executorch":
            from harness.exporters.executorch_export import lower_to_pte

            converted = quantized_graph(model, args, quantizer, calibration, fold=True,
                                        keep_float_before=keep, keep_float_layers=layers)
            with phase("lowering to ExecuTorch (XNNPACK partitioner)"):
                coverage = lower_to_pte(torch.export.export(converted, args), path)
        elif fmt == "tflite":
            from harness.compress.tflite_quant import tflite_coverage

            def write(explicit_padding: bool) -> None:
                converted = quantized_graph(model, args, quantizer, calibration, fold=False,
                                            keep_float_before=keep, keep_float_layers=layers,
                                            explicit_padding=explicit_padding)
                _convert_to_tflite(converted, args, path, per_channel, model)

            try:
                write(False)
            except _PadScales:
                # as the converter takes it, unless it refuses a conv's own padding: then again with that padding
                # as an explicit pad (diffusers' Downsample2D); only then, as the rewrite is not neutral for every
                # graph the converter took before (a stride-2 depthwise conv under XNNPACK's annotations)
                padded = True
                try:
                    write(True)
                except _PadScales:
                    raise ValueError(
                        "litert-torch's converter needs a pad's input and output quantized alike ('tfl.pad': a "
                        "conv's padding or an F.pad), which the PT2E quantizers did not arrange for this model: use "
                        "tflite-int8 or tflite-dynamic for its TFLite int8, or PT2E on ExecuTorch") from None
            coverage = tflite_coverage(path)
        else:
            raise ValueError(f"PT2E int8 does not write {fmt!r} (it writes {', '.join(self.formats)})")
        return {"coverage": coverage, "recipe": self.name, "quantizer": type(quantizer).__name__,
                "per_channel": per_channel, "calibration_batches": len(calibration),
                **({"kept_float_before": list(keep)} if keep else {}),
                **({"kept_float_layers": list(layers)} if layers else {}),
                **({"explicit_conv_padding": True} if padded else {})}
