"""Static affine quantization at a float boundary: float32 [...] -> uint8 / int8 codes in one Numba pass.

    q = clamp(rint(x * (1 / scale)) + zero_point, qmin, qmax)          rint: half to even

with 1 / scale computed in float32 and every step in float32, exactly as `quant.quantize` (and PyTorch)
compute it for float32 input: the codes are bit-identical (rint of a float32 product is an integer-valued
float32; adding zero_point and clamping are exact for |values| < 2^24). It replaces NumPy's four passes
(multiply, rint, add + clip, cast) by one. The caller checks the input is finite (NaN has no code).

    quantize_affine(x float32 C-contiguous, scale, zero_point, qmin, qmax) -> int8 if [qmin, qmax] fits, else uint8
    quantize_affine_reference(...)  the NumPy twin
"""
import numpy as np
from numba import njit

from .checks import check_array


@njit(cache=True)
def _quantize_affine(x, inv_scale, zero_point, qmin, qmax, out):
    for i in range(np.uint64(x.shape[0])):          # unsigned index: no negative-index test, vectorised
        q = np.rint(x[i] * inv_scale) + zero_point
        out[i] = min(max(q, qmin), qmax)


def _out_dtype(qmin, qmax):
    """The smallest dtype holding [qmin, qmax], int8 first (as quant.qparams.int_dtype)."""
    if qmin >= -128 and qmax <= 127:
        return np.int8
    if qmin >= 0 and qmax <= 255:
        return np.uint8
    raise ValueError(f"quantize_affine: [qmin, qmax] = [{qmin}, {qmax}] does not fit uint8 or int8")


def quantize_affine(x, scale, zero_point, qmin, qmax):
    """float32 x (any shape, C-contiguous) -> codes of the same shape: int8 if [qmin, qmax] fits it, else uint8."""
    check_array("x", x, np.float32)
    dtype = _out_dtype(int(qmin), int(qmax))
    inv_scale = np.float32(1) / np.float32(scale)
    out = np.empty(x.shape, dtype)
    _quantize_affine(x.reshape(-1), inv_scale, np.float32(zero_point), np.float32(qmin), np.float32(qmax),
                     out.reshape(-1))
    return out


def quantize_affine_reference(x, scale, zero_point, qmin, qmax):
    inv_scale = np.float32(1) / np.float32(scale)
    q = np.clip(np.rint(x * inv_scale) + np.float32(zero_point), np.float32(qmin), np.float32(qmax))
    return q.astype(_out_dtype(int(qmin), int(qmax)))
