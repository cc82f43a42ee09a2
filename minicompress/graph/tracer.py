"""`trace(model, example_input) -> Graph`: run the model once and record the ops it executes.

How (the torch.jit.trace idea, with hooks instead of a JIT):
  * every leaf layer the tracer knows (Linear, Conv2d, BatchNorm, LayerNorm, activations, pooling,
    Flatten, Dropout -- `LEAF_LAYERS`) becomes ONE node, recorded by a forward hook; while such a layer runs,
    the op-level hook is switched off, so its inner ops are not recorded twice;
  * every `Function.apply` outside those layers (x + y, reshape, matmul, softmax, F.linear, ...) becomes one
    node, recorded by the trace hook of `core/function.py`. Functions with a kernel in the interpreter get
    their op name ("add", "reshape", ...); any other Function is recorded as "<name>()" and is re-run
    through its own `forward`;
  * tensors that no recorded op produced (parameters, tensors made inside forward) become "constant" nodes.

What cannot be traced, and the error you get (a `TraceError`, a ValueError, naming the module):
  * data-dependent Python control flow (`if x.sum() > 0:`, `x.item()`): the value differs per input, but a
    trace records one path. `Tensor.__bool__` and `Tensor.item` raise while tracing;
  * a module the tracer does not know whose forward computes outside Functions (NumPy on `.data`): its
    output appears from nowhere -- reported as an unknown op;
  * Dropout or BatchNorm in training mode: the graph records inference (call `model.eval()`).

Batch size. The model is traced twice, on the example batch (N rows) and on N + 1 rows. A reshape
target that differs between the two in one place gets -1 there, and a constant made inside forward with
a batch-sized first axis (whose rows are all equal) is broadcast to the batch at run time, so the graph
runs on any batch size. If anything else differs, the graph keeps `fixed_batch = N` and says so when run
on another size. Finally the graph is run by the interpreter on both batches and compared with the
model's outputs (a trace that does not reproduce the model is an error).
"""
import numpy as np

from .. import nn
from ..core import Tensor
from ..core.function import get_trace_hook, set_trace_hook
from .interpreter import SLOT, compile_graph
from .ir import Graph, Node


class TraceError(ValueError):
    """The model cannot be traced into a Graph (the message says where and why)."""


# ---- leaf layers: module -> (op, attrs, params) ------------------------------------------------------
def _arr(t):
    return None if t is None else np.array(t.data if isinstance(t, Tensor) else t, copy=True)


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(a) for a in v)


def _conv_pads(padding, kernel, dilation):
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


def _linear(m):
    return "linear", {}, {"weight": _arr(m.weight), "bias": _arr(m.bias)}


def _conv2d(m):
    if getattr(m, "padding_mode", "zeros") != "zeros":
        return None
    kernel, dilation = tuple(m.weight.shape[2:]), _pair(getattr(m, "dilation", 1))
    attrs = {"stride": _pair(m.stride), "pads": _conv_pads(m.padding, kernel, dilation), "dilation": dilation,
             "groups": int(getattr(m, "groups", 1))}
    return "conv2d", attrs, {"weight": _arr(m.weight), "bias": _arr(m.bias)}


def _batch_norm(m):
    if m.running_mean is None:
        return None
    params = {"running_mean": _arr(m.running_mean), "running_var": _arr(m.running_var), "weight": _arr(m.weight),
              "bias": _arr(m.bias)}
    return "batch_norm", {"eps": float(m.eps)}, params


def _layer_norm(m):
    attrs = {"normalized_ndim": len(m.normalized_shape), "eps": float(m.eps)}
    return "layer_norm", attrs, {"weight": _arr(m.weight), "bias": _arr(m.bias)}


def _max_pool2d(m):
    if getattr(m, "ceil_mode", False) or getattr(m, "return_indices", False):
        return None
    kernel = _pair(m.kernel_size)
    stride = kernel if m.stride is None else _pair(m.stride)
    ph, pw = _pair(getattr(m, "padding", 0))
    attrs = {"kernel": kernel, "stride": stride, "pads": (ph, ph, pw, pw), "dilation": _pair(getattr(m, "dilation", 1))}
    return "max_pool2d", attrs, {}


def _softmax(op):
    def convert(m):
        return None if m.dim is None else (op, {"axis": int(m.dim)}, {})
    return convert


def _simple(op, **attr_of):
    """A converter for a parameter-free layer: attrs read from the module's attributes."""
    def convert(m):
        return op, {k: getattr(m, name) for k, name in attr_of.items()}, {}
    return convert


LEAF_LAYERS = {  # layer class name in mc.nn -> converter (None from a converter: trace through the layer)
    "Linear": _linear,
    "Conv2d": _conv2d,
    "BatchNorm1d": _batch_norm,
    "BatchNorm2d": _batch_norm,
    "LayerNorm": _layer_norm,
    "ReLU": _simple("relu"),
    "Sigmoid": _simple("sigmoid"),
    "Tanh": _simple("tanh"),
    "SiLU": _simple("silu"),
    "GELU": _simple("gelu", approximate="approximate"),
    "ELU": _simple("elu", alpha="alpha"),
    "Hardtanh": _simple("hardtanh", min_val="min_val", max_val="max_val"),
    "ReLU6": _simple("hardtanh", min_val="min_val", max_val="max_val"),
    "Softmax": _softmax("softmax"),
    "LogSoftmax": _softmax("log_softmax"),
    "MaxPool2d": _max_pool2d,
    "Flatten": _simple("flatten", start_dim="start_dim", end_dim="end_dim"),
    "Unflatten": lambda m: ("unflatten", {"dim": m.dim, "sizes": tuple(m.unflattened_size)}, {}),
    "Dropout": _simple("dropout", p="p"),
    "Identity": _simple("identity"),
}
TRAINING_SENSITIVE = ("Dropout", "BatchNorm1d", "BatchNorm2d")  # (F.dropout in training mode is caught by the hook)


def leaf_converters():
    """{layer class: converter} for the LEAF_LAYERS that mc.nn defines, and mc.quant's integer layers."""
    from .int8 import quantized_leaf_layers
    table = {getattr(nn, name): fn for name, fn in LEAF_LAYERS.items() if hasattr(nn, name)}
    table.update(quantized_leaf_layers())
    return table


def _is_value(a):
    """A Tensor, or a QTensor (integer codes with their qparams) flowing between integer layers."""
    return isinstance(a, Tensor) or (type(a).__name__ == "QTensor" and hasattr(a, "dequantize"))


# ---- Functions -> ops --------------------------------------------------------------------------------
BINARY = ("add", "sub", "mul", "div", "pow", "matmul")
UNARY = ("neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "silu")


def _function_op(name, consts, kwargs):
    """(op, attrs) for a Function the interpreter knows, given its non-tensor arguments; None if not known.
    `consts` holds the non-tensor positional arguments in order."""
    if name in BINARY or name in UNARY:
        return (name, {}) if not consts and not kwargs else None
    if name == "reshape" and len(consts) == 1:
        return "reshape", {"shape": tuple(consts[0])}
    if name == "permute" and len(consts) == 1:
        return "permute", {"axes": tuple(consts[0])}
    if name == "getitem" and len(consts) == 1:
        return "getitem", {"index": consts[0]}
    if name in ("softmax", "log_softmax") and len(consts) == 1:
        return name, {"axis": int(consts[0])}
    if name == "gelu" and len(consts) <= 1:
        return "gelu", {"approximate": consts[0] if consts else "none"}
    if name == "elu" and len(consts) <= 1:
        return "elu", {"alpha": float(consts[0]) if consts else 1.0}
    if name == "hardtanh" and len(consts) == 2:
        return "hardtanh", {"min_val": float(consts[0]), "max_val": float(consts[1])}
    if name == "concat" and set(kwargs) <= {"axis"} and not consts:
        return "concat", {"axis": kwargs.get("axis", 0)}
    return None


# ---- the recorder -------------------------------------------------------------------------------------
class _Recorder:
    """The trace hook and the module hooks of one tracing run."""

    def __init__(self, model):
        self.model = model
        self.nodes, self.names = [], set()
        self.value_of = {}     # id(tensor) -> node name
        self.alive = []        # keeps traced tensors alive, so that their ids stay unique
        self.stack = []        # module paths being executed, for error messages
        self.leaf_depth = 0
        self.param_names = {}
        if isinstance(model, nn.Module):
            self.param_names = {id(p): name for name, p in model.named_parameters()}

    def fresh(self, base):
        base = base or "node"
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def add(self, op, inputs, attrs=None, params=None, out=None, source="", base=None):
        node = Node(self.fresh(base or op), op, inputs, attrs, params, source=source)
        if out is not None:
            data = out.data if isinstance(out, Tensor) else out.dequantize().data  # a QTensor: its real values
            node.shape, node.dtype = tuple(data.shape), data.dtype
            self.value_of[id(out)] = node.name
            self.alive.append(out)
        self.nodes.append(node)
        return node

    def name_of(self, t):
        """The node that produced tensor t; a new constant node for a tensor no recorded op produced."""
        key = id(t)
        if key in self.value_of:
            return self.value_of[key]
        if not isinstance(t, Tensor):
            raise TraceError(f"trace: {self.where()} received a {type(t).__name__} that no traced layer produced")
        base = self.param_names.get(key, "const")
        node = self.add("constant", [], {"value": np.array(t.data, copy=True)}, out=t, source="constant",
                        base=base)
        return node.name

    def where(self):
        if not self.stack:
            return "the model's forward"
        path, module = self.stack[-1]
        return f"module {path or '(the model)'!r} ({type(module).__name__})"

    # the trace hook: called by Function.apply outside known leaf layers
    def __call__(self, cls, args, kwargs, result):
        tensors = [a for a in args if isinstance(a, Tensor)]
        consts = [a for a in args if not isinstance(a, Tensor)]
        if any(isinstance(v, Tensor) for v in kwargs.values()):
            raise TraceError(f"trace: op {cls.name!r} in {self.where()} received a Tensor as a keyword "
                             "argument; the tracer records tensors passed positionally only")
        if cls.name == "dropout":
            raise TraceError(f"trace: dropout is active in {self.where()} (training mode); call model.eval() "
                             "before tracing -- the graph records inference")
        if cls.name == "linear" and not consts:
            self._linear(tensors, result)
            return
        if cls.name in BINARY and len(args) == 2:
            inputs = [self.name_of(a) if isinstance(a, Tensor) else self._scalar(a) for a in args]
            self.add(cls.name, inputs, out=result, source=self._source())
            return
        inputs = [self.name_of(t) for t in tensors]
        known = _function_op(cls.name, consts, kwargs)
        if known is not None:
            op, attrs = known
            self.add(op, inputs, attrs, out=result, source=self._source())
        else:
            template = [SLOT if isinstance(a, Tensor) else a for a in args]
            attrs = {"fn": cls, "args": template, "kwargs": dict(kwargs)}
            self.add(f"{cls.name}()", inputs, attrs, out=result, source=self._source(), base=cls.name)

    def _scalar(self, value):
        node = self.add("constant", [], {"value": value}, source="constant", base="scalar")
        node.shape, node.dtype = (), np.asarray(value).dtype
        return node.name

    def _linear(self, tensors, result):
        inputs = [self.name_of(t) for t in tensors]
        self.add("linear", inputs, {"n_inputs": len(inputs)}, out=result, source=self._source())

    def _source(self):
        return self.stack[-1][0] if self.stack else ""

    # module hooks
    def pre_hook(self, path, convert):
        def hook(module, args):
            self.stack.append((path, module))
            if convert is not None:
                if self.leaf_depth == 0:
                    set_trace_hook(None)
                self.leaf_depth += 1
        return hook

    def post_hook(self, path, convert):
        def hook(module, args, out):
            if convert is not None:
                self.leaf_depth -= 1
                if self.leaf_depth == 0:
                    set_trace_hook(self)
                    self._leaf(path, module, convert, args, out)
            elif isinstance(out, Tensor) and id(out) not in self.value_of and self.leaf_depth == 0:
                if not any(out is a for a in args):
                    raise TraceError(f"trace: unknown op -- module {path or '(the model)'!r} "
                                     f"({type(module).__name__}) is not a layer the tracer knows, and its "
                                     "output was computed outside minicompress ops (NumPy on .data?), so "
                                     "there is nothing to record. Write it with Tensor ops / a Function.")
            self.stack.pop()
        return hook

    def wrap_quantized_add(self, path, module):
        """mc.quant's QuantizedAdd is called as `.add(a, b)`, not through forward: record it from a wrapper."""
        original = module.add

        def add(a, b):
            hook = set_trace_hook(None)
            try:
                out = original(a, b)
            finally:
                set_trace_hook(hook)
            self._quantized_add(path, module, a, b, out)
            return out
        object.__setattr__(module, "add", add)

    def _quantized_add(self, path, module, a, b, out):
        inputs, qparams = [], []
        for t, qp in ((a, module.qp_a), (b, module.qp_b)):
            # a QTensor operand is used with its own qparams, a float one is quantized with the observed ones
            qp = qp if isinstance(t, Tensor) else t
            qparams.append((np.float32(qp.scale), int(qp.zero_point)))
            attrs = {"scale": np.float32(qp.scale), "zero_point": int(qp.zero_point), "qmin": int(qp.qmin),
                     "qmax": int(qp.qmax)}
            inputs.append(self.add("quantize", [self.name_of(t)], attrs, source=path, base=f"{path}.quantize").name)
        o = module.out_qp
        step = ("add",) + qparams[0] + qparams[1] + (np.float32(o.scale), int(o.zero_point), int(o.qmin), int(o.qmax))
        node = self.add("qadd", inputs, {"step": step}, source=path, base=f"{path}.qadd")
        self.add("dequantize", [node.name], {"scale": np.float32(o.scale), "zero_point": int(o.zero_point)},
                 out=out, source=path, base=path)

    def _leaf(self, path, module, convert, args, out):
        if not _is_value(out):
            raise TraceError(f"trace: layer {path!r} ({type(module).__name__}) returned a "
                             f"{type(out).__name__}; the tracer expects one Tensor from a leaf layer")
        inputs = [self.name_of(a) for a in args if _is_value(a)]
        steps = convert if isinstance(convert, list) else [convert]
        for k, (op, attrs, params) in enumerate(steps):  # an integer layer: quantize, qlinear, dequantize
            last = k == len(steps) - 1
            # an identity layer (eval Dropout) returns its input: later reads of that tensor read this node
            node = self.add(op, inputs, attrs, {n: v for n, v in params.items() if v is not None},
                            out=out if last else None, source=path,
                            base=(path or op) if last or len(steps) == 1 else f"{path}.{op}")
            inputs = [node.name]


class _Unwrap:
    """Removes the recording wrapper of a QuantizedAdd (a handle like the hooks' ones)."""

    def __init__(self, module):
        self.module = module

    def remove(self):
        self.module.__dict__.pop("add", None)


def _convert_leaf(module, converters):
    convert = converters.get(type(module))
    return None if convert is None else convert(module)


def _record(model, inputs):
    """Run model(*inputs) once with the hooks installed; returns (Graph, outputs as arrays)."""
    rec = _Recorder(model)
    tensors = [Tensor(x) if not isinstance(x, Tensor) else Tensor._wrap(x.data, False) for x in inputs]
    input_names = []
    for k, t in enumerate(tensors):
        name = "x" if len(tensors) == 1 else f"x{k}"
        rec.add("input", [], out=t, source="input", base=name)
        input_names.append(name)
    handles = []
    if isinstance(model, nn.Module):
        converters = leaf_converters()
        inside_leaf = set()
        for path, module in model.named_modules():
            if id(module) in inside_leaf:
                continue
            convert = _convert_leaf(module, converters)
            if convert is not None:
                inside_leaf.update(id(m) for m in module.modules() if m is not module)
            handles.append(module.register_forward_pre_hook(rec.pre_hook(path, convert)))
            handles.append(module.register_forward_hook(rec.post_hook(path, convert)))
        for path, module in model.named_modules():
            if type(module).__name__ == "QuantizedAdd" and hasattr(module, "qp_a"):
                rec.wrap_quantized_add(path, module)
                handles.append(_Unwrap(module))
    previous = set_trace_hook(rec)
    try:
        out = model(*tensors)
    except RuntimeError as exc:
        if "while tracing a graph" in str(exc):
            raise TraceError(f"trace: data-dependent control flow in {rec.where()}: {exc}. Rewrite it without "
                             "Python branches on tensor values (e.g. with mc.where), or trace the parts "
                             "separately.") from exc
        raise
    finally:
        set_trace_hook(previous)
        for h in handles:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs = tuple(o.dequantize() if _is_value(o) and not isinstance(o, Tensor) and id(o) not in rec.value_of else o
                 for o in outs)
    output_names = []
    for k, o in enumerate(outs):
        if not _is_value(o):
            raise TraceError(f"trace: the model returned a {type(o).__name__} (output {k}); expected Tensors")
        if id(o) not in rec.value_of:
            raise TraceError("trace: unknown op -- the model's output was not computed by any op the tracer "
                             "saw (NumPy on .data, or a Tensor built from a NumPy result?)")
        output_names.append(rec.value_of[id(o)])
    graph = Graph(rec.nodes, input_names, output_names, tuple(t.data for t in tensors))
    if any(n.shape is None for n in graph.nodes):  # inner nodes of integer layers: shapes from one run
        env = compile_graph(graph)(*graph.example_inputs, keep_all=True)
        for n in graph.nodes:
            if n.shape is None:
                value = np.asarray(env[n.name])
                n.shape, n.dtype = value.shape, value.dtype
    return graph, tuple(o.data if isinstance(o, Tensor) else o.dequantize().data for o in outs)


def _check_training(model):
    if not isinstance(model, nn.Module):
        return
    for path, m in model.named_modules():
        if m.training and type(m).__name__ in TRAINING_SENSITIVE:
            raise TraceError(f"trace: module {path or '(the model)'!r} ({type(m).__name__}) is in training mode; "
                             "call model.eval() first (the graph records inference: Dropout is the identity "
                             "and BatchNorm uses its running statistics)")


def _grow_batch(x):
    """The example with its first row appended: a batch of N + 1 that starts with the original N rows."""
    return np.concatenate([x, x[:1]], axis=0)


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  (objects without a plain equality)
        return a is b


def _generalise_batch(g1, g2, n1, n2):
    """Make g1 run on any batch size using what changed in g2 (traced on n2 rows); returns True if it can."""
    if [(n.op, n.inputs) for n in g1.nodes] != [(n.op, n.inputs) for n in g2.nodes]:
        return False
    for a, b in zip(g1.nodes, g2.nodes):
        if a.op == "reshape" and a.attrs["shape"] != b.attrs["shape"]:
            s1, s2 = a.attrs["shape"], b.attrs["shape"]
            diff = [k for k in range(len(s1)) if s1[k] != s2[k]]
            if len(s1) != len(s2) or len(diff) != 1 or s1[diff[0]] * n2 != s2[diff[0]] * n1:
                return False
            shape = list(s1)
            shape[diff[0]] = -1
            a.attrs["shape"] = tuple(shape)
        elif a.op == "constant" and not _same(a.attrs["value"], b.attrs["value"]):
            v1, v2 = np.asarray(a.attrs["value"]), np.asarray(b.attrs["value"])
            batch_sized = v1.ndim >= 1 and v1.shape[0] == n1 and v2.shape == (n2,) + v1.shape[1:]
            if not (batch_sized and (v1 == v1[:1]).all() and (v2 == v1[:1]).all()):
                return False
            a.op, a.inputs = "batch_constant", [g1.inputs[0]]
            a.attrs = {"value": v1[:1].copy()}
        elif not _same({k: v for k, v in a.attrs.items()}, {k: v for k, v in b.attrs.items()}):
            return False
    return True


def verify(graph, inputs, expected, rtol=1e-4, atol=1e-5):
    """Run `graph` on `inputs` and compare with `expected` (the model's outputs); raises TraceError."""
    got = compile_graph(graph)(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    for k, (g, e) in enumerate(zip(got, expected)):
        scale = max(1.0, float(np.max(np.abs(e)))) if np.size(e) else 1.0
        if g.shape != e.shape or not np.allclose(g, e, rtol=rtol, atol=atol * scale, equal_nan=True):
            diff = np.max(np.abs(g - e)) if g.shape == e.shape else f"shape {g.shape} vs {e.shape}"
            raise TraceError(f"trace: the traced graph does not reproduce the model on batch size "
                             f"{np.shape(inputs[0])[0]} (output {k}: max difference {diff}). The model probably "
                             "computes part of its output outside minicompress ops (NumPy on .data), which a "
                             "trace freezes as a constant.")


def trace(model, example_input, check=True):
    """Record the ops `model(example_input)` executes into a Graph (see the module docstring).

    model: an nn.Module in eval mode, or any callable of Tensors. example_input: a Tensor / array, or a
    tuple of them (one per forward argument), batch on axis 0. check: re-run the graph and compare.
    """
    if not callable(model):
        raise TypeError(f"trace: model must be an nn.Module or a callable, got {type(model).__name__}")
    if get_trace_hook() is not None:
        raise TraceError("trace: another trace is already running (nested tracing is not supported)")
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    inputs = tuple(x.data if isinstance(x, Tensor) else np.asarray(x) for x in inputs)
    for k, x in enumerate(inputs):
        if x.ndim == 0:
            raise ValueError(f"trace: example input {k} is a scalar; expected an array with the batch on axis 0")
    _check_training(model)
    g1, out1 = _record(model, inputs)
    n1 = inputs[0].shape[0]
    inputs2 = tuple(_grow_batch(x) for x in inputs)
    g2, out2 = _record(model, inputs2)
    if not _generalise_batch(g1, g2, n1, n1 + 1):
        g1 = _record(model, inputs)[0]  # the untouched first trace
        g1.fixed_batch = n1
    if check:
        verify(g1, inputs, out1)
        if g1.fixed_batch is None:
            verify(g1, inputs2, out2)
    return g1
