"""Fixed-point requantization: int32 accumulator -> int8 / uint8 output, with integer arithmetic only.

After an integer GEMM the accumulator holds acc = sum (q_a - z_a)(q_w - z_w), worth acc * s_a * s_w in real
units. The output, quantized with (s_out, z_out), is

    q_out = clamp(round(acc * M) + z_out, qmin, qmax),        M = s_a * s_w / s_out  (a real number > 0)

Jacob et al. (CVPR 2018, eq. 6) write M = 2^-n * M0 with M0 in [0.5, 1) and store M0 as an int32 in Q31
(m0 = round(M0 * 2^31)), so the multiply is an integer one. `quantize_multiplier(M) -> (m0, shift)` returns
that pair with M = m0 * 2^-31 * 2^-shift (shift may be negative when M >= 1: a left shift).

Rounding convention: gemmlowp's, exactly as in Jacob et al.'s reference code (and TFLite's
MultiplyByQuantizedMultiplier), bit for bit:
    x = SaturatingRoundingDoublingHighMul(acc << max(-shift, 0), m0)   # round(acc * m0 / 2^31)
    x = RoundingDivideByPOT(x, max(shift, 0))                          # round(x / 2^shift)
The first step adds a nudge of 2^30 (or 1 - 2^30 for a negative product) and truncates toward zero: nearest,
ties toward +infinity. The second step rounds to nearest, ties away from zero. Neither is np.rint's ties-to-even:
this is the one place where integer-only inference follows gemmlowp instead of PyTorch's float rounding.
Because it rounds twice, the result can differ by one unit from the single rounding of the exact real product
acc * M (e.g. acc = 1, M = 1/4: 0.25 -> 0.5 -> 1). `requantize_float_reference` gives that float64 value
(half away from zero), and the tests check |difference| <= 1 everywhere and equality when shift <= 0 and M is
not a tie (the second step is then the identity).

Functions (same arguments, scalar or per-output-channel (last axis) m0 / shift):
    requantize(acc, m0, shift, zero_point=0, qmin=-128, qmax=127, out_dtype=np.int8)   Numba
    requantize_reference(...)        NumPy int64 twin, bit-exact with `requantize`
    requantize_float_reference(...)  float64 round(acc * M) (half away from zero), within 1 of the above
"""
import math

import numpy as np
from numba import njit

from .checks import check_array

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(real_multiplier):
    """Real M >= 0 -> (m0 int32 in [2^30, 2^31), shift int) with M ~= m0 * 2^-31 * 2^-shift.

    Accepts a scalar (returns two Python ints) or a 1-D array (returns int32 arrays, one pair per channel).
    M = 0 gives (0, 0). The relative error of the representation is at most 2^-31.
    """
    arr = np.asarray(real_multiplier, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"real_multiplier must be finite and >= 0, got {real_multiplier!r}")
    if arr.ndim == 0:
        return _quantize_multiplier_scalar(float(arr))
    pairs = [_quantize_multiplier_scalar(float(v)) for v in arr.ravel()]
    m0 = np.array([p[0] for p in pairs], dtype=np.int32).reshape(arr.shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int32).reshape(arr.shape)
    return m0, shift


def _quantize_multiplier_scalar(m):
    if m == 0.0:
        return 0, 0
    mantissa, exponent = math.frexp(m)       # m = mantissa * 2^exponent, mantissa in [0.5, 1)
    m0 = int(round(mantissa * 2**31))        # Python round: half to even (the mantissa has 53 bits: rare tie)
    if m0 == 2**31:                          # mantissa rounded up to 1.0: renormalise
        m0 //= 2
        exponent += 1
    shift = -exponent
    if shift > 62:                           # M < 2^-62: every int32 accumulator rounds to zero
        return 0, 0
    if shift < -31:
        raise ValueError(f"real_multiplier={m} is too large (>= 2^31) for fixed-point requantization")
    return m0, shift


# ---- the integer steps of gemmlowp, one value at a time (Numba) ---------------------------------------

@njit(cache=True)
def _rounding_doubling_high_mul(x, m0):
    """gemmlowp SaturatingRoundingDoublingHighMul: round(x * m0 / 2^31), ties toward +inf (int64 inside)."""
    if x == INT32_MIN and m0 == INT32_MIN:
        return np.int64(INT32_MAX)
    prod = np.int64(x) * np.int64(m0)
    nudge = np.int64(1 << 30) if prod >= 0 else np.int64(1 - (1 << 30))
    total = prod + nudge
    # C-style division truncating toward zero, as gemmlowp
    q = total // np.int64(1 << 31)
    if total < 0 and q * np.int64(1 << 31) != total:
        q += 1
    return q


@njit(cache=True)
def _rounding_divide_by_pot(x, exponent):
    """round(x / 2^exponent), half away from zero (exponent >= 0)."""
    if exponent == 0:
        return x
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@njit(cache=True)
def requantize_value(acc, m0, shift):
    """One int32 accumulator times M = m0 * 2^-31 * 2^-shift, gemmlowp rounding (no zero point, no clamp)."""
    x = np.int64(acc)
    if shift < 0:                                             # M >= 1: saturating left shift first
        x = x << (-shift)
        x = min(max(x, np.int64(INT32_MIN)), np.int64(INT32_MAX))
    x = _rounding_doubling_high_mul(x, m0)
    return _rounding_divide_by_pot(x, max(shift, 0))


@njit(cache=True)
def _requantize_2d(acc, m0, shift, zero_point, qmin, qmax, out):
    rows, cols = acc.shape
    for i in range(rows):
        for j in range(cols):
            v = requantize_value(acc[i, j], m0[j], shift[j]) + zero_point
            out[i, j] = min(max(v, qmin), qmax)


# ---- public functions -----------------------------------------------------------------------------------

def _prepare(acc, m0, shift, zero_point, qmin, qmax, out_dtype):
    check_array("acc", acc, np.int32, contiguous=False)
    if acc.ndim == 0:
        raise ValueError("acc must have at least one dimension")
    out_dtype = np.dtype(out_dtype)
    if out_dtype not in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32), np.dtype(np.int16)):
        raise TypeError(f"out_dtype must be int8, uint8, int16 or int32, got {out_dtype.name}")
    info = np.iinfo(out_dtype)
    if not (info.min <= qmin <= qmax <= info.max):
        raise ValueError(f"need {info.min} <= qmin <= qmax <= {info.max} for {out_dtype.name}, got [{qmin}, {qmax}]")
    if not info.min <= int(zero_point) <= info.max:
        raise ValueError(f"zero_point={zero_point} is outside the range of {out_dtype.name}")
    channels = acc.shape[-1]
    m0 = np.broadcast_to(np.asarray(m0, dtype=np.int64), (channels,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), (channels,))
    if np.any(m0 < 0) or np.any(m0 > INT32_MAX) or np.any(shift < -31) or np.any(shift > 62):
        raise ValueError("m0 must be in [0, 2^31) and shift in [-31, 62]: use quantize_multiplier(M)")
    return acc, np.ascontiguousarray(m0), np.ascontiguousarray(shift), out_dtype


def requantize(acc, m0, shift, zero_point=0, qmin=-128, qmax=127, out_dtype=np.int8):
    """int32 accumulators [..., N] -> clamp(round(acc * M) + zero_point, qmin, qmax) in out_dtype.

    m0 / shift: scalars (per-tensor) or length-N arrays (per output channel = last axis), from
    `quantize_multiplier`. Rounding: gemmlowp's (half away from zero, two steps), see the module docstring.
    """
    acc, m0, shift, out_dtype = _prepare(acc, m0, shift, zero_point, qmin, qmax, out_dtype)
    acc2 = np.ascontiguousarray(acc).reshape(-1, acc.shape[-1])
    out = np.empty(acc2.shape, dtype=out_dtype)
    _requantize_2d(acc2, m0, shift, np.int64(zero_point), np.int64(qmin), np.int64(qmax), out)
    return out.reshape(acc.shape)


def requantize_reference(acc, m0, shift, zero_point=0, qmin=-128, qmax=127, out_dtype=np.int8):
    """NumPy int64 twin of `requantize` (same gemmlowp steps, vectorised), bit-exact."""
    acc, m0, shift, out_dtype = _prepare(acc, m0, shift, zero_point, qmin, qmax, out_dtype)
    x = acc.astype(np.int64)
    left = np.maximum(-shift, 0)
    x = np.clip(x << left, INT32_MIN, INT32_MAX)
    prod = x * m0
    nudge = np.where(prod >= 0, 1 << 30, 1 - (1 << 30))
    total = prod + nudge
    x = np.where(total >= 0, total >> 31, -((-total) >> 31))  # truncation toward zero, in integers
    right = np.maximum(shift, 0)
    mask = (np.int64(1) << right) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    x = (x >> right) + (remainder > threshold)
    return np.clip(x + int(zero_point), qmin, qmax).astype(out_dtype)


def requantize_float_reference(acc, real_multiplier, zero_point=0, qmin=-128, qmax=127, out_dtype=np.int8):
    """float64 reference: clamp(round_half_away(acc * M) + zero_point); within 1 unit of `requantize`."""
    y = np.asarray(acc, dtype=np.float64) * np.asarray(real_multiplier, dtype=np.float64)
    rounded = np.sign(y) * np.floor(np.abs(y) + 0.5)
    return np.clip(rounded + int(zero_point), qmin, qmax).astype(out_dtype)
