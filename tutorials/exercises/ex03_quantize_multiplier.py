"""Exercise 3: the fixed-point requantization multiplier.

Write a real multiplier M = s_a * s_w / s_out as M = m0 * 2^-31 * 2^-shift with an int32 m0 in
[2^30, 2^31) (Jacob et al. 2018, eq. 6). Handling a scalar M is enough.

Fill in the body of `quantize_multiplier` below, then check it with

    python tutorials/exercises/check.py 3

Reference solution: `quantize_multiplier` in minicompress/kernels/requantize.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import math

import numpy as np


def quantize_multiplier(real_multiplier):
    """Real M >= 0 -> (m0 int32 in [2^30, 2^31), shift int) with M ~= m0 * 2^-31 * 2^-shift.

    Accepts a scalar (returns two Python ints) or a 1-D array (returns int32 arrays, one pair per channel).
    M = 0 gives (0, 0). The relative error of the representation is at most 2^-31.
    """
    # TODO(exercise 3): hints
    #   - math.frexp(M) gives M = mantissa * 2^exponent with mantissa in [0.5, 1).
    #   - m0 = round(mantissa * 2^31) (Python's round); if that gives 2^31, halve m0 and add 1 to
    #     the exponent.
    #   - shift = -exponent. M = 0 gives (0, 0); so does shift > 62 (every int32 product rounds to
    #     0).
    #   - Return two Python ints for a scalar.
    raise NotImplementedError("Exercise 3: quantize_multiplier is not written yet")
