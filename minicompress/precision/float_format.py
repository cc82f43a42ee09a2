"""Round real numbers to a small binary floating-point format: sign, `e` exponent bits, `m` mantissa bits.

A normal number of the format is  (-1)^s · 1.f · 2^(E - bias),  bias = 2^(e-1) - 1,  f with m bits;
below the smallest normal exponent emin = 1 - bias come the subnormals  0.f · 2^emin  (gradual underflow).
So around |x| the spacing of representable numbers is

    step(x) = 2^(max(floor(log2 |x|), emin) - m)

and round-to-nearest-even is one line, exact in float64 for every float32 or float64 input:

    q = rint(|x| / step) · step            (np.rint rounds halves to even)

A step of 2^k is a power of two, so the division and the product are exact; rint's "even" is the even
mantissa, i.e. the code whose last bit is 0. What happens above the largest finite value `max_value` is
the format's choice (`overflow`): "inf" (IEEE-like formats: BF16, FP16, FP8 E5M2), "nan" (FP8 E4M3FN
has no infinity) or "saturate" (clamp to ±max_value, as NVIDIA's cvt.satfinite; ±inf -> ±max_value too).
NaN always stays NaN and ±0 keeps its sign.

This generic path is the reference the specialised ones are checked against (bit tricks for BF16 in
`bf16.py`, NumPy's float16 for FP16) and the implementation of the FP8 formats (`fp8.py`).
Reference: IEEE 754-2019 §4.3 (roundTiesToEven); Micikevicius et al., "FP8 Formats for Deep Learning", 2022.
"""
import numpy as np

OVERFLOW_MODES = ("inf", "nan", "saturate")


def round_to_format(x, exponent_bits, mantissa_bits, max_value, overflow="inf"):
    """Round `x` to the nearest value of the format (ties to even); float64 array out, same shape."""
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"round_to_format: overflow must be one of {OVERFLOW_MODES}, got {overflow!r}")
    x = np.asarray(x, dtype=np.float64)
    emin = 2 - 2 ** (exponent_bits - 1)                       # 1 - bias
    ax = np.abs(x)
    finite = np.isfinite(ax)
    safe = np.where(finite, ax, 0.0)
    _, e = np.frexp(safe)                                     # safe = frac · 2^e, frac in [0.5, 1)
    step = np.ldexp(1.0, np.maximum(e - 1, emin) - mantissa_bits)
    q = np.rint(safe / step) * step
    too_big = (q > max_value) | np.isinf(ax)
    if overflow == "inf":
        q = np.where(too_big, np.inf, q)
    elif overflow == "nan":
        q = np.where(too_big, np.nan, q)
    else:
        q = np.where(too_big, max_value, q)
    q = np.where(np.isnan(x), np.nan, q)
    return np.copysign(q, x)


def max_finite(exponent_bits, mantissa_bits, reserved_top_codes="ieee"):
    """Largest finite value: IEEE-like formats reserve the top exponent for inf/NaN ("ieee");
    E4M3FN keeps it and reserves only the all-ones mantissa for NaN ("fn")."""
    bias = 2 ** (exponent_bits - 1) - 1
    if reserved_top_codes == "ieee":
        return (2.0 - 2.0 ** -mantissa_bits) * 2.0 ** (2 ** exponent_bits - 2 - bias)
    if reserved_top_codes == "fn":
        return (2.0 - 2.0 ** (1 - mantissa_bits)) * 2.0 ** (2 ** exponent_bits - 1 - bias)
    raise ValueError(f"max_finite: reserved_top_codes must be 'ieee' or 'fn', got {reserved_top_codes!r}")
