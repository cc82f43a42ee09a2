"""Exercise 2: the straight-through estimator of fake quantization.

Return the gradient that fake quantization passes back to its input: the incoming gradient where the
value was not clamped, 0 where it was.

Fill in the body of `ste_grad` below, then check it with

    python tutorials/exercises/check.py 2

Reference solution: `ste_grad` in tutorials/exercises/references.py (a wrapper of the library).
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np


def ste_grad(x, scale, zero_point, qmin, qmax, grad):
    """Gradient of fake_quantize(x) with the straight-through estimator (Bengio et al. 2013).

    x, grad: float32 arrays of one shape; scale > 0 and zero_point are scalars; qmin < qmax ints.
    Returns dL/dx = grad where qmin <= rint(x / scale) + zero_point <= qmax, else 0 (the clamped values).
    """
    # TODO(exercise 2): hints
    #   - Round as the forward does: q = np.rint(x * (1 / scale)) + zero_point, in float32.
    #   - The mask is qmin <= q <= qmax (both ends included): clamped values get no gradient.
    #   - Return grad * mask as a float32 array of x's shape.
    raise NotImplementedError("Exercise 2: ste_grad is not written yet")
