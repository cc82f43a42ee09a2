"""Running a Graph in emulated BF16, with the op categories of mc.precision's autocast.

Each node's precision is decided once, when the graph is compiled, from the op lists of
`precision/op_lists.py` (the same rules autocast applies while a model runs):

    lower precision (linear, conv2d, matmul)  inputs and weights rounded to BF16, FP32 accumulation,
                                              output rounded to BF16
    FP32 (softmax, layer_norm, exp, ...)      computed and kept in FP32
    fall-through (relu, reshape, max_pool2d)  BF16 iff its first floating input is BF16
    promote (add, mul, concat)                BF16 iff all floating inputs are BF16

What fusion changes: a fused GEMM ("linear+gelu", "conv2d+add+relu") applies its epilogue to the FP32
accumulator and rounds ONCE, where the unfused ops round the GEMM output and then each activation's
output -- the accuracy argument for BF16 fusion (Kalamkar et al., "A Study of BFLOAT16 for Deep
Learning Training", 2019; oneDNN post-ops). Values stay float32 arrays holding BF16 values.
"""
import numpy as np

# IR op -> the Function name whose category it takes (fused and graph-only ops)
OP_AS = {"scaled_masked_softmax": "softmax", "add_layer_norm": "layer_norm", "restride": "reshape",
         "flatten": "reshape", "unflatten": "reshape", "identity": "reshape", "constant": None,
         "batch_constant": None, "input": None, "quantize": None, "dequantize": None, "requantize": None,
         "lut": None, "qlinear": None, "qconv2d": None, "int_relu": None, "int_max_pool2d": None}


def category(node):
    """"lower", "fp32", "promote", "fallthrough", or None (inputs, constants, integer ops: never rounded)."""
    from ..precision.op_lists import op_category
    if "fn" in node.attrs:
        return op_category(node.attrs["fn"].name)
    name = OP_AS.get(node.op, node.op)
    return None if name is None else op_category(name)


def _is_float_array(node):
    """Python scalars (x / 2.0 records 2.0 as a constant node) are not arrays: they do not vote in promotion."""
    if node.op == "constant" and not isinstance(node.attrs["value"], np.ndarray):
        return False
    return node.dtype is not None and np.issubdtype(node.dtype, np.floating)


def low_precision_nodes(graph):
    """{node name: True if its output is a BF16 value} under autocast's rules, decided statically."""
    low = {}
    for node in graph.nodes:
        kind = category(node)
        floats = [i for i in node.inputs if _is_float_array(graph.node(i))]
        if kind == "lower":
            low[node.name] = True
        elif kind == "fallthrough":
            low[node.name] = bool(floats) and low[floats[0]]
        elif kind == "promote":
            low[node.name] = bool(floats) and all(low[i] for i in floats)
        else:
            low[node.name] = False
    return low


def bf16_step(node, step, is_low):
    """Wrap a node's step function with BF16 rounding of its inputs (lower ops) and of its output."""
    from ..precision import round_to_bf16

    def round_floats(values):
        return [round_to_bf16(v) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v for v in values]

    if category(node) == "lower":
        return lambda *values: round_to_bf16(step(*round_floats(values)))
    if is_low:
        return lambda *values: round_to_bf16(step(*values))
    return step


def bf16_weights(node):
    """A copy of a lower-precision node with its floating parameters rounded to BF16 (done once)."""
    from ..precision import round_to_bf16
    if category(node) != "lower" or not node.params:
        return node
    copy = node.copy()
    copy.params = {k: round_to_bf16(v) if v is not None and v.dtype == np.float32 else v
                   for k, v in node.params.items()}
    return copy
