"""FP16 (IEEE 754 binary16, "half"): 1 sign, 5 exponent, 10 mantissa bits.

11 significant bits (spacing 2^-10 ≈ 0.1 % in [1, 2)) but a narrow range: largest finite 65504, smallest
normal 2^-14 ≈ 6.1e-5, smallest subnormal 2^-24 ≈ 6e-8. Activations and weights fit; small gradients
underflow to 0 and large ones overflow to inf -- hence loss scaling in mixed-precision training
(`grad_scaler.py`). NumPy's float16 conversion rounds to nearest even, with subnormals, ±inf and NaN,
so the emulation is a cast there and back.
Reference: Micikevicius et al., "Mixed Precision Training", ICLR 2018.
"""
import numpy as np

FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -14              # smallest normal
FP16_EPS = 2.0 ** -10


def fp16_bits(x):
    """The binary16 bit patterns (uint16) of `x` rounded to nearest even."""
    with np.errstate(over="ignore"):                 # overflow to ±inf is the rounding's answer
        return np.asarray(x).astype(np.float16).view(np.uint16)


def from_fp16_bits(bits):
    """float32 values of binary16 bit patterns (uint16 array)."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise TypeError(f"from_fp16_bits: expected a uint16 array of bit patterns, got dtype {bits.dtype}")
    return bits.view(np.float16).astype(np.float32)


def round_to_fp16(x):
    """float32 array holding the FP16 values nearest to `x` (ties to even; overflow -> ±inf)."""
    with np.errstate(over="ignore"):                 # overflow to ±inf is the rounding's answer
        return np.asarray(x).astype(np.float16).astype(np.float32)
