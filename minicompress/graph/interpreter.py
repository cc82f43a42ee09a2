"""The interpreter: run a Graph on NumPy arrays, node by node, in its topological order.

`compile_graph(graph)` turns every node into a small closure `step(*input_arrays) -> array` (attributes and
parameters bound once), and computes where each value is read for the last time so that it can be
dropped (a fused op's buffer is then the only copy alive). `run(graph, *inputs)` compiles and runs once.

Ops with a kernel here are listed in `KERNELS` (op name -> maker of the step function). A node traced
from a Function this module does not know carries the Function class in attrs["fn"] and its non-tensor
arguments in attrs["args"] / attrs["kwargs"]; it runs as `fn.forward(Context(), *args, **kwargs)`, exactly
what the model ran. Any other op is an error that names the node.
"""
import numpy as np

from ..core import Context, Tensor
from . import kernels as K

SLOT = "<tensor>"  # marks where a node input goes in a generic Function call's argument template


def _linear(node):
    p, epilogue = node.params, tuple(node.attrs.get("epilogue", ()))
    if "weight" in p:
        weight, bias = p["weight"], p.get("bias")
        return lambda x, *ops: K.linear(x, weight, bias, epilogue, ops)
    n_main = node.attrs.get("n_inputs", 2)
    return lambda *a: K.linear(a[0], a[1], a[2] if n_main == 3 else None, epilogue, a[n_main:])


def _conv2d(node):
    a, p = node.attrs, node.params
    weight, bias, epilogue = p["weight"], p.get("bias"), tuple(a.get("epilogue", ()))
    groups = a.get("groups", 1)
    geometry = (a["stride"], a["pads"], a["dilation"], groups)
    packed = K.pack_conv_weight(weight, groups)
    return lambda x, *ops: K.conv2d(x, weight, bias, *geometry, epilogue, ops, packed=packed)


def _batch_norm(node):
    p, eps = node.params, node.attrs["eps"]
    return lambda x: K.batch_norm(x, p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"), eps)


def _layer_norm(node):
    a, p = node.attrs, node.params
    return lambda x: K.layer_norm(x, a["normalized_ndim"], p.get("weight"), p.get("bias"), a["eps"])


def _add_layer_norm(node):
    a, p = node.attrs, node.params
    return lambda x, y: K.add_layer_norm(x, y, a["normalized_ndim"], p.get("weight"), p.get("bias"), a["eps"])


def _activation(step_of):
    def make(node):
        step = step_of(node.attrs)
        return lambda x: K.activation(x, step)
    return make


def _generic(node):
    fn, template, kwargs = node.attrs["fn"], node.attrs["args"], node.attrs.get("kwargs", {})

    def step(*values):
        it = iter(values)
        args = [next(it) if a is SLOT else a for a in template]
        return fn.forward(Context(), *args, **kwargs)
    return step


def _binary(ufunc):
    return lambda node: ufunc


def _unary(ufunc):
    return lambda node: ufunc


def _constant(node):
    value = node.attrs["value"]
    return lambda: value


KERNELS = {
    "constant": _constant,
    "batch_constant": lambda n: lambda x: np.broadcast_to(n.attrs["value"], x.shape[:1] + n.attrs["value"].shape[1:]),
    "linear": _linear,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "add_layer_norm": _add_layer_norm,
    "scaled_masked_softmax": lambda n: lambda *a: K.scaled_masked_softmax(*a, axis=n.attrs["axis"]),
    "softmax": lambda n: lambda x: K.softmax(x, n.attrs["axis"]),
    "log_softmax": lambda n: lambda x: K.log_softmax(x, n.attrs["axis"]),
    "relu": _activation(lambda a: ("relu",)),
    "sigmoid": _activation(lambda a: ("sigmoid",)),
    "silu": _activation(lambda a: ("silu",)),
    "tanh": _unary(np.tanh),
    "gelu": _activation(lambda a: ("gelu", a.get("approximate", "none"))),
    "elu": _activation(lambda a: ("elu", a.get("alpha", 1.0))),
    "hardtanh": _activation(lambda a: ("hardtanh", a["min_val"], a["max_val"])),
    "max_pool2d": lambda n: lambda x: K.max_pool2d(x, n.attrs["kernel"], n.attrs["stride"], n.attrs["pads"],
                                                   n.attrs["dilation"]),
    "avg_pool2d": lambda n: lambda x: K.avg_pool2d(x, n.attrs["kernel"], n.attrs["stride"], n.attrs["pads"],
                                                   n.attrs.get("divisor")),
    "flatten": lambda n: lambda x: _flatten(x, n.attrs["start_dim"], n.attrs["end_dim"]),
    "unflatten": lambda n: lambda x: _unflatten(x, n.attrs["dim"], n.attrs["sizes"]),
    "dropout": lambda n: lambda x: x,
    "identity": lambda n: lambda x: x,
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "div": _binary(np.divide),
    "pow": _binary(np.power),
    "matmul": _binary(np.matmul),
    "neg": _unary(np.negative),
    "exp": _unary(np.exp),
    "log": _unary(np.log),
    "sqrt": _unary(np.sqrt),
    "abs": _unary(np.abs),
    "reshape": lambda n: lambda x: np.reshape(x, n.attrs["shape"]),
    "permute": lambda n: lambda x: np.transpose(x, n.attrs["axes"]),
    "restride": lambda n: lambda x: K.restride(x, n.attrs["steps"]),
    "getitem": lambda n: lambda x: x[n.attrs["index"]],
    "concat": lambda n: lambda *xs: np.concatenate(xs, axis=n.attrs["axis"]),
}


def _flatten(x, start_dim, end_dim):
    nd = x.ndim
    start, end = start_dim % nd, end_dim % nd
    return np.reshape(x, x.shape[:start] + (-1,) + x.shape[end + 1:])


def _unflatten(x, dim, sizes):
    d = dim % x.ndim
    return np.reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


def make_step(node):
    """The step function of one node (raises ValueError naming the node for an op without a kernel)."""
    if "fn" in node.attrs:
        return _generic(node)
    maker = KERNELS.get(node.op)
    if maker is None:
        from .int8 import KERNELS as INT8_KERNELS  # the integer ops (quantize, qlinear, ...) use mc.quant
        maker = INT8_KERNELS.get(node.op)
    if maker is None:
        raise ValueError(f"interpreter: no kernel for op {node.op!r} (node {node.name!r}); known ops: "
                         f"{', '.join(sorted(KERNELS))}")
    return maker(node)


def as_array(x):
    """Input conversion as Tensor(x): float64 becomes float32, other dtypes stay."""
    if isinstance(x, Tensor):
        return x.data
    arr = np.asarray(x)
    return arr.astype(np.float32) if arr.dtype == np.float64 else arr


def compile_graph(graph, dtype="fp32"):
    """A function f(*inputs) -> output array (a tuple for several outputs) that runs `graph`.

    dtype="bf16": emulated BF16 with autocast's op categories (see bf16.py)."""
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"compile_graph: dtype must be 'fp32' or 'bf16', got {dtype!r}")
    low = None
    if dtype == "bf16":
        from .bf16 import bf16_step, bf16_weights, low_precision_nodes
        low = low_precision_nodes(graph)
    plan, last_use = [], {}
    for k, node in enumerate(graph.nodes):
        for i in node.inputs:
            last_use[i] = k
    keep = set(graph.outputs)
    for k, node in enumerate(graph.nodes):
        if node.op == "input":
            continue
        free = tuple(i for i in dict.fromkeys(node.inputs) if last_use[i] == k and i not in keep)
        step = make_step(node) if low is None else bf16_step(node, make_step(bf16_weights(node)), low[node.name])
        plan.append((node.name, step, tuple(node.inputs), free))
    input_nodes = [graph.node(name) for name in graph.inputs]
    outputs, fixed_batch = tuple(graph.outputs), graph.fixed_batch

    def run_compiled(*inputs, keep_all=False):
        if len(inputs) != len(input_nodes):
            raise ValueError(f"graph: expected {len(input_nodes)} input(s) ({', '.join(graph.inputs)}), "
                             f"got {len(inputs)}")
        env = {}
        for node, x in zip(input_nodes, inputs):
            arr = as_array(x)
            if node.shape is not None and (arr.ndim != len(node.shape) or arr.shape[1:] != node.shape[1:]):
                raise ValueError(f"graph: input {node.name!r} has shape {arr.shape}, expected (N, "
                                 f"{', '.join(map(str, node.shape[1:]))}) as traced (shape {node.shape})")
            if fixed_batch is not None and arr.shape[0] != fixed_batch:
                raise ValueError(f"graph: input {node.name!r} has batch size {arr.shape[0]}, but this graph "
                                 f"was traced for batch size {fixed_batch} only (the model's ops depend on it)")
            env[node.name] = arr
        for name, step, args, free in plan:
            env[name] = step(*[env[a] for a in args])
            if not keep_all:
                for a in free:
                    del env[a]
        if keep_all:
            return env
        results = tuple(env[o] for o in outputs)
        return results[0] if len(results) == 1 else results

    return run_compiled


def run(graph, *inputs):
    """Run `graph` once on `inputs` (arrays or Tensors); returns an array (a tuple for several outputs)."""
    return compile_graph(graph)(*inputs)


def run_all(graph, *inputs):
    """{node name: value} for every node (what rewrites use to check shapes)."""
    return compile_graph(graph)(*inputs, keep_all=True)
