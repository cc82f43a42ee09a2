"""Element-wise ops with broadcasting: arithmetic, unary math, activations, comparisons.

Broadcasting rule for gradients: if `a` of shape (3, 1) is broadcast against (2, 3, 4), the gradient that
comes back has the broadcast shape (2, 3, 4); `unbroadcast` sums it over the leading axes that were
added and over every axis where `a` had size 1, giving back (3, 1). Every binary op below uses it.

Derivatives (u, v inputs; g the incoming gradient):
    u + v: (g, g)        u - v: (g, -g)        u * v: (g v, g u)        u / v: (g / v, -g u / v^2)
    u ** p: g p u^(p-1)  (and g u^p log u for a tensor exponent)
    exp u: g e^u         log u: g / u          sqrt u: g / (2 sqrt u)   |u|: g sign(u)
    relu u: g [u > 0]    sigmoid: g s (1 - s)  tanh: g (1 - t^2)        clip: g [lo <= u <= hi]
Comparisons (in tensor.py) return boolean masks that carry no gradient and record nothing.
"""
import numpy as np

from .function import Function


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting (see the module docstring)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return a + b

    @staticmethod
    def backward(ctx, grad):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad, sa) if need_a else None,
                unbroadcast(grad, sb) if need_b else None)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return a - b

    @staticmethod
    def backward(ctx, grad):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad, sa) if need_a else None,
                unbroadcast(-grad, sb) if need_b else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad * b, np.shape(a)) if need_a else None,
                unbroadcast(grad * a, np.shape(b)) if need_b else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad / b, np.shape(a)) if need_a else None,
                unbroadcast(-grad * a / (b * b), np.shape(b)) if need_b else None)


class Pow(Function):
    """u ** p for a tensor base and a tensor or constant exponent."""

    @staticmethod
    def forward(ctx, a, p):
        out = a ** p
        ctx.save_for_backward(a, p, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, p, out = ctx.saved
        need_a, need_p = ctx.needs_input_grad
        grad_a = unbroadcast(grad * p * a ** (p - 1), np.shape(a)) if need_a else None
        grad_p = None
        if need_p:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
            grad_p = unbroadcast(grad * out * log_a, np.shape(p))
        return grad_a, grad_p


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return (-grad,)


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return (grad * out,)


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved
        return (grad / a,)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return (grad / (2 * out),)


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved
        return (grad * np.sign(a),)


class Clip(Function):
    """clamp(u, lo, hi); the gradient passes where lo <= u <= hi (as torch.clamp)."""

    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        ctx.save_for_backward(a)
        ctx.bounds = (lo, hi)
        return np.clip(a, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved
        lo, hi = ctx.bounds
        inside = np.ones(a.shape, dtype=bool)
        if lo is not None:
            inside &= a >= lo
        if hi is not None:
            inside &= a <= hi
        return (grad * inside,)


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return (grad * (out > 0),)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        # exp of a non-positive number only: no overflow for large |a|
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return (grad * out * (1 - out),)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return (grad * (1 - out * out),)


class Where(Function):
    """where(cond, a, b): a where cond is True, else b. `cond` is a boolean array without gradient."""

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, grad):
        (cond,) = ctx.saved
        sa, sb = ctx.shapes
        _, need_a, need_b = ctx.needs_input_grad
        return (None,
                unbroadcast(np.where(cond, grad, 0), sa) if need_a else None,
                unbroadcast(np.where(cond, 0, grad), sb) if need_b else None)


class Cast(Function):
    """Change the dtype (float32 <-> float64); the gradient is cast back to the input's dtype."""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return (grad.astype(ctx.dtype), None)
