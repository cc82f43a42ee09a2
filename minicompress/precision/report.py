"""Per-layer precision report: which op of which layer ran in what precision, and what it cost.

`precision_report(model, x, dtype)` runs the model three ways, with forward hooks on every submodule:
    1. FP32                      -> y_l (each layer's output) and x_l (its inputs)
    2. whole model under autocast -> ŷ_l, and the ops each layer ran itself, with their precision
    3. each layer alone on its FP32 inputs x_l under autocast -> ỹ_l (the error this layer adds by itself)
and reports per layer that runs ops of its own, with ||·|| the L2 norm over the whole batch:
    rel_err            = ||ŷ_l - y_l|| / ||y_l||     (accumulated: errors of the layers before included)
    rel_err_isolated   = ||ỹ_l - y_l|| / ||y_l||     (this layer's own error)
    max_abs_err        = max |ŷ_l - y_l|
The model runs in eval mode under no_grad; its mode is restored.
"""
import numpy as np

from ..core import Tensor, no_grad
from .autocast import autocast
from .casting import canonical_dtype


def _as_arrays(value):
    if isinstance(value, Tensor):
        return [value.data]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _as_arrays(v)]
    return []


def _rel(a, b):
    num = sum(float(np.sum((x.astype(np.float64) - y) ** 2)) for x, y in zip(a, b))
    den = sum(float(np.sum(y.astype(np.float64) ** 2)) for y in b)
    return float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))


def _run(model, x, ctx=None):
    """Forward with hooks on every submodule: ({name: (inputs, output arrays, own ops)}, model output).
    An op belongs to the innermost module running when it runs ("own ops": not those of its children)."""
    seen, own, order, handles, stack, flushed = {}, {}, [], [], [], [0]
    records = ctx.records if ctx is not None else []

    def flush():
        if stack:
            own.setdefault(stack[-1], []).extend(records[flushed[0]:])
        flushed[0] = len(records)

    for name, module in model.named_modules():
        if not name:
            continue

        def pre(mod, args, name=name):
            flush()
            stack.append(name)

        def post(mod, args, out, name=name):
            flush()
            stack.pop()
            if name not in seen:
                order.append(name)
            seen[name] = (args, _as_arrays(out))

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        if ctx is None:
            out = model(x)
        else:
            with ctx:
                out = model(x)
    finally:
        for h in handles:
            h.remove()
    return {name: seen[name] + (own.get(name, []),) for name in order}, out


def precision_report(model, x, dtype="bf16"):
    """List of rows (dicts: layer, type, ops, rel_err, rel_err_isolated, max_abs_err), one per module that
    runs ops itself (leaves such as Linear, and e.g. MultiheadAttention's own matmuls), in execution order;
    the last row, "(output)", is the whole model with the op counts of the whole run."""
    dtype = canonical_dtype(dtype, allow_fp32=False, who="precision_report")
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float32))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            ref, ref_out = _run(model, x)
            ctx = autocast(dtype)
            low, low_out = _run(model, x, ctx)
            rows = []
            for name, (args, y, _) in ref.items():
                _, y_low, ops = low[name]
                if not ops:
                    continue                      # runs no op of its own (containers, dropout in eval)
                module = model.get_submodule(name)
                with autocast(dtype):
                    alone = _as_arrays(module(*args))
                ops_summary = {}
                for op, _, precision in ops:
                    ops_summary.setdefault(op, set()).add(precision)
                rows.append({"layer": name, "type": type(module).__name__,
                             "ops": {op: "/".join(sorted(p)) for op, p in ops_summary.items()},
                             "rel_err": _rel(y_low, y), "rel_err_isolated": _rel(alone, y),
                             "max_abs_err": max((float(np.max(np.abs(a - b))) for a, b in zip(y_low, y)
                                                 if a.size), default=0.0)})
            y, y_low = _as_arrays(ref_out), _as_arrays(low_out)
            rows.append({"layer": "(output)", "type": type(model).__name__, "ops": ctx.op_counts(),
                         "rel_err": _rel(y_low, y), "rel_err_isolated": float("nan"),
                         "max_abs_err": max(float(np.max(np.abs(a - b))) for a, b in zip(y_low, y))})
    finally:
        model.train(was_training)
    return rows


def format_precision_report(rows):
    """The rows as a fixed-width text table."""
    width = max([28] + [len(r["layer"]) for r in rows])
    kind = max([18] + [len(r["type"]) for r in rows])
    lines = [f"{'layer':<{width}} {'type':<{kind}} {'rel_err':>9} {'isolated':>9} {'max_abs':>9}  ops"]
    for r in rows:
        if r["layer"] == "(output)":
            ops = ", ".join(f"{op}:{p}x{n}" for (op, p), n in sorted(r["ops"].items()))
        else:
            ops = ", ".join(f"{op}:{p}" for op, p in r["ops"].items())
        lines.append(f"{r['layer']:<{width}} {r['type']:<{kind}} {r['rel_err']:>9.2e} {r['rel_err_isolated']:>9.2e} "
                     f"{r['max_abs_err']:>9.2e}  {ops}")
    return "\n".join(lines)
