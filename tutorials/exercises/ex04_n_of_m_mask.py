"""Exercise 4: the N:M sparsity mask (2:4).

Build the bool keep-mask that keeps the n largest |scores| of every m consecutive weights along axis
1 (the input dimension), for Linear (out, in) and Conv2d (out, in, kh, kw) shapes.

Fill in the body of `n_of_m_mask` below, then check it with

    python tutorials/exercises/check.py 4

Reference solution: `n_of_m_mask` in minicompress/prune/masks.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np


def n_of_m_mask(scores, n, m):
    """Keep the n largest scores of every m consecutive weights along axis 1 (the input dimension)."""
    # TODO(exercise 4): hints
    #   - Scores are compared by absolute value.
    #   - Move axis 1 to the end (np.moveaxis), reshape to (-1, m): one row per group.
    #   - np.argsort(..., kind='stable') along each row: the m - n smallest are pruned; among equal
    #     scores the earlier position is pruned first.
    #   - Undo the reshape and the moveaxis; return a bool array of the scores' shape.
    raise NotImplementedError("Exercise 4: n_of_m_mask is not written yet")
