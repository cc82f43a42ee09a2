"""INT8 graphs: the integer layers of a converted model (mc.quant.convert) as nodes, and the deck's INT8 fusions.

Tracing an integer model gives its *unfused integer path*: every integer layer becomes
    quantize (s_in, z_in) -> qlinear / qconv2d (int8 codes in, int8 codes out) -> dequantize (s_out, z_out)
and everything between integer layers (ReLU, max-pool, flatten) runs in float. The rules below remove the
float round-trips, each exact (bit for bit equal to the unfused path), because dequantize x = (q - z) s
with s > 0 is increasing and commutes with the ops that only move or compare values:

    dequantize, relu -> max(q, z) on codes, dequantize          (relu(0) = 0 is the code z)
    dequantize, max_pool2d -> max_pool2d on codes, dequantize   (max commutes with an increasing map)
    dequantize, flatten / reshape / unflatten / identity -> the same on codes, dequantize
    flatten / reshape / unflatten / identity / max_pool2d, quantize -> quantize, the same on codes
    dequantize, quantize (same qparams) -> nothing              (rint((q - z) s / s) + z = q)
    dequantize, quantize -> requantize                          (one op on codes: new scale and zero point)
    dequantize, gelu / sigmoid / tanh / silu / elu / hardtanh, quantize -> lookup table on codes
        q_out = T[q - qmin], T = quantize(f(dequantize(qmin..qmax))): 256 entries for 8 bits, computed once
        with the same float kernels, so the table reproduces the unfused path exactly
    qlinear / qconv2d, max(q, z) -> qlinear+relu / qconv2d+relu  (the requantization clamps at z instead)
    qlinear / qconv2d, lookup table -> qlinear+lut / qconv2d+lut (the activation applied to the GEMM's codes)
    qconv2d, integer add (a residual) [, max(q, z)] -> qconv2d+add [+relu]   (mc.quant's int_add on the codes)
    dequantize, bmm [, div] [, quantize] -> int_bmm[+div][+requantize]   (the attention bmm's, INT8 operands;
        the epilogue x s_a s_b [/ d] [-> quantize] in the same float32 steps, see the end of this file)
QuantizedAdd is called as `.add(a, b)` (FloatFunctional), not through forward: the tracer wraps that method
while it runs and records quantize, quantize -> qadd -> dequantize. A dynamically quantized Linear
(mc.quant.quantize_dynamic) is one node, dynamic_linear[+relu]: float in and out, its activation qparams taken
from each batch when the graph runs, so it has no integer neighbours to fuse with.
After them, a chain of integer layers has no float tensor between its ops (Jacob et al., CVPR 2018; the
"INT8 IN -> INT8 OUT" patterns of the deck). The integer arithmetic is mc.quant's (integer_ops), so an
optimised graph computes exactly what the converted model computes.
"""
import numpy as np

from .ir import Node
from .pattern import P, Rule

# ---- tracing: integer layers -> nodes -----------------------------------------------------------------------


def _qp(qp):
    return {"scale": np.float32(qp.scale), "zero_point": int(qp.zero_point), "qmin": int(qp.qmin),
            "qmax": int(qp.qmax)}


def _weighted(m, op, geometry):
    qmin, qmax = m._out_range()
    out = _qp(m.out_qp)
    params = {"weight_int": m.weight_int, "weight_zero_point": m.weight_zero_point,
              "multiplier_m0": m.multiplier_m0, "multiplier_shift": m.multiplier_shift}
    if m.bias_int is not None:
        params["bias_int"] = m.bias_int
    attrs = dict(geometry, input_zero_point=int(m.in_qp.zero_point), output_zero_point=out["zero_point"],
                 qmin=qmin, qmax=qmax)
    if m.relu:  # fused by mc.quant.convert already: qmin is raised to the zero point; the label says so
        attrs["epilogue"] = (("relu",),)
    return [("quantize", _qp(m.in_qp), {}), (op, attrs, params),
            ("dequantize", {"scale": out["scale"], "zero_point": out["zero_point"]}, {})]


def convert_qlinear(m):
    return _weighted(m, "qlinear", {})


def convert_qconv2d(m):
    return _weighted(m, "qconv2d", {"kernel_size": tuple(int(k) for k in m.kernel_size),
                                    "stride": tuple(m.stride), "padding": tuple(m.padding)})


def convert_dynamic_linear(m):
    """DynamicQuantizedLinear as one node: float in, float out, its int8 weight and scales as parameters; the
    activation's qparams come from each batch when the graph runs (nothing around it is integer to fuse)."""
    attrs = {"per_row": bool(m.per_row), "act_qmin": int(m.act_qmin), "act_qmax": int(m.act_qmax),
             "relu": bool(m.relu)}
    if m.relu:  # fused by mc.quant.quantize_dynamic already; the label says so
        attrs["epilogue"] = (("relu",),)
    params = {"weight_int": m.weight_int, "weight_zero_point": m.weight_zero_point, "weight_scale": m.weight_scale,
              "bias": m.bias}
    return "dynamic_linear", attrs, params


def convert_qmax_pool2d(m):
    (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
    return "max_pool2d", {"kernel": (kh, kw), "stride": (sh, sw), "pads": (ph, ph, pw, pw), "dilation": (1, 1)}, {}


def convert_quantize_codes(m):
    """QuantizeCodes (the float boundary before an integer bmm): quantize, dequantize."""
    q = _qp(m.qp)
    return [("quantize", q, {}), ("dequantize", {"scale": q["scale"], "zero_point": q["zero_point"]}, {})]


def convert_quantized_bmm(m):
    """QuantizedBmm as the deck's unfused INT8 pattern: (dequantized operands) bmm [-> div] [-> quantize,
    dequantize [-> permute, flatten: heads merged]]. The rules below collapse it into one int_bmm node."""
    grid = lambda qp: (np.float32(qp.scale), int(qp.zero_point))  # noqa: E731
    steps = [("bmm", {"transpose_b": bool(m.transpose_b), "grid_a": grid(m.a_qp), "grid_b": grid(m.b_qp)}, {})]
    if m.divisor is not None:
        steps.append(("div_scalar", {"divisor": float(m.divisor)}, {}))
    if m.out_qp is not None:
        q = _qp(m.out_qp)
        steps += [("quantize", q, {}), ("dequantize", {"scale": q["scale"], "zero_point": q["zero_point"]}, {})]
        if m.merge_heads:
            steps += [("permute", {"axes": (0, 2, 1, 3)}, {}), ("flatten", {"start_dim": 2, "end_dim": 3}, {})]
    return steps


def quantized_leaf_layers():
    """{class: converter} for mc.quant's integer modules (empty if mc.quant cannot be imported)."""
    try:
        from ..quant import modules as qmodules
        from ..quant import quantized as Q
    except ImportError:  # pragma: no cover - quant is part of the package; keep graph usable without it
        return {}
    table = {
        "QuantizedLinear": convert_qlinear,
        "DynamicQuantizedLinear": convert_dynamic_linear,
        "QuantizedConv2d": convert_qconv2d,
        "QuantizedMaxPool2d": convert_qmax_pool2d,
        "QuantizedReLU": lambda m: ("relu", {}, {}),
        "QuantizedFlatten": lambda m: ("flatten", {"start_dim": m.start_dim, "end_dim": m.end_dim}, {}),
        "QuantizedUnflatten": lambda m: ("unflatten", {"dim": m.dim, "sizes": tuple(m.unflattened_size)}, {}),
        "QuantizedIdentity": lambda m: ("identity", {}, {}),
    }
    out = {getattr(Q, name): fn for name, fn in table.items() if hasattr(Q, name)}
    if hasattr(qmodules, "Identity"):
        out[qmodules.Identity] = lambda m: ("identity", {}, {})
    try:
        from ..quant import quantized_attention as QA
    except ImportError:  # pragma: no cover
        return out
    out[QA.QuantizeCodes] = convert_quantize_codes
    out[QA.QuantizedBmm] = convert_quantized_bmm
    return out


# ---- kernels --------------------------------------------------------------------------------------------------
def _quantize(node):
    from ..quant.qparams import quantize
    a = node.attrs
    return lambda x: quantize(x, a["scale"], a["zero_point"], a["qmin"], a["qmax"])


def _dequantize(node):
    from ..quant.qparams import dequantize
    a = node.attrs
    return lambda q: dequantize(q, a["scale"], a["zero_point"])


def _requantize(node):
    from ..quant.qparams import dequantize, quantize
    a = node.attrs
    return lambda q: quantize(dequantize(q, a["scale_in"], a["zero_point_in"]), a["scale"], a["zero_point"],
                              a["qmin"], a["qmax"])


def _lookup(q, table, qmin):
    return table[q.astype(np.int32) - qmin]


def _int_add(qa, qb, step):
    from ..quant import integer_ops
    _, sa, za, sb, zb, s_out, z_out, qmin, qmax = step
    return integer_ops.int_add(qa, sa, za, qb, sb, zb, s_out, z_out, qmin, qmax)


def _epilogue(node):
    """Codes -> codes steps after the integer GEMM, in attrs["epilogue"]:
        ("relu",)            already done: the requantization clamps at z (qmin raised to z)
        ("add", sa, za, sb, zb, s_out, z_out, qmin, qmax)   integer residual add of the next operand
        ("relu", z)          max(q, z) after an add
        ("lut", table, qmin) a table lookup (an activation between two integer layers)
    A relu clamp at z >= 0 makes requantize pick uint8: the codes keep the dtype of the unfused path."""
    steps, dtype = tuple(node.attrs.get("epilogue", ())), node.attrs.get("codes_dtype")

    def after(q, operands):
        operands = iter(operands)
        for step in steps:
            if step[0] == "add":
                q = _int_add(q, next(operands), step)
            elif step[0] == "relu" and len(step) == 2:
                q = np.maximum(q, np.asarray(step[1]).astype(q.dtype))
            elif step[0] == "lut":
                q = _lookup(q, step[1], step[2])
        return q if dtype is None else q.astype(dtype, copy=False)
    return after


def _qlinear(node):
    from ..quant import integer_ops
    a, p = node.attrs, node.params
    packed = integer_ops.prepare_weight(p["weight_int"], p["weight_zero_point"])
    after = _epilogue(node)
    return lambda q, *ops: after(integer_ops.int_linear(q, a["input_zero_point"], packed, p.get("bias_int"),
                                                        p["multiplier_m0"], p["multiplier_shift"],
                                                        a["output_zero_point"], a["qmin"], a["qmax"], node.name), ops)


def _qconv2d(node):
    from ..quant import integer_ops
    a, p = node.attrs, node.params
    w = p["weight_int"]
    packed = integer_ops.prepare_weight(w.reshape(w.shape[0], -1), p["weight_zero_point"])
    after = _epilogue(node)
    return lambda q, *ops: after(integer_ops.int_conv2d(q, a["input_zero_point"], packed, a["kernel_size"],
                                                        a["stride"], a["padding"], p.get("bias_int"),
                                                        p["multiplier_m0"], p["multiplier_shift"],
                                                        a["output_zero_point"], a["qmin"], a["qmax"], node.name), ops)


def _dynamic_linear(node):
    from ..quant import integer_ops
    a, p = node.attrs, node.params
    n = p["weight_int"].shape[0]
    layer = integer_ops.DynamicIntLinear(p["weight_int"], np.broadcast_to(p["weight_zero_point"], (n,)),
                                         np.broadcast_to(p["weight_scale"], (n,)), p.get("bias"), a["per_row"],
                                         a["act_qmin"], a["act_qmax"], node.name, relu=a["relu"])
    return lambda x: layer(np.ascontiguousarray(x.reshape(-1, x.shape[-1]))).reshape(x.shape[:-1] + (n,))


def _int_relu(node):
    z = node.attrs["zero_point"]
    return lambda q: np.maximum(q, np.asarray(z).astype(q.dtype))


def _int_max_pool2d(node):
    from numpy.lib.stride_tricks import sliding_window_view
    a = node.attrs

    def step(q):
        top, bottom, left, right = a["pads"]
        if top or bottom or left or right:
            q = np.pad(q, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=a["qmin"])
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        return sliding_window_view(q, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].max(axis=(-2, -1))
    return step


KERNELS = {
    "quantize": _quantize,
    "dequantize": _dequantize,
    "requantize": _requantize,
    "lut": lambda n: lambda q: _lookup(q, n.attrs["table"], n.attrs["qmin"]),
    "qadd": lambda n: lambda qa, qb: _int_add(qa, qb, n.attrs["step"]),
    "qlinear": _qlinear,
    "qconv2d": _qconv2d,
    "dynamic_linear": _dynamic_linear,
    "int_relu": _int_relu,
    "int_max_pool2d": _int_max_pool2d,
    "bmm": lambda n: _bmm(n),
    "div_scalar": lambda n: lambda x: x / np.float32(n.attrs["divisor"]),
    "int_bmm": lambda n: _int_bmm(n),
}


# ---- rules ------------------------------------------------------------------------------------------------------
def _dequantize_input(node, graph):
    return graph.node(node.inputs[0]).op == "dequantize"


def _sink(int_op, attrs_of=lambda graph, m: {}):
    """Replacement: op(dequantize(q)) -> dequantize(int_op(q)) with the same qparams."""
    def replace(graph, m):
        dq, root = m["dq"], m.root
        attrs = dict(root.attrs) if int_op is None else attrs_of(graph, m)
        inner = Node(graph.fresh_name(f"{root.name}_int"), int_op or root.op, dq.inputs, attrs, root.params,
                     source=root.source)
        return [inner, Node(root.name, "dequantize", [inner.name], dict(dq.attrs), source=dq.source)]
    return replace


def _same_qparams(node, graph):
    dq = graph.node(node.inputs[0])
    return dq.op == "dequantize" and (dq.attrs["scale"], dq.attrs["zero_point"]) == \
        (node.attrs["scale"], node.attrs["zero_point"])


def _codes_range(graph, codes_name):
    src = graph.node(codes_name)
    if "qmax" in src.attrs:
        return src.attrs["qmin"], src.attrs["qmax"]
    info = np.iinfo(src.dtype)
    return int(info.min), int(info.max)


def _requantize_node(graph, m):
    dq, root = m["dq"], m.root
    attrs = dict(root.attrs, scale_in=dq.attrs["scale"], zero_point_in=dq.attrs["zero_point"])
    return Node(root.name, "requantize", dq.inputs, attrs, source=root.source)


UNARY_FLOAT = ("gelu", "sigmoid", "tanh", "silu", "elu", "hardtanh", "relu")


def _table(graph, m):
    """quantize(f(dequantize(codes))) evaluated once on every code of the input range."""
    from .interpreter import make_step
    dq, act, root = m["dq"], m["act"], m.root
    qmin, qmax = _codes_range(graph, dq.inputs[0])
    codes = np.arange(qmin, qmax + 1).astype(graph.node(dq.inputs[0]).dtype)
    values = make_step(root)(make_step(act)(make_step(dq)(codes)))
    return Node(root.name, "lut", dq.inputs, {"table": values, "qmin": qmin}, source=act.source)


def _hoist_quantize(graph, m):
    """quantize(op(y)) -> op(quantize(y)) for a move (flatten, ...) or max_pool2d: quantize is element-wise and
    increasing, so it commutes with both (a max of quantized values is the quantized max)."""
    layout, root = m["layout"], m.root
    q = Node(graph.fresh_name(f"{root.name}_early"), "quantize", layout.inputs, dict(root.attrs), source=root.source)
    if layout.op == "max_pool2d":
        attrs = dict(layout.attrs, qmin=root.attrs["qmin"])
        return [q, Node(root.name, "int_max_pool2d", [q.name], attrs, source=layout.source)]
    return [q, Node(root.name, layout.op, [q.name], dict(layout.attrs), layout.params, source=layout.source)]


def _integer_gemm_with(*epilogue):
    """where-constraint: an integer GEMM whose fused steps are exactly `epilogue` (names)."""
    return lambda node, graph: node.op in ("qlinear", "qconv2d") and \
        tuple(s[0] for s in node.attrs.get("epilogue", ())) == tuple(epilogue)


def _extend_integer(gemm, step, attrs=None, operand=None):
    new_attrs = dict(gemm.attrs, **(attrs or {}))
    new_attrs["epilogue"] = tuple(gemm.attrs.get("epilogue", ())) + (step,)
    inputs = gemm.inputs + ([operand] if operand is not None else [])
    return Node(gemm.name, gemm.op, inputs, new_attrs, gemm.params, source=gemm.source)


def _fuse_int_relu(graph, m):
    gemm, relu = m["gemm"], m.root
    z = relu.attrs["zero_point"]
    if gemm.attrs.get("epilogue"):  # after an add: an explicit max(q, z) on the sum's codes
        return _extend_integer(gemm, ("relu", z))
    attrs = {"qmin": max(gemm.attrs["qmin"], z), "codes_dtype": np.dtype(relu.dtype)}
    return _extend_integer(gemm, ("relu",), attrs)


def _fuse_lut(graph, m):
    lut = m.root
    return _extend_integer(m["gemm"], ("lut", lut.attrs["table"], lut.attrs["qmin"]))


def _fuse_int_add(graph, m):
    gemm, add, other = m["gemm"], m.root, m["other"]
    step = add.attrs["step"]
    if add.inputs[0] != gemm.name:  # the GEMM is the second operand: swap the operands' qparams
        step = (step[0], step[3], step[4], step[1], step[2]) + tuple(step[5:])
    return _extend_integer(gemm, step, operand=other.name)


DQ = P("dequantize", name="dq")
LAYOUT_ON_CODES = ("flatten", "reshape", "unflatten", "identity", "dropout", "restride", "permute")

INT8 = [
    Rule(P("relu", DQ), _sink("int_relu", lambda g, m: {"zero_point": m["dq"].attrs["zero_point"]}),
         "# dequantize, relu -> max(q, z) on codes, dequantize"),
    Rule(P("max_pool2d", DQ), _sink("int_max_pool2d", lambda g, m: dict(m.root.attrs,
                                                                         qmin=_codes_range(g, m["dq"].inputs[0])[0])),
         "# dequantize, max_pool2d -> max_pool2d on codes, dequantize"),
    Rule(P(LAYOUT_ON_CODES, DQ), _sink(None), "# dequantize, flatten / reshape / identity -> on codes, dequantize"),
    Rule(P("quantize", P(LAYOUT_ON_CODES + ("max_pool2d",), name="layout")), _hoist_quantize,
         "# flatten / reshape / identity / max_pool2d, quantize -> quantize, the same on codes"),
    Rule(P("quantize", DQ, where=_same_qparams), lambda g, m: m["dq"].inputs[0],
         "# dequantize, quantize (same qparams) -> nothing"),
    Rule(P("quantize", P(UNARY_FLOAT, DQ, name="act")), _table,
         "# dequantize, gelu / sigmoid / tanh / silu / elu / hardtanh, quantize -> lookup table on codes"),
    Rule(P("quantize", DQ), _requantize_node, "# dequantize, quantize -> requantize"),
    Rule(P("qadd", P(("qlinear", "qconv2d"), name="gemm", where=_integer_gemm_with()), P("*", name="other"),
           commutative=True), _fuse_int_add, "# qconv2d / qlinear, integer add -> qconv2d+add / qlinear+add"),
    Rule(P("int_relu", P(("qlinear", "qconv2d"), name="gemm", where=_integer_gemm_with())), _fuse_int_relu,
         "# qlinear / qconv2d, relu on codes -> qlinear+relu / qconv2d+relu (clamp at the zero point)"),
    Rule(P("int_relu", P(("qlinear", "qconv2d"), name="gemm", where=_integer_gemm_with("add"))), _fuse_int_relu,
         "# qconv2d+add / qlinear+add, relu on codes -> qconv2d+add+relu / qlinear+add+relu"),
    Rule(P("lut", P(("qlinear", "qconv2d"), name="gemm", where=_integer_gemm_with())), _fuse_lut,
         "# qlinear / qconv2d, lookup table -> qlinear+lut / qconv2d+lut"),
]


# ---- the attention bmm's: dequantize -> bmm (-> div) (-> quantize) -> int_bmm --------------------------------------
# Unfused (traced from mc.quant's QuantizedMultiheadAttention, or written by hand), a bmm reads two dequantized
# code tensors. Its float kernel evaluates the product of the real values the codes stand for: when both inputs
# lie on their grids (x = dequantize(q), recovered exactly by q = rint(x / s) + z) it sums (q_a - z_a)(q_b - z_b)
# in integers and rounds once, float32(acc) * float32(s_a s_b); off the grids it is a plain float matmul.
# Fused, int_bmm reads the codes themselves (no float operands), runs the integer GEMM (int32, exact) and then,
# in one epilogue, the same float32 steps: x s_a s_b [/ d] [-> quantize(s_out, z_out)] (integer_ops.
# int_bmm_epilogue, the very function QuantizedMultiheadAttention calls), so fused == unfused bit for bit.
def _codes_on_grid(x, scale, zero_point):
    """The int8 / uint8 codes q with dequantize(q) == x exactly, or None if x is not on the grid."""
    from ..quant.qparams import dequantize
    if x.dtype != np.float32 or not np.isfinite(x).all():
        return None
    q = np.rint(x / np.float32(scale)) + zero_point
    lo, hi = (q.min(), q.max()) if q.size else (0, 0)
    if lo >= 0 and hi <= 255:
        q = q.astype(np.uint8)
    elif lo >= -128 and hi <= 127:
        q = q.astype(np.int8)
    else:
        return None
    return q if np.array_equal(dequantize(q, scale, zero_point), x) else None


def _bmm(node):
    from ..quant import integer_ops
    a = node.attrs

    def step(x, y):
        if a.get("transpose_b"):
            y = np.swapaxes(y, -1, -2)
        if a.get("grid_a") is not None and a.get("grid_b") is not None:
            (sa, za), (sb, zb) = a["grid_a"], a["grid_b"]
            qa, qb = _codes_on_grid(x, sa, za), _codes_on_grid(y, sb, zb)
            if qa is not None and qb is not None:
                return integer_ops.int_bmm_epilogue(integer_ops.int_bmm(qa, za, qb, zb, node.name), sa, sb)
        return np.matmul(x, y).astype(np.float32)
    return step


def _int_bmm(node):
    from ..quant import integer_ops
    a = node.attrs
    steps = dict(a.get("epilogue", ()))

    def step(qa, qb):
        if a["transpose_b"]:
            qb = np.swapaxes(qb, -1, -2)
        acc = integer_ops.int_bmm(qa, a["zero_point_a"], qb, a["zero_point_b"], node.name)
        return integer_ops.int_bmm_epilogue(acc, a["scale_a"], a["scale_b"], steps.get("div"),
                                            steps.get("requantize"))
    return step


def _fuse_bmm(graph, m):
    """int_bmm on the codes of both dequantize nodes; the div and the quantize (if matched) in its epilogue."""
    bmm, dqa, dqb = m["bmm"], m["dqa"], m["dqb"]
    epilogue = []
    if "div" in m:
        epilogue.append(("div", float(m["div"].attrs["divisor"])))
    if m.root.op == "quantize":
        q = m.root.attrs
        epilogue.append(("requantize", (q["scale"], q["zero_point"], q["qmin"], q["qmax"])))
    attrs = {"transpose_b": bool(bmm.attrs.get("transpose_b", False)), "scale_a": dqa.attrs["scale"],
             "zero_point_a": dqa.attrs["zero_point"], "scale_b": dqb.attrs["scale"],
             "zero_point_b": dqb.attrs["zero_point"], "epilogue": tuple(epilogue)}
    return Node(m.root.name, "int_bmm", [dqa.inputs[0], dqb.inputs[0]], attrs, source=bmm.source)


def _not_read_only_by(*ops):
    """where-constraint: the node is an output or is not read by exactly one node of `ops` (so the longer
    pattern ending at that reader gets the chance to fuse it first)."""
    def where(node, graph):
        readers = graph.consumers()[node.name]
        if node.name in graph.outputs or len(readers) != 1:
            return True
        return graph.node(readers[0]).op not in ops
    return where


def _bmm_pattern(where=None):
    return P("bmm", P("dequantize", name="dqa"), P("dequantize", name="dqb"), name="bmm", where=where)


BMM_RULES = [
    Rule(P("quantize", P("div_scalar", _bmm_pattern(), name="div")), _fuse_bmm,
         "# dequantize, bmm, div, quantize -> int_bmm+div+requantize (INT8 in, INT8 out)"),
    Rule(P("quantize", _bmm_pattern()), _fuse_bmm,
         "# dequantize, bmm, quantize -> int_bmm+requantize (INT8 in, INT8 out)"),
    Rule(P("div_scalar", _bmm_pattern(), name="div", where=_not_read_only_by("quantize")), _fuse_bmm,
         "# dequantize, bmm, div -> int_bmm+div (INT8 in, float out: scaled attention scores)"),
    Rule(_bmm_pattern(where=_not_read_only_by("div_scalar", "quantize")), _fuse_bmm,
         "# dequantize, bmm -> int_bmm (INT8 in, float out)"),
]
INT8.extend(BMM_RULES)
