"""BF16 (bfloat16): the upper 16 bits of a float32 -- 1 sign, 8 exponent, 7 mantissa bits.

Same exponent range as float32 (max ≈ 3.39e38, so no overflow surprises when casting activations or
gradients), only 8 significant bits (relative spacing 2^-7 ≈ 0.8 %). Rounding a float32 to BF16 with
round-to-nearest-even is integer arithmetic on its bit pattern u (uint32), the trick every BF16 library uses:

    lower   = u & 0xFFFF                     the 16 bits that are dropped
    rounded = u + 0x7FFF + ((u >> 16) & 1)   adds a carry into bit 16 iff lower > 0x8000,
                                             or lower == 0x8000 and the kept part is odd (ties to even)
    bf16    = rounded >> 16

The carry may ripple into the exponent (1.1111111|1... -> 10.0000000) which is exactly right, and from the
largest finite values into 0x7F80 = inf, also right (RNE overflows to inf). NaN is the one exception:
truncating a NaN whose payload sits only in the lower half would give inf, so NaNs keep their upper half
with the quiet bit (0x0040 of the upper half) set. ±0, ±inf and subnormals need no special case.

Shapes: any; `round_to_bf16(x)` returns a float32 array of x's shape holding BF16 values.
Reference: Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", 2019.
"""
import numpy as np

from .float_format import max_finite, round_to_format

BF16_MAX = max_finite(8, 7)          # (2 - 2^-7) · 2^127 ≈ 3.3895e38
BF16_EPS = 2.0 ** -7                 # spacing of BF16 numbers in [1, 2)
_QUIET_BIT = np.uint32(0x00400000)


def _as_float32(x):
    x = np.asarray(x)
    if x.dtype == np.float64:                    # round once from float64: no double rounding via float32
        return round_to_format(x, 8, 7, BF16_MAX, overflow="inf").astype(np.float32)
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _rounded_upper(x):
    """uint32 array whose upper 16 bits are the BF16 pattern of float32 `x` (lower bits: garbage)."""
    u = x.view(np.uint32)
    rounded = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    nan = np.isnan(x)
    if nan.any():
        rounded = np.where(nan, u | _QUIET_BIT, rounded)
    return rounded


def bf16_bits(x):
    """The BF16 bit patterns (uint16) of float32 `x` after round-to-nearest-even; NaN -> quiet NaN."""
    return (_rounded_upper(_as_float32(x)) >> np.uint32(16)).astype(np.uint16)


def from_bf16_bits(bits):
    """float32 values of BF16 bit patterns (uint16 array): shift them into the upper half of a float32."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise TypeError(f"from_bf16_bits: expected a uint16 array of bit patterns, got dtype {bits.dtype}")
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_to_bf16(x):
    """float32 array holding the BF16 values nearest to `x` (ties to even; NaN, ±inf, ±0 kept)."""
    upper = _rounded_upper(_as_float32(x))
    upper &= np.uint32(0xFFFF0000)
    return upper.view(np.float32)
