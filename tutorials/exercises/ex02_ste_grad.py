"""Exercise 2: the straight-through estimator of fake quantization.

Return the gradient that fake quantization passes back to its input: the incoming gradient where the
value was not clamped, 0 where it was.

Fill in the body of `ste_grad` below, then check it with

    python tutorials/exercises/check.py 2

Reference solution: `ste_grad` in minicompress/quant/qparams.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np


def ste_grad(x, scale, zero_point, qmin, qmax, grad):
    """The straight-through gradient of fake quantization (Bengio et al. 2013; Jacob et al. 2018, sec. 3):

        dL/dx = grad * [qmin <= rint(x / scale) + zero_point <= qmax]

    rounding is treated as the identity, so the gradient passes unchanged where the value was not clamped
    and is 0 where the clamp cut it off (both ends of [qmin, qmax] count as inside). x, grad: float arrays of
    one shape; scale, zero_point: scalars or arrays broadcastable to x; the result has grad's dtype."""
    # TODO(exercise 2): hints
    #   - Round as the forward does: q = np.rint(x * (1 / scale)) + zero_point, in float32.
    #   - The mask is qmin <= q <= qmax (both ends included): clamped values get no gradient.
    #   - Return grad * mask: grad's dtype (float32 here), x's shape.
    raise NotImplementedError("Exercise 2: ste_grad is not written yet")
