"""softmax and log_softmax along one axis, numerically stable (subtract the maximum first).

    softmax(x)_i     = exp(x_i - m) / sum_j exp(x_j - m),           m = max_j x_j
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)
Backward (g the incoming gradient, s = softmax(x)):
    softmax:      dL/dx = s * (g - sum_j g_j s_j)
    log_softmax:  dL/dx = g - s * sum_j g_j
Shapes: any; the op runs along `axis` (PyTorch calls it `dim`; both spellings are accepted).
Names "softmax" and "log_softmax" (autocast keeps both in float32).
"""
import numpy as np

from ...core import Function
from .utils import as_tensor, resolve_axis


class SoftmaxFn(Function):
    name = "softmax"

    @staticmethod
    def forward(ctx, x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(e)
        ctx.axis = axis
        return e

    @staticmethod
    def backward(ctx, grad):
        (s,) = ctx.saved
        gs = grad * s
        return gs - s * gs.sum(axis=ctx.axis, keepdims=True), None


class LogSoftmaxFn(Function):
    name = "log_softmax"

    @staticmethod
    def forward(ctx, x, axis):
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return grad - np.exp(out) * grad.sum(axis=ctx.axis, keepdims=True), None


def softmax(x, axis=-1, *, dim=None):
    """Softmax along `axis` (or `dim=`, PyTorch's name): softmax(x, -1), softmax(x, dim=1)."""
    x = as_tensor(x)
    if x.ndim == 0:  # a scalar is its own (one-element) distribution, as PyTorch
        return SoftmaxFn.apply(x.reshape(1), 0).reshape(())
    return SoftmaxFn.apply(x, resolve_axis(axis, dim, x.ndim, "softmax"))


def log_softmax(x, axis=-1, *, dim=None):
    """log(softmax(x)) along `axis` (or `dim=`), computed without forming softmax (no log of 0)."""
    x = as_tensor(x)
    if x.ndim == 0:
        return LogSoftmaxFn.apply(x.reshape(1), 0).reshape(())
    return LogSoftmaxFn.apply(x, resolve_axis(axis, dim, x.ndim, "log_softmax"))
