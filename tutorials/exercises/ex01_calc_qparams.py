"""Exercise 1: scale and zero point from an observed range.

Compute (scale, zero_point) for affine and symmetric quantization, per tensor (scalars) and per
channel (1-D arrays), in float32 as PyTorch's observers do.

Fill in the body of `calc_qparams` below, then check it with

    python tutorials/exercises/check.py 1

Reference solution: `calc_qparams` in minicompress/quant/qparams.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np

FLOAT32_EPS = np.float32(np.finfo(np.float32).eps)


def calc_qparams(min_val, max_val, qmin, qmax, symmetric=False):
    """(scale float32, zero_point int) from an observed range; scalars in, scalars out, 1-D in, 1-D out.

    Per-channel: min_val and max_val are 1-D arrays of equal length; returns a float32 array and an
    int64 array. Computed in float32 as torch.ao.quantization's observers (see module docstring).
    """
    # TODO(exercise 1): hints
    #   - Widen the range to contain 0: min_neg = min(min_val, 0), max_pos = max(max_val, 0).
    #   - Affine: scale = (max_pos - min_neg) / (qmax - qmin); zero_point = qmin - rint(min_neg /
    #     scale), clamped to [qmin, qmax].
    #   - Symmetric: scale = max(-min_neg, max_pos) / ((qmax - qmin) / 2); zero_point = 0 for a
    #     signed range (qmin < 0), (qmin + qmax + 1) // 2 for an unsigned one.
    #   - scale never falls below FLOAT32_EPS; keep every step in float32 (np.float32 constants).
    #   - Scalars in -> (np.float32, int) out; 1-D arrays in -> (float32 array, int64 array) out.
    #   - Input validation is not checked by the checker.
    raise NotImplementedError("Exercise 1: calc_qparams is not written yet")
