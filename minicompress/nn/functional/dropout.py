"""dropout(x, p, training): zero each element with probability p, scale the survivors by 1 / (1 - p).

    y = x * m / (1 - p),   m_i ~ Bernoulli(1 - p)        dL/dx = g * m / (1 - p)
(Srivastava et al., 2014; "inverted" dropout, so evaluation is the identity.) The mask is drawn from the
library generator `mc.core.rng()`, so `mc.manual_seed` repeats it. Shapes: any -> the same shape.
"""
import numpy as np

from ...core import Function, rng
from .utils import as_tensor


class DropoutFn(Function):
    name = "dropout"

    @staticmethod
    def forward(ctx, x, p):
        if p >= 1.0:
            scaled_mask = np.zeros_like(x)
        else:
            keep = rng().random(x.shape, dtype=np.float32) >= p
            scaled_mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
        ctx.save_for_backward(scaled_mask)
        return x * scaled_mask

    @staticmethod
    def backward(ctx, grad):
        (scaled_mask,) = ctx.saved
        return grad * scaled_mask, None


def dropout(x, p=0.5, training=True):
    """Inverted dropout; the identity (the same Tensor) when training=False or p=0."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p!r}")
    x = as_tensor(x)
    if not training or p == 0.0:
        return x
    return DropoutFn.apply(x, float(p))
