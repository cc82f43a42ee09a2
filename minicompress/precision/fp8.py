"""FP8 emulation: the two 8-bit floating-point formats of Micikevicius et al. (2022) / the OCP spec.

    E4M3FN  1 sign, 4 exponent (bias 7), 3 mantissa bits.  No infinity: the top exponent holds normal
            numbers too, only S.1111.111 is NaN.  Max 448 = 1.75 · 2^8, min normal 2^-6, min subnormal 2^-9.
            Used for weights and activations (more precision).
    E5M2    1 sign, 5 exponent (bias 15), 2 mantissa bits.  IEEE-like: S.11111.00 = ±inf, S.11111.xx = NaN.
            Max 57344 = 1.75 · 2^15, min normal 2^-14, min subnormal 2^-16.  Used for gradients (more range).

Rounding is round-to-nearest-even (`float_format.round_to_format`). Out-of-range values:
    saturate=True   clamp to ±max (also ±inf -> ±max, as cvt.satfinite); the usual choice in training,
    saturate=False  E4M3FN -> NaN (it has no inf), E5M2 -> ±inf.
NaN stays NaN in both modes. `fp8_bits` / `from_fp8_bits` give the 8-bit codes (uint8).
Reference: Micikevicius et al., "FP8 Formats for Deep Learning", arXiv:2209.05433, 2022.
"""
import numpy as np

from .float_format import max_finite, round_to_format

# fmt -> (exponent_bits, mantissa_bits, max finite value, what overflow gives without saturation)
FP8_FORMATS = {
    "e4m3": (4, 3, max_finite(4, 3, "fn"), "nan"),
    "e5m2": (5, 2, max_finite(5, 2, "ieee"), "inf"),
}


def _format(fmt):
    if fmt not in FP8_FORMATS:
        raise ValueError(f"fp8: fmt must be one of {sorted(FP8_FORMATS)}, got {fmt!r}")
    return FP8_FORMATS[fmt]


def round_to_fp8(x, fmt="e4m3", saturate=True):
    """float32 array holding the FP8 values (format `fmt`) nearest to `x`, ties to even."""
    e, m, max_value, overflow = _format(fmt)
    return round_to_format(x, e, m, max_value, "saturate" if saturate else overflow).astype(np.float32)


def fp8_values(fmt="e4m3"):
    """float32 array of the 256 values of the format, indexed by code (NaN codes give NaN)."""
    e, m, _, overflow = _format(fmt)
    codes = np.arange(256)
    sign = np.where(codes >= 128, -1.0, 1.0)
    exponent, mantissa = (codes >> m) & (2 ** e - 1), codes & (2 ** m - 1)
    bias = 2 ** (e - 1) - 1
    normal = (1.0 + mantissa / 2 ** m) * np.exp2(exponent - bias)
    subnormal = (mantissa / 2 ** m) * 2.0 ** (1 - bias)
    values = sign * np.where(exponent == 0, subnormal, normal)
    top = exponent == 2 ** e - 1
    if overflow == "inf":                                    # IEEE-like: top exponent is inf / NaN
        values = np.where(top & (mantissa == 0), sign * np.inf, values)
        values = np.where(top & (mantissa != 0), np.nan, values)
    else:                                                    # FN: only the all-ones code is NaN
        values = np.where(top & (mantissa == 2 ** m - 1), np.nan, values)
    return values.astype(np.float32)


def from_fp8_bits(bits, fmt="e4m3"):
    """float32 values of FP8 codes (uint8 array)."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint8:
        raise TypeError(f"from_fp8_bits: expected a uint8 array of codes, got dtype {bits.dtype}")
    return fp8_values(fmt)[bits]


def fp8_bits(x, fmt="e4m3", saturate=True):
    """uint8 FP8 codes of `x` after rounding (NaN -> the canonical NaN code 0x7F)."""
    q = round_to_fp8(x, fmt, saturate).astype(np.float64)
    table = fp8_values(fmt)[:128].astype(np.float64)         # non-negative codes, increasing values
    finite_codes = np.flatnonzero(np.isfinite(table) & ~np.isnan(table))
    mag = np.abs(q)
    idx = np.searchsorted(table[finite_codes], np.where(np.isfinite(mag), mag, 0.0))
    codes = finite_codes[np.minimum(idx, len(finite_codes) - 1)]
    codes = np.where(np.isinf(mag), np.flatnonzero(np.isinf(table))[0] if np.isinf(table).any() else 0x7F, codes)
    codes = np.where(np.signbit(q), codes | 0x80, codes)
    codes = np.where(np.isnan(q), 0x7F, codes)
    return codes.astype(np.uint8)
