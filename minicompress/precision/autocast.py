"""`autocast(dtype)`: automatic mixed precision by op category, emulated on float32 arrays.

Inside `with autocast("bf16"):` every op looks up its name in the op lists of `op_lists.py`:

    lower precision  (matmul, linear, conv2d, bmm):  y = round(f(round(x1), round(x2), ...))
                     -- inputs rounded to BF16/FP16, the op itself accumulates in FP32 (as tensor cores
                     and AMX do), the result is rounded once more, like a BF16/FP16 output tensor.
    FP32             (softmax, layer_norm, losses, exp, log, sum):  y = f(x1, x2, ...) in FP32.
    fall-through     (relu, reshape, max_pool2d, batch_norm, ...):  y = f(x, ...), rounded to the low
                     precision iff its first floating input is a low-precision result.
    promote          (add, mul, concat, ...):  the same, iff *all* floating inputs are low precision
                     (BF16 + FP32 -> FP32, PyTorch's type promotion).

Gradients flow as through casts (identity, "straight-through"): each op's backward uses the rounded values
it saw in the forward; the gradients of a low-precision op (the one arriving and the ones it returns) are
rounded to the same low precision, as the backward of an FP16 layer produces FP16 gradients. That is what
makes small FP16 gradients underflow and large ones overflow -- the reason for loss scaling (`GradScaler`).
(Gradient rounding needs the `grad_rounding` hook of core/function.py; parameters stay FP32 "master" weights.)

The mechanics: `core.set_op_hook` passes every Function's name and raw input arrays through `before` and
its output through `after`; low-precision outputs are remembered (weakly, by identity, across autocast
regions) so that a later fall-through op knows its inputs' precision. Each op run is recorded in
`self.records` as (op name, category, precision) for `precision_report`. Nesting works (the inner autocast wins, the outer
one is restored on exit, also after an exception); `autocast(enabled=False)` switches autocast off inside.
Reference: Micikevicius et al., "Mixed Precision Training", ICLR 2018; torch.autocast.
"""
import weakref

from ..core import set_op_hook
from . import op_lists
from .casting import canonical_dtype, is_float_array, round_array


# Which arrays hold low-precision results: id(array) -> (weakref to it, "bf16" | "fp16"). Module-level, so
# that a BF16 result stays BF16 for the next autocast region too (as a torch.bfloat16 tensor would).
_LOW_ARRAYS = {}


def mark_low(array, dtype):
    key = id(array)

    def forget(ref, key=key):
        entry = _LOW_ARRAYS.get(key)
        if entry is not None and entry[0] is ref:
            del _LOW_ARRAYS[key]

    _LOW_ARRAYS[key] = (weakref.ref(array, forget), dtype)


def low_dtype(array):
    """"bf16" / "fp16" if `array` is the result of a low-precision op under autocast, else None."""
    entry = _LOW_ARRAYS.get(id(array))
    return entry[1] if entry is not None and entry[0]() is array else None


class autocast:  # noqa: N801  (a context manager named like torch.autocast)
    def __init__(self, dtype="bf16", enabled=True, round_grads=True):
        self.dtype = canonical_dtype(dtype, allow_fp32=False, who="autocast")
        self.enabled = bool(enabled)
        self.round_grads = bool(round_grads)
        self.records = []               # (op name, category, "bf16" | "fp16" | "fp32") in execution order
        self._previous = []             # hooks to restore, one per (possibly re-entrant) __enter__
        self._pending = None            # (category, output dtype or None) of the op between before/after

    # ---- context manager ---------------------------------------------------------------------------
    def __enter__(self):
        self._previous.append(set_op_hook(self if self.enabled else None))
        return self

    def __exit__(self, exc_type, exc, tb):
        set_op_hook(self._previous.pop())
        return False

    # ---- the op hook (called by Function.apply) ----------------------------------------------------
    def before(self, name, args):
        category = op_lists.op_category(name)
        if category == "lower":
            args = [round_array(a, self.dtype) if is_float_array(a) else a for a in args]
            out_dtype = self.dtype
        elif category == "fp32":
            out_dtype = None
        else:
            floats = [a for a in args if is_float_array(a)]
            judged = {low_dtype(a) for a in (floats if category == "promote" else floats[:1])}
            out_dtype = judged.pop() if len(judged) == 1 else None      # None: FP32 (or no float input)
        self._pending = (category, out_dtype)
        return args

    def after(self, name, out):
        category, out_dtype = self._pending
        if out_dtype is not None and is_float_array(out):
            out = round_array(out, out_dtype)
            mark_low(out, out_dtype)
        self.records.append((name, category, out_dtype or "fp32"))
        return out

    def grad_rounding(self, name):
        """For the op that just ran: a function rounding its gradients, or None (FP32 gradients)."""
        dtype = self._pending[1]
        if not self.round_grads or dtype is None:
            return None
        return lambda grad: round_array(grad, dtype) if is_float_array(grad) else grad

    # ---- summaries ---------------------------------------------------------------------------------
    def op_counts(self):
        """{(op name, precision): how many times it ran} over this autocast's records."""
        counts = {}
        for name, _, precision in self.records:
            counts[(name, precision)] = counts.get((name, precision), 0) + 1
        return counts

    def __repr__(self):
        return f"autocast(dtype={self.dtype!r}, enabled={self.enabled})"
