"""Exercise 8: rounding float32 to BF16 (round to nearest, ties to even).

Return the uint16 BF16 bit patterns of a float32 array, rounding to nearest with ties to even, using
integer arithmetic on the float32 bit pattern. The checker passes float32 arrays only.

Fill in the body of `bf16_bits` below, then check it with

    python tutorials/exercises/check.py 8

Reference solution: `bf16_bits` in minicompress/precision/bf16.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np


def bf16_bits(x):
    """The BF16 bit patterns (uint16) of float32 `x` after round-to-nearest-even; NaN -> quiet NaN."""
    # TODO(exercise 8): hints
    #   - u = x.view(np.uint32): the float32 bits; BF16 keeps the upper 16.
    #   - Add 0x7FFF plus the lowest kept bit ((u >> 16) & 1), then shift right by 16: round to
    #     nearest, ties to even. Keep the arithmetic in np.uint32.
    #   - NaN must stay NaN: for NaNs, keep the upper half of u with the quiet bit 0x00400000 set.
    #   - Return .astype(np.uint16).
    raise NotImplementedError("Exercise 8: bf16_bits is not written yet")
