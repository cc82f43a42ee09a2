"""Quantization primitives against independent NumPy formulas (float32, as PyTorch) and hypothesis properties."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import minicompress as mc
from minicompress.quant import (calc_qparams, calc_qparams_per_group, dequantize, dequantize_per_group, fake_quantize,
                                qrange, quantize, quantize_per_group)
from tests.strategies import arrays, float_ranges, qrange_args, shapes

EPS32 = np.float32(np.finfo(np.float32).eps)


def ref_qparams(lo, hi, qmin, qmax, symmetric):
    """DESIGN.md's formulas, written out independently in float32."""
    lo, hi = np.float32(min(lo, 0.0)), np.float32(max(hi, 0.0))
    if symmetric:
        scale = max(np.float32(max(-lo, hi)) / np.float32((qmax - qmin) / 2), EPS32)
        return np.float32(scale), (0 if qmin < 0 else (qmin + qmax + 1) // 2)
    scale = max(np.float32(hi - lo) / np.float32(qmax - qmin), EPS32)
    zp = int(qmin - np.rint(np.float32(lo) / np.float32(scale)))
    return np.float32(scale), min(max(zp, qmin), qmax)


def test_qrange_table():
    assert qrange() == (-128, 127)
    assert qrange(8, signed=False) == (0, 255)
    assert qrange(8, signed=False, reduce_range=True) == (0, 127)   # torch quint8 reduce_range
    assert qrange(8, signed=True, reduce_range=True) == (-64, 63)
    assert qrange(8, narrow_range=True) == (-127, 127)
    assert qrange(4) == (-8, 7) and qrange(4, signed=False) == (0, 15)
    assert qrange(2) == (-2, 1) and qrange(16, signed=False) == (0, 65535)


@pytest.mark.parametrize("bits", [0, 1, 17, 32, 2.5, "8", True])
def test_bits_outside_2_16_is_a_clear_error(bits):
    with pytest.raises(ValueError, match="bits must be an int in 2..16"):
        qrange(bits)


@given(qrange_args(), float_ranges(), st.booleans())
def test_calc_qparams_matches_formula_and_properties(args, rng_, symmetric):
    qmin, qmax = qrange(*args)
    lo, hi = rng_
    scale, zp = calc_qparams(lo, hi, qmin, qmax, symmetric)
    ref_scale, ref_zp = ref_qparams(float(lo), float(hi), qmin, qmax, symmetric)
    assert scale.dtype == np.float32 and isinstance(zp, int)
    assert scale == ref_scale and zp == ref_zp
    assert scale > 0 and qmin <= zp <= qmax
    # 0.0 is exactly representable: it quantizes to zp and comes back as 0.0
    q0 = quantize(np.zeros(1, np.float32), scale, zp, qmin, qmax)
    assert int(q0[0]) == zp and dequantize(q0, scale, zp)[0] == 0.0


@given(float_ranges(n=5), st.booleans())
def test_per_channel_qparams_equal_per_tensor_channel_by_channel(rng_, symmetric):
    lo, hi = rng_
    scale, zp = calc_qparams(lo, hi, -128, 127, symmetric)
    assert scale.shape == (5,) and zp.shape == (5,)
    for c in range(5):
        s_c, z_c = calc_qparams(lo[c], hi[c], -128, 127, symmetric)
        assert scale[c] == s_c and zp[c] == z_c


def test_constant_tensor_does_not_divide_by_zero():
    scale, zp = calc_qparams(0.0, 0.0, 0, 255)
    assert scale == EPS32 and zp == 0
    np.testing.assert_array_equal(dequantize(quantize(np.zeros(4), scale, zp, 0, 255), scale, zp), 0)


def test_unsigned_symmetric_zero_point_is_the_middle():
    assert calc_qparams(-1.0, 1.0, 0, 255, symmetric=True)[1] == 128
    assert calc_qparams(-1.0, 1.0, 0, 15, symmetric=True)[1] == 8


@given(qrange_args(max_bits=12), arrays(shapes(max_dims=3, max_side=6), -50, 50, dtype=np.float32), st.booleans())
def test_roundtrip_error_idempotence_and_dtype(args, x, symmetric):
    qmin, qmax = qrange(*args)
    scale, zp = calc_qparams(x.min(), x.max(), qmin, qmax, symmetric)
    assume(scale > 1e-4)
    q = quantize(x, scale, zp, qmin, qmax)
    assert q.dtype.itemsize <= 2 and q.min() >= qmin and q.max() <= qmax
    ref = np.clip(np.rint(x * (np.float32(1) / scale)) + zp, qmin, qmax)   # torch's x * (1/scale)
    np.testing.assert_array_equal(q, ref)
    xh = dequantize(q, scale, zp)
    assert xh.dtype == np.float32
    inside = (x >= (qmin - zp) * scale) & (x <= (qmax - zp) * scale)
    # half a step, plus float32 rounding: x * fl(1/scale) carries two relative errors of 2^-24 (|x| 2^-23 in real
    # units, enough to push a tie like x / scale = -1023.5 to the farther code) and the dequantization one more
    rounding = 2.0 ** -22 * (np.abs(x) + np.abs(xh))
    assert np.all((np.abs(x - xh) <= scale / 2 + rounding)[inside])
    np.testing.assert_array_equal(quantize(xh, scale, zp, qmin, qmax), q)   # idempotent on dequantized values


@given(arrays(st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3)), dtype=np.float32),
       st.integers(-3, 2), st.booleans())
def test_per_channel_quantize_equals_per_tensor_slice_by_slice(x, axis, symmetric):
    moved = np.moveaxis(x, axis, 0)
    lo, hi = moved.reshape(moved.shape[0], -1).min(1), moved.reshape(moved.shape[0], -1).max(1)
    scale, zp = calc_qparams(lo, hi, -128, 127, symmetric)
    q = quantize(x, scale, zp, -128, 127, axis=axis)
    xh = dequantize(q, scale, zp, axis=axis)
    for c in range(moved.shape[0]):
        qc = quantize(moved[c], scale[c], zp[c], -128, 127)
        np.testing.assert_array_equal(np.moveaxis(q, axis, 0)[c], qc)
        np.testing.assert_array_equal(np.moveaxis(xh, axis, 0)[c], dequantize(qc, scale[c], zp[c]))


@given(arrays(st.tuples(st.integers(1, 4), st.sampled_from([4, 8, 12])), dtype=np.float32), st.sampled_from([2, 4]))
def test_per_group_equals_per_tensor_group_by_group(w, group):
    qmin, qmax = qrange(4)
    scale, zp = calc_qparams_per_group(w, group, qmin, qmax)
    q = quantize_per_group(w, scale, zp, qmin, qmax, group)
    wh = dequantize_per_group(q, scale, zp, group)
    for r in range(w.shape[0]):
        for g in range(w.shape[1] // group):
            cols = slice(g * group, (g + 1) * group)
            s, z = calc_qparams(w[r, cols].min(), w[r, cols].max(), qmin, qmax, True)
            assert scale[r, g] == s and zp[r, g] == z
            np.testing.assert_array_equal(q[r, cols], quantize(w[r, cols], s, z, qmin, qmax))
            np.testing.assert_array_equal(wh[r, cols], dequantize(q[r, cols], s, z))


def test_per_group_size_must_divide():
    with pytest.raises(ValueError, match="not a multiple of group_size=3"):
        calc_qparams_per_group(np.ones((2, 8)), 3, -8, 7)


@given(arrays(shapes(max_dims=2, max_side=6), -3, 3, dtype=np.float32), st.sampled_from([(0, 255), (-8, 7)]))
def test_fake_quantize_forward_and_straight_through_gradient(x, qr):
    qmin, qmax = qr
    scale, zp = np.float32(0.05), (qmin + qmax) // 2
    t = mc.Tensor(x, requires_grad=True)
    y = fake_quantize(t, scale, zp, qmin, qmax)
    np.testing.assert_array_equal(y.data, dequantize(quantize(x, scale, zp, qmin, qmax), scale, zp))
    g = np.arange(x.size, dtype=np.float32).reshape(x.shape) + 1
    y.backward(g)
    code = np.rint(x * (np.float32(1) / scale)) + zp
    inside = (code >= qmin) & (code <= qmax)
    np.testing.assert_array_equal(t.grad, np.where(inside, g, 0))   # 1 inside, 0 outside


def test_fake_quantize_per_channel_axis():
    x = mc.Tensor(np.array([[0.3, -0.3], [3.0, -3.0]], np.float32), requires_grad=True)
    y = fake_quantize(x, np.array([0.1, 1.0], np.float32), np.array([0, 0]), -2, 1, axis=0)
    np.testing.assert_allclose(y.data, [[0.1, -0.2], [1.0, -2.0]], rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0], [0, 0]])
    x2 = mc.Tensor(np.array([[0.05]], np.float32), requires_grad=True)
    fake_quantize(x2, 0.1, 0, -2, 1).sum().backward()
    assert x2.grad[0, 0] == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_clear_errors(bad):
    x = np.array([0.0, bad], np.float32)
    with pytest.raises(ValueError, match="NaN|inf"):
        quantize(x, 0.1, 0, 0, 255)
    with pytest.raises(ValueError, match="NaN|inf"):
        fake_quantize(mc.Tensor(x), 0.1, 0, 0, 255)
    with pytest.raises(ValueError, match="finite"):
        calc_qparams(0.0, bad, 0, 255)


def test_zero_size_and_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        quantize(np.zeros((0, 3)), 0.1, 0, 0, 255)
    with pytest.raises(ValueError, match="empty"):
        dequantize(np.zeros(0, np.int8), 0.1, 0)
    with pytest.raises(ValueError, match="min_val must be <= max_val"):
        calc_qparams(1.0, -1.0, 0, 255)
    with pytest.raises(ValueError, match="qmin < qmax"):
        quantize(np.ones(3), 0.1, 0, 5, 5)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        quantize(np.ones(3), 0.0, 0, 0, 255)
    with pytest.raises(ValueError, match=r"axis 1 of shape \(3, 4\) needs scale and zero_point of shape \(4,\)"):
        quantize(np.ones((3, 4)), np.ones(3), np.zeros(3, int), 0, 255, axis=1)
    with pytest.raises(ValueError, match="16 bits"):
        quantize(np.ones(3), 0.1, 0, 0, 2 ** 20)
    with pytest.raises(TypeError, match="integer array"):
        dequantize(np.ones(3, np.float32), 0.1, 0)


def test_ste_grad_rejects_bad_input():
    with pytest.raises(ValueError, match="grad has shape"):
        mc.quant.ste_grad(np.ones(3, np.float32), 0.1, 0, -8, 7, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="qmin < qmax"):
        mc.quant.ste_grad(np.ones(3, np.float32), 0.1, 0, 7, -8, np.ones(3, np.float32))
