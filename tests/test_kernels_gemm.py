"""Exact int8 GEMM and fixed-point requantization against independent NumPy references (int64 products,
float64 multipliers), on hypothesis shapes including odd sizes and large K; bad input raises clear errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicompress import kernels
from minicompress.kernels import (gemm_s8s8s32, gemm_s8s8s32_loops, gemm_s8s8s32_reference, quantize_multiplier,
                                  requantize, requantize_float_reference, requantize_reference)
from tests.strategies import gemm_shapes, int_matrix


def exact_product(a, b):
    """Independent reference: Python-int-safe int64 product (|entries| <= 2^14 * K fits easily)."""
    return a.astype(np.int64) @ b.astype(np.int64)


@given(gemm_shapes(), st.integers(0, 2**32 - 1))
def test_s8s8_gemms_equal_exact_integer_product(shape, seed):
    m, k, n = shape
    rng = np.random.default_rng(seed)
    a = int_matrix(rng, (m, k), np.int8)
    b = int_matrix(rng, (k, n), np.int8)
    expected = exact_product(a, b)
    for fn in (gemm_s8s8s32, gemm_s8s8s32_loops, gemm_s8s8s32_reference):
        c = fn(a, b)
        assert c.dtype == np.int32 and c.shape == (m, n)
        np.testing.assert_array_equal(c, expected)


def test_s8s8_gemm_extreme_values_do_not_wrap():
    # all -128: every product is +2^14, the largest int8 x int8 value; K = 8192 sums to 2^27
    for k in (1, 3, 8192):
        a = np.full((3, k), -128, np.int8)
        b = np.full((k, 5), -128, np.int8)
        np.testing.assert_array_equal(gemm_s8s8s32(a, b), np.full((3, 5), k * 2**14))
        b[:, 1] = 127
        c = gemm_s8s8s32(a, b)
        assert c[0, 1] == -128 * 127 * k and c[2, 0] == k * 2**14


def test_empty_dimensions():
    a = np.zeros((0, 4), np.int8)
    b = np.zeros((4, 3), np.int8)
    assert gemm_s8s8s32(a, b).shape == (0, 3)
    c = gemm_s8s8s32(np.zeros((2, 0), np.int8), np.zeros((0, 3), np.int8))
    np.testing.assert_array_equal(c, np.zeros((2, 3), np.int32))


@pytest.mark.parametrize("fn", [gemm_s8s8s32, gemm_s8s8s32_loops, gemm_s8s8s32_reference])
def test_gemm_bad_input_raises_clear_errors(fn):
    a = np.ones((4, 6), np.int8)
    b = np.ones((6, 3), np.int8)
    with pytest.raises(TypeError, match="a must have dtype int8"):
        fn(a.astype(np.int16), b)
    with pytest.raises(TypeError, match="b must have dtype int8"):
        fn(a, b.astype(np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fn(a.tolist(), b)
    with pytest.raises(ValueError, match="2-D"):
        fn(a[None], b)
    with pytest.raises(ValueError, match="C-contiguous"):
        fn(np.ones((6, 4), np.int8).T, b)
    with pytest.raises(ValueError, match="C-contiguous"):
        fn(a, np.ones((6, 6), np.int8)[:, ::2])
    with pytest.raises(ValueError, match=r"inner dimensions.*K=6.*K=5"):
        fn(a, np.ones((5, 3), np.int8))
    with pytest.raises(ValueError, match="overflow"):
        fn(np.ones((1, kernels.gemm.MAX_K_S8S8 + 1), np.int8), np.ones((kernels.gemm.MAX_K_S8S8 + 1, 1), np.int8))


# ---- requantization ---------------------------------------------------------------------------------------

@given(st.floats(1e-9, 1e4, allow_nan=False))
def test_quantize_multiplier_represents_m(m):
    m0, shift = quantize_multiplier(m)
    assert 2**30 <= m0 < 2**31
    represented = m0 * 2.0**-31 * 2.0**-shift
    assert abs(represented - m) <= m * 2.0**-31


def test_quantize_multiplier_edges_and_errors():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (2**30, 0)
    assert quantize_multiplier(1.0) == (2**30, -1)
    m0, shift = quantize_multiplier(np.array([0.25, 0.75]))
    assert m0.dtype == np.int32 and list(m0) == [2**30, 3 * 2**29] and list(shift) == [1, 0]
    for bad in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="real_multiplier"):
            quantize_multiplier(bad)
    with pytest.raises(ValueError, match="too large"):
        quantize_multiplier(2.0**40)


def gemmlowp_python(acc, m0, shift):
    """Textbook gemmlowp in Python integers (independent of both implementations)."""
    x, shift = int(acc), int(shift)
    if shift < 0:
        x = max(min(x << -shift, 2**31 - 1), -(2**31))
    prod = x * int(m0)
    nudge = 2**30 if prod >= 0 else 1 - 2**30
    total = prod + nudge
    x = abs(total) // 2**31 * (1 if total >= 0 else -1)              # C division: truncate toward zero
    e = max(shift, 0)
    if e:
        mask = (1 << e) - 1
        x = (x >> e) + int((x & mask) > (mask >> 1) + (x < 0))
    return x


@given(st.integers(0, 2**32 - 1), st.floats(1e-7, 8.0), st.integers(-128, 127), st.booleans())
def test_requantize_matches_gemmlowp_and_float_reference(seed, m, zero_point, per_channel):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-2**24, 2**24, size=(7, 5)).astype(np.int32)
    acc[0, :4] = [0, 1, -1, 2**31 - 1]
    acc[1, :2] = [-(2**31), 2**31 - 2]
    reals = m * rng.uniform(0.5, 2.0, size=5) if per_channel else np.float64(m)
    m0, shift = quantize_multiplier(reals)
    got = requantize(acc, m0, shift, zero_point, -128, 127)
    np.testing.assert_array_equal(got, requantize_reference(acc, m0, shift, zero_point, -128, 127))
    m0s, shifts = np.broadcast_to(m0, 5), np.broadcast_to(shift, 5)
    expected = np.array([[np.clip(gemmlowp_python(acc[i, j], m0s[j], shifts[j]) + zero_point, -128, 127)
                          for j in range(5)] for i in range(7)])
    np.testing.assert_array_equal(got, expected)
    represented = m0s * 2.0**-31 * 2.0**-shifts.astype(np.float64)
    ref = requantize_float_reference(acc, represented, zero_point, -128, 127)
    assert np.abs(got.astype(np.int64) - ref).max() <= 1
    assert got.dtype == np.int8


def test_requantize_is_exact_when_the_shift_is_zero():
    acc = np.arange(-3000, 3000, dtype=np.int32)[:, None]
    m = 0.7390851                                     # shift 0 and not a tie for any accumulator
    m0, shift = quantize_multiplier(m)
    assert shift == 0
    got = requantize(acc, m0, shift, 0, -(2**31), 2**31 - 1, out_dtype=np.int32)
    ref = requantize_float_reference(acc, m0 * 2.0**-31, 0, -(2**31), 2**31 - 1, out_dtype=np.int32)
    np.testing.assert_array_equal(got, ref)


def test_requantize_double_rounding_is_the_gemmlowp_one():
    # 1 * 1/4: the first step gives 0.5 -> 1 (ties up), the second rounds 1/2 away from zero -> 1
    m0, shift = quantize_multiplier(0.25)
    acc = np.array([[1, -1, 2, -2, 6, -6]], np.int32)
    np.testing.assert_array_equal(requantize(acc, m0, shift), [[1, 0, 1, -1, 2, -2]])


def test_requantize_uint8_output_zero_point_and_clamp():
    acc = np.array([[-1000, 0, 1000, 10**6]], np.int32)
    m0, shift = quantize_multiplier(0.1)
    out = requantize(acc, m0, shift, zero_point=128, qmin=0, qmax=255, out_dtype=np.uint8)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[28, 128, 228, 255]])


def test_requantize_bad_input():
    acc = np.zeros((2, 3), np.int32)
    with pytest.raises(TypeError, match="acc must have dtype int32"):
        requantize(acc.astype(np.int64), 2**30, 0)
    with pytest.raises(ValueError, match="qmin"):
        requantize(acc, 2**30, 0, qmin=0, qmax=300, out_dtype=np.uint8)
    with pytest.raises(ValueError, match="m0"):
        requantize(acc, 2**31, 0)
    with pytest.raises(ValueError):
        requantize(acc, np.full(4, 2**30), 0)               # 4 channels for N = 3
    with pytest.raises(TypeError, match="out_dtype"):
        requantize(acc, 2**30, 0, out_dtype=np.float32)
