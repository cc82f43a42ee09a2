"""Exercise 6: the group-lasso proximal step.

Apply the group soft-threshold, the proximal operator of threshold * sum_g ||w_g||_2, to every row
of a (groups, group_size) array (Wen et al. 2016; Parikh & Boyd 2014).

Fill in the body of `group_soft_threshold` below, then check it with

    python tutorials/exercises/check.py 6

Reference solution: `group_soft_threshold` in minicompress/prune/group_lasso.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np


def group_soft_threshold(groups, threshold):
    """The proximal operator of threshold * sum_g ||w_g||_2 on the rows of a (G, K) float array
    (Parikh & Boyd 2014, sec. 6.5.4): every row becomes max(0, 1 - threshold / ||g||_2) * g, so rows with
    ||g|| <= threshold become exactly 0 and the others keep their direction and lose `threshold` of their
    length. threshold = lr * lambda >= 0. Returns float32. GroupLasso.proximal_step applies the same factors
    to groups that span several parameters (a filter, its bias, its BatchNorm)."""
    # TODO(exercise 6): hints
    #   - norms = the L2 norm of every row (compute it in float64).
    #   - factor = max(0, 1 - threshold / norm); a row whose norm is 0 stays 0 (no division by 0).
    #   - Return rows * factor[:, None] as float32.
    raise NotImplementedError("Exercise 6: group_soft_threshold is not written yet")
