"""Exercise 9: folding BatchNorm into the layer before it.

Return the weight and bias of one layer that computes layer-then-eval-mode-BatchNorm.

Fill in the body of `fold_bn_params` below, then check it with

    python tutorials/exercises/check.py 9

Reference solution: `fold_bn_params` in minicompress/graph/fold_bn.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np


def fold_bn_params(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    """(w', b') for a layer with weight (C, ...) and bias (C,) or None, followed by eval-mode BatchNorm."""
    # TODO(exercise 9): hints
    #   - s_c = gamma_c / sqrt(running_var_c + eps) (gamma None means 1).
    #   - w'_c = w_c * s_c (reshape s to (C, 1, ...) to broadcast over the weight).
    #   - b'_c = (b_c - running_mean_c) * s_c + beta_c (bias None means 0, beta None means 0).
    #   - Compute in float64 and cast both results back to weight.dtype.
    raise NotImplementedError("Exercise 9: fold_bn_params is not written yet")
