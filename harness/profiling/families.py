"""One map of op names across runtimes onto op families, so a report compares runtimes family by family: ONNX
Runtime's op types (``Conv``, ``FusedConv``, ``QLinearConv``), LiteRT's builtin codes (``CONV_2D``) and PyTorch's aten
ops (``aten::conv2d``) all land on ``conv``. Pure: no runtime is imported."""
from __future__ import annotations

FAMILIES = ("conv", "conv-transpose", "matmul", "activation", "norm", "elementwise", "concat", "layout", "resize",
            "quantize", "reduce", "pad", "gather", "delegate", "host", "other")
"""Every family, in the order a report lists them. ``delegate``: a partition a delegate ran as one opaque node
(LiteRT's XNNPACK), whose ops the profiler cannot see one by one. ``host``: time inside an inference that no op
accounts for (PyTorch eager's Python between modules). ``other``: a name the map does not know."""

_EXACT = {
    # ONNX Runtime op types (including its fused and quantized contrib ops)
    "conv": "conv", "fusedconv": "conv", "qlinearconv": "conv", "convinteger": "conv", "nhwcconv": "conv",
    "convtranspose": "conv-transpose",
    "gemm": "matmul", "fusedgemm": "matmul", "matmul": "matmul", "matmulinteger": "matmul", "qlinearmatmul": "matmul",
    "dynamicquantizematmul": "matmul", "matmulintegertofloat": "matmul", "fusedmatmul": "matmul",
    "relu": "activation", "leakyrelu": "activation", "tanh": "activation", "sigmoid": "activation",
    "gelu": "activation", "fastgelu": "activation", "biasgelu": "activation", "quickgelu": "activation",
    "elu": "activation", "selu": "activation", "softplus": "activation", "hardsigmoid": "activation",
    "hardswish": "activation", "prelu": "activation", "clip": "activation", "erf": "activation",
    "softmax": "activation", "qlinearleakyrelu": "activation", "qlinearsigmoid": "activation",
    "batchnormalization": "norm", "instancenormalization": "norm", "groupnormalization": "norm",
    "layernormalization": "norm", "skiplayernormalization": "norm", "groupnorm": "norm",
    "add": "elementwise", "sub": "elementwise", "mul": "elementwise", "div": "elementwise", "pow": "elementwise",
    "sqrt": "elementwise", "exp": "elementwise", "log": "elementwise", "neg": "elementwise", "abs": "elementwise",
    "sin": "elementwise", "cos": "elementwise", "reciprocal": "elementwise", "where": "elementwise",
    "qlinearadd": "elementwise", "qlinearmul": "elementwise", "max": "elementwise", "min": "elementwise",
    "equal": "elementwise", "less": "elementwise", "greater": "elementwise", "not": "elementwise",
    "concat": "concat", "qlinearconcat": "concat",
    "reshape": "layout", "transpose": "layout", "flatten": "layout", "squeeze": "layout", "unsqueeze": "layout",
    "identity": "layout", "shape": "layout", "slice": "layout", "split": "layout", "expand": "layout",
    "cast": "layout", "tile": "layout", "constantofshape": "layout", "range": "layout", "memcpyfromhost": "layout",
    "memcpytohost": "layout", "reorderinput": "layout", "reorderoutput": "layout", "unflatten": "layout",
    "resize": "resize", "upsample": "resize",
    "quantizelinear": "quantize", "dequantizelinear": "quantize", "dynamicquantizelinear": "quantize",
    "reducemean": "reduce", "reducesum": "reduce", "reducemax": "reduce", "reducemin": "reduce",
    "globalaveragepool": "reduce", "averagepool": "reduce", "maxpool": "reduce", "argmax": "reduce",
    "pad": "pad",
    "gather": "gather", "gatherelements": "gather", "gathernd": "gather", "scatternd": "gather",
    # LiteRT builtin operator codes
    "conv_2d": "conv", "depthwise_conv_2d": "conv", "conv_3d": "conv",
    "transpose_conv": "conv-transpose", "conv_3d_transpose": "conv-transpose",
    "fully_connected": "matmul", "batch_matmul": "matmul",
    "relu6": "activation", "relu_n1_to_1": "activation", "relu_0_to_1": "activation", "leaky_relu": "activation",
    "logistic": "activation", "hard_swish": "activation",
    "squared_difference": "elementwise", "rsqrt": "elementwise", "maximum": "elementwise", "minimum": "elementwise",
    "square": "elementwise", "floor_div": "elementwise", "select_v2": "elementwise", "select": "elementwise",
    "concatenation": "concat", "pack": "concat",
    "strided_slice": "layout", "broadcast_to": "layout", "expand_dims": "layout", "unpack": "layout",
    "split_v": "layout", "depth_to_space": "layout", "space_to_depth": "layout",
    "resize_nearest_neighbor": "resize", "resize_bilinear": "resize",
    "quantize": "quantize", "dequantize": "quantize",
    "mean": "reduce", "sum": "reduce", "reduce_max": "reduce", "reduce_min": "reduce", "average_pool_2d": "reduce",
    "max_pool_2d": "reduce", "arg_max": "reduce",
    "padv2": "pad", "mirror_pad": "pad",
    "gather_nd": "gather", "embedding_lookup": "gather",
    "delegate": "delegate", "tflitexnnpackdelegate": "delegate", "python": "host",
    # PyTorch aten ops (the top-level op of each call: aten::linear, not the addmm inside it)
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv", "convolution": "conv", "_convolution": "conv",
    "mkldnn_convolution": "conv", "thnn_conv2d": "conv", "_slow_conv2d_forward": "conv", "cudnn_convolution": "conv",
    "conv_transpose1d": "conv-transpose", "conv_transpose2d": "conv-transpose", "conv_transpose3d": "conv-transpose",
    "slow_conv_transpose2d": "conv-transpose", "cudnn_convolution_transpose": "conv-transpose",
    "linear": "matmul", "addmm": "matmul", "mm": "matmul", "bmm": "matmul", "baddbmm": "matmul",
    "quantized::linear_dynamic": "matmul", "quantized::linear": "matmul", "quantized::conv2d": "conv",
    "quantized::conv_transpose2d": "conv-transpose",
    "relu_": "activation", "leaky_relu_": "activation", "silu": "activation", "silu_": "activation",
    "hardtanh": "activation", "hardtanh_": "activation", "_softmax": "activation",
    "batch_norm": "norm", "native_batch_norm": "norm", "_native_batch_norm_legit_no_training": "norm",
    "instance_norm": "norm", "group_norm": "norm", "native_group_norm": "norm", "layer_norm": "norm",
    "native_layer_norm": "norm",
    "add_": "elementwise", "mul_": "elementwise", "sub_": "elementwise", "div_": "elementwise", "rsub": "elementwise",
    "cat": "concat", "stack": "concat",
    "view": "layout", "_unsafe_view": "layout", "permute": "layout", "contiguous": "layout", "clone": "layout",
    "copy_": "layout", "to": "layout", "_to_copy": "layout", "select_int": "layout", "t": "layout",
    "empty": "layout", "empty_like": "layout", "zeros": "layout", "ones": "layout", "as_strided": "layout",
    "upsample_nearest2d": "resize", "upsample_bilinear2d": "resize", "_upsample_nearest_exact2d": "resize",
    "interpolate": "resize",
    "quantize_per_tensor": "quantize", "dequantize_per_tensor": "quantize",
    "constant_pad_nd": "pad", "reflection_pad2d": "pad", "replicate_pad2d": "pad",
    "embedding": "gather", "index": "gather", "index_select": "gather",
    "avg_pool2d": "reduce", "max_pool2d": "reduce", "adaptive_avg_pool2d": "reduce",
}


def op_family(name: str) -> str:
    """The family of an op name from any runtime (``Conv``, ``CONV_2D``, ``aten::conv2d``, ``FusedConv``);
    ``other`` for a name the map does not know."""
    key = name.strip().lower()
    if key.startswith("aten::"):
        key = key[len("aten::"):]
    if key.startswith("torch_ops."):
        key = key.split(".", 1)[1]
    return _EXACT.get(key, _EXACT.get(key.split(".")[0], "other"))
