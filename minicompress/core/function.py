"""`Function`: one differentiable op, written as a forward and a backward on NumPy arrays.

This is the shape of every op in minicompress (as in minitorch and `torch.autograd.Function`):

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):               # NumPy arrays in, one NumPy array out
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):              # dL/d(out) in, one gradient per forward input out
            a, b = ctx.saved
            return grad * b, grad * a

`Mul.apply(x, y)` unwraps Tensors to arrays, runs `forward`, and -- when gradients are being recorded and
an input requires them -- links the output to its inputs so that `Tensor.backward` can later call
`backward` in reverse topological order. `backward` returns one entry per positional input of
`forward`; entries for non-Tensor inputs (ints, shapes, flags) are ignored and may be None.

Autocast hook. Mixed precision (`minicompress.precision.autocast`, floor 3) changes how some ops compute
without this floor knowing about it: while a hook object is installed with `set_op_hook`, `apply`
passes the op's name and raw inputs through `hook.before(name, arrays)` and its output through
`hook.after(name, out)`. The hook decides from plain lists of op names what to round. A hook may also
have `grad_rounding(name) -> callable or None`: the callable is stored as `ctx.grad_hook` and `backward`
passes the op's incoming gradient and the gradients it returns through it (low-precision gradients).
"""
import numpy as np

from . import grad_mode

_op_hook = None


def set_op_hook(hook):
    """Install `hook` (an object with `.before(name, args)` and `.after(name, out)`, or None). Returns the old one."""
    global _op_hook
    previous, _op_hook = _op_hook, hook
    return previous


def get_op_hook():
    return _op_hook


_trace_hook = None


def set_trace_hook(hook):
    """Install `hook(cls, args, kwargs, result)`, called after every Function.apply (or None). Returns the old one."""
    global _trace_hook
    previous, _trace_hook = _trace_hook, hook
    return previous


def get_trace_hook():
    return _trace_hook


class Context:
    """What `forward` leaves for `backward`: saved arrays, and which inputs need a gradient."""

    __slots__ = ("saved", "needs_input_grad", "__dict__")
    grad_hook = None  # set by an op hook (autocast): applied to the incoming and outgoing gradients of this op

    def __init__(self, needs_input_grad=()):
        self.saved = ()
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Function:
    """Base class of every differentiable op. Subclasses define `forward` and `backward` (static)."""

    name = None  # the op's name for hooks and graphs; defaults to the lower-cased class name

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name") is None:
            cls.name = cls.__name__.lower()

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        # One pass over the arguments: unwrap Tensors, note which need a gradient (this is the hot path of
        # every op, so it is written for speed rather than brevity).
        raw, needs = [], []
        for a in args:
            if isinstance(a, Tensor):
                raw.append(a.data)
                needs.append(a.requires_grad)
            else:
                raw.append(a)
                needs.append(False)
        record = grad_mode._enabled and True in needs
        hook = _op_hook
        if hook is not None:
            raw = hook.before(cls.name, raw)
        ctx = Context(tuple(needs) if record else ())
        out = cls.forward(ctx, *raw, **kwargs)
        if hook is not None:
            out = hook.after(cls.name, out)
            if record and hasattr(hook, "grad_rounding"):  # autocast: low-precision ops get low-precision grads
                ctx.grad_hook = hook.grad_rounding(cls.name)
        result = Tensor._wrap(out, record)
        if record:
            result._ctx = ctx
            result._op = cls
            result._parents = args
        if _trace_hook is not None:
            _trace_hook(cls, args, kwargs, result)
        return result


from .tensor import Tensor  # noqa: E402  (Tensor's methods call Function subclasses: a cycle by design)
