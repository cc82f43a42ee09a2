"""The rewrite rules: clean-up, BatchNorm folding, layout, and the deck's FP32/BF16 fusion patterns.

Each rule is `Rule(pattern, replacement, "# before -> after")` (see pattern.py). They are grouped into
passes (plain lists) that `optimize` runs in order, each to a fixed point:

    CLEANUP   dropout / identity removal, constant folding, parameters absorbed into F.linear,
              common-subexpression elimination, dead-code elimination
    FOLD_BN   conv2d + batch_norm -> conv2d;  linear + batch_norm (N, C) -> linear
    LAYOUT    reshape / permute chains (View + Transpose + Contiguous + View) -> one restride op
    INT8      the float round-trips between integer layers removed (int8.py: the deck's INT8 patterns)
    FUSE      three linears on one input -> one linear (QKV); div + add + softmax; add + layer_norm;
              the GEMM epilogues of EPILOGUE_FUSIONS (conv2d + relu / add / add+relu / sigmoid /
              sigmoid+mul / hardtanh / silu / elu, linear + relu / gelu)

Fused GEMM nodes keep their op ("conv2d", "linear") and list the fused steps in attrs["epilogue"]; the
interpreter applies them in place in the GEMM's output buffer (kernels.py).
"""
import numpy as np

from .fold_bn import fold_bn_params
from .int8 import INT8
from .interpreter import make_step
from .ir import Node
from .pattern import P, Ref, Rule

# ---- small predicates ------------------------------------------------------------------------------------


def _epilogue(node):
    return tuple(s[0] for s in node.attrs.get("epilogue", ()))


def _gemm_with(epilogue):
    """where-constraint: a GEMM node with parameters whose fused steps are exactly `epilogue`."""
    return lambda node, graph: "weight" in node.params and _epilogue(node) == tuple(epilogue)


def _is_constant(graph, name):
    return graph.node(name).op == "constant"


# ---- clean-up ---------------------------------------------------------------------------------------------
def _identity_input(graph, m):
    return m.root.inputs[0]


def _is_noop_layout(node, graph):
    src = graph.node(node.inputs[0])
    if node.op == "reshape":
        return src.shape == node.shape
    return tuple(node.attrs["axes"]) == tuple(range(len(node.attrs["axes"])))


def _foldable(node, graph):
    if node.op in ("input", "constant", "batch_constant") or not node.inputs:
        return False
    if "fn" in node.attrs and node.attrs["fn"].name == "dropout":
        return False
    return all(_is_constant(graph, i) for i in node.inputs)


def _fold_constant(graph, m):
    node = m.root
    value = make_step(node)(*[graph.node(i).attrs["value"] for i in node.inputs])
    return Node(node.name, "constant", [], {"value": value}, source=node.source)


def _linear_with_constant_params(node, graph):
    return (node.attrs.get("n_inputs", 1) > 1 and "weight" not in node.params
            and all(_is_constant(graph, i) for i in node.inputs[1:node.attrs["n_inputs"]]))


def _absorb_linear_params(graph, m):
    node, n = m.root, m.root.attrs["n_inputs"]
    values = [np.asarray(graph.node(i).attrs["value"]) for i in node.inputs[1:n]]
    params = {"weight": values[0]}
    if len(values) > 1:
        params["bias"] = values[1]
    attrs = {k: v for k, v in node.attrs.items() if k != "n_inputs"}
    return Node(node.name, "linear", [node.inputs[0]] + node.inputs[n:], attrs, params, source=node.source)


def _twin(node, graph):
    """An earlier node computing the same thing: same op, inputs, attributes and parameter arrays."""
    for other in graph.nodes:
        if other is node:
            return None
        if (other.op == node.op and other.inputs == node.inputs and other.params.keys() == node.params.keys()
                and all(other.params[k] is node.params[k] for k in node.params)
                and _same_attrs(other.attrs, node.attrs)):
            return other
    return None


def _same_attrs(a, b):
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == y.shape
                    and x.dtype == y.dtype and np.array_equal(x, y)):
                return False
        elif type(x) is not type(y) or repr(x) != repr(y):
            return False
    return True


def _cse_candidate(node, graph):
    if node.op in ("input", "constant", "batch_constant") or not node.inputs:
        return False
    if "fn" in node.attrs and node.attrs["fn"].name == "dropout":
        return False
    return _twin(node, graph) is not None


def _unused(node, graph):
    return node.op != "input" and node.name not in graph.outputs and \
        not any(node.name in n.inputs for n in graph.nodes)


CLEANUP = [
    Rule(P(("dropout", "identity")), _identity_input, "# dropout (eval), identity -> nothing"),
    Rule(P(("reshape", "permute"), where=_is_noop_layout), _identity_input,
         "# reshape / permute that changes nothing -> nothing"),
    Rule(P("*", where=_foldable), _fold_constant, "# op(constants) -> constant (constant folding)"),
    Rule(P("linear", where=_linear_with_constant_params), _absorb_linear_params,
         "# linear(x, constant W, constant b) -> linear with parameters"),
    Rule(P("*", where=_cse_candidate), lambda g, m: _twin(m.root, g).name,
         "# op repeated on the same inputs -> one op (common subexpression)"),
    Rule(P("*", where=_unused), lambda g, m: [], "# op whose result is never used -> nothing (dead code)"),
]


# ---- BatchNorm folding -------------------------------------------------------------------------------------
def _fold_bn(graph, m):
    layer, bn = m["layer"], m.root
    p = bn.params
    weight, bias = fold_bn_params(layer.params["weight"], layer.params.get("bias"), p["running_mean"],
                                  p["running_var"], p.get("weight"), p.get("bias"), bn.attrs["eps"])
    return Node(layer.name, layer.op, layer.inputs, layer.attrs, {"weight": weight, "bias": bias},
                source=f"{layer.source}+{bn.source}")


def _channels_last_is_axis1(node, graph):
    return node.shape is not None and len(node.shape) == 2


FOLD_BN = [
    Rule(P("batch_norm", P("conv2d", name="layer", where=_gemm_with(()))), _fold_bn, "# conv2d, batch_norm -> conv2d"),
    Rule(P("batch_norm", P("linear", name="layer", where=_gemm_with(())), where=_channels_last_is_axis1), _fold_bn,
         "# linear, batch_norm1d (N, C) -> linear"),
]


# ---- layout ---------------------------------------------------------------------------------------------------
LAYOUT_OPS = ("reshape", "permute", "restride")


def _steps(node):
    if node.op == "restride":
        return list(node.attrs["steps"])
    return [("reshape", node.attrs["shape"])] if node.op == "reshape" else [("permute", node.attrs["axes"])]


def _merge_layout(graph, m):
    first, second = m["first"], m.root
    return Node(second.name, "restride", first.inputs, {"steps": tuple(_steps(first) + _steps(second))},
                source=second.source)


LAYOUT = [
    Rule(P(LAYOUT_OPS, P(LAYOUT_OPS, name="first")), _merge_layout,
         "# view, transpose, (contiguous), view -> one restride op"),
]


# ---- fusions ---------------------------------------------------------------------------------------------------
EPILOGUE_FUSIONS = [  # (GEMM op, steps fused already, next op): the deck's FP32 & BF16 list
    ("conv2d", (), "relu"),
    ("conv2d", (), "add"),
    ("conv2d", ("add",), "relu"),
    ("conv2d", (), "sigmoid"),
    ("conv2d", ("sigmoid",), "mul"),
    ("conv2d", (), "hardtanh"),
    ("conv2d", (), "silu"),
    ("conv2d", (), "elu"),
    ("linear", (), "relu"),
    ("linear", (), "gelu"),
]


def _step_of(node):
    """The epilogue step that computes activation node `node`."""
    a = node.attrs
    if node.op == "hardtanh":
        return ("hardtanh", a["min_val"], a["max_val"])
    if node.op == "elu":
        return ("elu", a.get("alpha", 1.0))
    if node.op == "gelu":
        return ("gelu", a.get("approximate", "none"))
    return (node.op,)


def _extend(gemm, root, step, operand=None):
    attrs = dict(gemm.attrs)
    attrs["epilogue"] = tuple(gemm.attrs.get("epilogue", ())) + (step,)
    inputs = gemm.inputs + ([operand] if operand is not None else [])
    return Node(gemm.name, gemm.op, inputs, attrs, gemm.params, source=gemm.source)


def _fuse_activation(graph, m):
    return _extend(m["gemm"], m.root, _step_of(m.root))


def _fuse_binary(graph, m):
    gemm, root, other = m["gemm"], m.root, m["other"]
    if root.shape != gemm.shape or root.dtype != gemm.dtype:
        return None  # the operand would broadcast the GEMM output up: not an in-place update
    return _extend(gemm, root, (root.op,), other.name)


def epilogue_rule(base, before, op):
    """The Rule fusing `op` into a `base` GEMM whose fused steps are `before`."""
    label = "+".join((base,) + tuple(before))
    comment = f"# {label}, {op} -> {label}+{op}"
    gemm = P(base, name="gemm", where=_gemm_with(before))
    if op in ("add", "mul"):
        return Rule(P(op, gemm, P("*", name="other"), commutative=True), _fuse_binary, comment)
    return Rule(P(op, gemm), _fuse_activation, comment)


def _fuse_swish(graph, m):
    return _extend(m["gemm"], m.root, ("silu",))


SWISH = Rule(P("mul", P("conv2d", name="gemm", where=_gemm_with(())), P("sigmoid", Ref("gemm")), commutative=True),
             _fuse_swish, "# conv2d, sigmoid, mul (x * sigmoid(x)) -> conv2d+silu")


def _softmax_last_axis(node, graph):
    return node.attrs["axis"] in (-1, len(node.shape) - 1)


def _fuse_attention(graph, m):
    div, root = m["div"], m.root
    inputs = div.inputs + ([m["mask"].name] if "mask" in m else [])
    return Node(root.name, "scaled_masked_softmax", inputs, {"axis": -1}, source=root.source)


def _fuse_add_layer_norm(graph, m):
    add, ln = m["add"], m.root
    return Node(ln.name, "add_layer_norm", add.inputs, ln.attrs, ln.params, source=f"{add.source}+{ln.source}")


def _plain_linear(node, graph):
    return node.op == "linear" and "weight" in node.params and not node.attrs.get("epilogue")


def _linear_siblings(node, graph):
    """The plain linears (with parameters) reading the same input as `node`, `node` first, in graph order."""
    if not _plain_linear(node, graph):
        return []
    group = [n for n in graph.nodes if _plain_linear(n, graph) and n.inputs == node.inputs
             and n.params["weight"].shape[1] == node.params["weight"].shape[1]
             and n.params["weight"].dtype == node.params["weight"].dtype]
    return group if group and group[0] is node and len(group) >= 3 else []


def _fuse_qkv(graph, m):
    group = _linear_siblings(m.root, graph)[:3]
    weights = [n.params["weight"] for n in group]
    biases = [n.params.get("bias") if n.params.get("bias") is not None else np.zeros(w.shape[0], w.dtype)
              for n, w in zip(group, weights)]
    fused = Node(graph.fresh_name("qkv_" + m.root.name), "linear", m.root.inputs, {},
                 {"weight": np.concatenate(weights), "bias": np.concatenate(biases)}, source=m.root.source)
    out, start = [fused], 0
    for n, w in zip(group, weights):
        out.append(Node(n.name, "getitem", [fused.name], {"index": (Ellipsis, slice(start, start + w.shape[0]))},
                        source=n.source))
        start += w.shape[0]
    m.extra += group[1:]
    return out


FUSE = [
    Rule(P("linear", where=lambda n, g: bool(_linear_siblings(n, g))), _fuse_qkv,
         "# linear, linear, linear (same input) -> one linear with concatenated weights (QKV)"),
    Rule(P("softmax", P("add", P("div", name="div"), P("*", name="mask"), commutative=True),
           where=_softmax_last_axis), _fuse_attention, "# div, add, softmax -> scaled_masked_softmax"),
    Rule(P("softmax", P("div", name="div"), where=_softmax_last_axis), _fuse_attention,
         "# div, softmax -> scaled_masked_softmax (no mask)"),
    Rule(P("layer_norm", P("add", name="add")), _fuse_add_layer_norm, "# add, layer_norm -> add_layer_norm"),
    SWISH,
] + [epilogue_rule(base, before, op) for base, before, op in EPILOGUE_FUSIONS]

PASSES = {"cleanup": CLEANUP, "fold_bn": FOLD_BN, "layout": LAYOUT, "int8": INT8, "fuse": FUSE}
DEFAULT_PASSES = ("cleanup", "fold_bn", "layout", "int8", "fuse", "cleanup")
