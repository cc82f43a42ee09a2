"""Reductions over axes, and matrix multiplication.

    sum:   dL/dx = broadcast of g back to x's shape
    mean:  dL/dx = g / n                     (n = number of elements reduced)
    max:   dL/dx = g at the maximum, shared equally between tied maxima (as torch.amax), 0 elsewhere
    a @ b: dL/da = g @ b^T,  dL/db = a^T @ g  (batched over leading axes, then un-broadcast)

`axis` is None (all axes), an int or a tuple of ints, negative allowed; `keepdims` as in NumPy.
"""
import numpy as np

from .elementwise import unbroadcast
from .function import Function


def _expand_reduced(grad, in_shape, axis, keepdims):
    """Give a reduced gradient its reduced axes back (size 1) so that it broadcasts against the input."""
    if keepdims or axis is None:
        return grad if keepdims else np.reshape(grad, (1,) * len(in_shape))
    axes = (axis,) if np.isscalar(axis) else axis
    axes = sorted(a % len(in_shape) for a in axes)
    return np.expand_dims(grad, tuple(axes))


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.args = (a.shape, axis, keepdims)
        return np.sum(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        shape, axis, keepdims = ctx.args
        return (np.broadcast_to(_expand_reduced(grad, shape, axis, keepdims), shape),)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        out = np.mean(a, axis=axis, keepdims=keepdims)
        ctx.args = (a.shape, axis, keepdims, a.size // max(np.size(out), 1))
        return out

    @staticmethod
    def backward(ctx, grad):
        shape, axis, keepdims, n = ctx.args
        return (np.broadcast_to(_expand_reduced(grad, shape, axis, keepdims) / n, shape),)


class Max(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        out = np.max(a, axis=axis, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.args = (axis, keepdims)
        return out if keepdims else np.squeeze(out, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        a, out = ctx.saved
        axis, keepdims = ctx.args
        is_max = a == out
        count = np.sum(is_max, axis=axis, keepdims=True)
        return (_expand_reduced(grad, a.shape, axis, keepdims) * is_max / count,)


class MatMul(Function):
    """a @ b with NumPy's rules: 1-D operands are promoted, leading (batch) axes broadcast."""

    @staticmethod
    def forward(ctx, a, b):
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2] if b.ndim >= 2 else None
        if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != k_b:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match: the last dimension of the "
                             f"first ({a.shape[-1] if a.ndim else 'scalar'}) must equal the "
                             f"{'first' if b.ndim == 1 else 'second-to-last'} dimension of the second")
        ctx.save_for_backward(a, b)
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        a2 = a[None, :] if a.ndim == 1 else a                     # (K,) -> (1, K)
        b2 = b[:, None] if b.ndim == 1 else b                     # (K,) -> (K, 1)
        g2 = grad
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        grad_a = grad_b = None
        if need_a:
            grad_a = unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape)
            grad_a = grad_a.reshape(a.shape)
        if need_b:
            grad_b = unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape)
            grad_b = grad_b.reshape(b.shape)
        return grad_a, grad_b
