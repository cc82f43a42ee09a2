"""linear(x, W, b) = x W^T + b,  x: (..., in),  W: (out, in),  b: (out,)  ->  (..., out).

One Function, one BLAS call forward and two backward:
    dL/dx = g W,   dL/dW = g^T x  (summed over all leading axes),   dL/db = sum of g over leading axes.
Named "linear" so that autocast's lower-precision list can find it.
"""
import numpy as np

from ...core import Function, Tensor


class LinearFn(Function):
    name = "linear"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        out = x @ weight.T
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved
        need_x, need_w = ctx.needs_input_grad[:2]
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_x = (grad @ weight) if need_x else None
        grad_w = (g2.T @ x.reshape(-1, x.shape[-1])) if need_w else None
        grad_b = g2.sum(axis=0) if need_b else None
        return grad_x, grad_w, grad_b


def linear(x, weight, bias=None):
    """Apply y = x W^T + b; raises ValueError when x's last dimension is not W's in_features."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {tuple(x.shape)} does not match weight of shape "
                         f"{tuple(weight.shape)}: expected the input's last dimension to be {weight.shape[1]}")
    return LinearFn.apply(x, weight, bias)
