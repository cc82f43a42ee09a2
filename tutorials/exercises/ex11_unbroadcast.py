"""Exercise 11: the gradient of a broadcast.

When a forward op broadcasts an input of `shape` up to grad.shape, the input's gradient is the sum
over the broadcast axes. Sum `grad` back down to `shape`.

Fill in the body of `unbroadcast` below, then check it with

    python tutorials/exercises/check.py 11

Reference solution: `unbroadcast` in minicompress/core/elementwise.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting (see the module docstring)."""
    # TODO(exercise 11): hints
    #   - Sum away the extra leading axes (grad.ndim - len(shape) of them).
    #   - Then sum, with keepdims=True, every axis where shape has 1 and grad has more.
    #   - If the shapes already agree, return grad unchanged.
    raise NotImplementedError("Exercise 11: unbroadcast is not written yet")
