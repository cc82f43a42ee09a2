"""Fused epilogues (bias, requantization to uint8/int8, dequantization to float32, ReLU), dynamic activation
quantization, im2col and integer convolution, on both kernel paths, against NumPy written in the test."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from minicompress.kernels import (DynamicQLinear, QLinear, cpu_has_vnni, im2col_reference, im2col_u8, pack_weight,
                                  qconv2d, qlinear, qlinear_dynamic, quantize_dynamic_u8, quantize_multiplier,
                                  requantize_reference)
from minicompress.kernels import qgemm
from minicompress.kernels.dynamic_quant import float_range
from tests.strategies import int_matrix

PATHS = ["portable", "vnni"] if cpu_has_vnni() else ["portable"]
EPS32 = np.float32(np.finfo(np.float32).eps)


def exact_acc(a, za, w, zw, bias):
    return ((a.astype(np.int64) - za) @ (w.astype(np.int64) - np.asarray(zw, np.int64).reshape(-1, 1)).T
            + np.asarray(bias, np.int64))


def numpy_dynamic_quant(x, per_row, qmax):
    """Independent restatement of DESIGN.md's affine qparams in float32 + quantize by the reciprocal."""
    lo = x.min(axis=1, keepdims=True) if per_row else np.full((x.shape[0], 1), x.min(), np.float32)
    hi = x.max(axis=1, keepdims=True) if per_row else np.full((x.shape[0], 1), x.max(), np.float32)
    lo, hi = np.minimum(lo, np.float32(0)), np.maximum(hi, np.float32(0))
    scale = np.maximum((hi - lo) / np.float32(qmax), EPS32).astype(np.float32)
    zp = np.clip(0 - np.rint(lo / scale), 0, qmax).astype(np.int64)
    q = np.clip(np.rint(x * (np.float32(1) / scale)) + zp, 0, qmax).astype(np.uint8)
    return q, scale[:, 0], zp[:, 0]


@pytest.mark.parametrize("path", PATHS)
@given(m=st.integers(1, 11), k=st.integers(1, 90), n=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       out_int8=st.booleans(), relu=st.booleans(), per_channel=st.booleans(), int8_input=st.booleans())
def test_qlinear_equals_requantized_exact_product(path, m, k, n, seed, out_int8, relu, per_channel, int8_input):
    rng = np.random.default_rng(seed)
    x_dtype = np.int8 if int8_input else np.uint8
    x = int_matrix(rng, (m, k), x_dtype)
    zx = int(rng.integers(-128, 128)) if int8_input else int(rng.integers(0, 256))
    w = int_matrix(rng, (n, k), np.int8)
    bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
    reals = rng.uniform(1e-4, 0.02, size=n) if per_channel else np.float64(rng.uniform(1e-4, 0.02))
    m0, shift = quantize_multiplier(reals)
    out_dtype = np.int8 if out_int8 else np.uint8
    info = np.iinfo(out_dtype)
    z_out = int(rng.integers(info.min, info.max + 1))
    got = qlinear(x, zx, pack_weight(w), m0, shift, z_out, bias_int32=bias, relu=relu, out_dtype=out_dtype,
                  path=path)
    acc = exact_acc(x, zx, w, 0, bias)
    qmin = max(info.min, z_out) if relu else info.min
    expected = requantize_reference(np.clip(acc, -2**31, 2**31 - 1).astype(np.int32), m0, shift, z_out, qmin,
                                    info.max, out_dtype=out_dtype)
    assert got.dtype == out_dtype and got.shape == (m, n)
    np.testing.assert_array_equal(got, expected)
    if relu:   # ReLU in the quantized domain: nothing below the output zero point (real 0.0)
        assert (got.astype(np.int64) >= z_out).all()


@pytest.mark.parametrize("path", PATHS)
@given(m=st.integers(1, 11), k=st.integers(1, 90), n=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       per_row=st.booleans(), reduce_range=st.booleans(), relu=st.booleans(), with_bias=st.booleans())
def test_qlinear_dynamic_matches_numpy(path, m, k, n, seed, per_row, reduce_range, relu, with_bias):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10)).astype(np.float32)
    w = int_matrix(rng, (n, k), np.int8)
    w_scale = rng.uniform(1e-3, 1e-2, size=n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    got = qlinear_dynamic(x, pack_weight(w, scale=w_scale), bias, per_row=per_row, reduce_range=reduce_range,
                          relu=relu, path=path)
    q, sx, zx = numpy_dynamic_quant(x, per_row, 127 if reduce_range else 255)
    acc = (q.astype(np.int64) - zx[:, None]) @ w.astype(np.int64).T
    expected = acc.astype(np.float32) * (sx[:, None] * w_scale[None, :]) + (0 if bias is None else bias)
    if relu:
        expected = np.maximum(expected, 0)
    assert got.dtype == np.float32 and got.shape == (m, n)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * float(np.abs(expected).max() + 1))
    # and it approximates the float Linear: error bounded by the activation step times sum |w|
    real = x @ (w.astype(np.float32) * w_scale[:, None]).T + (0 if bias is None else bias)
    real = np.maximum(real, 0) if relu else real
    bound = 0.5 * sx[:, None] * (np.abs(w.astype(np.float64)) * w_scale[:, None]).sum(axis=1)[None, :]
    assert (np.abs(got - real) <= bound * 1.001 + 1e-5 * (np.abs(real) + 1)).all()


@given(m=st.integers(1, 20), k=st.integers(1, 70), seed=st.integers(0, 2**32 - 1), per_row=st.booleans(),
       reduce_range=st.booleans(), shift=st.floats(-5, 5), parallel=st.booleans())
def test_dynamic_quantization_equals_numpy(m, k, seed, per_row, reduce_range, shift, parallel):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) + np.float32(shift)).astype(np.float32)
    x[0, 0] = 0.0 if k > 1 else x[0, 0]
    q, scale, zp = quantize_dynamic_u8(x, per_row=per_row, reduce_range=reduce_range, parallel=parallel)
    q_ref, scale_ref, zp_ref = numpy_dynamic_quant(x, per_row, 127 if reduce_range else 255)
    assert q.shape == (m, -(-k // 4) * 4) and not q[:, k:].any()
    np.testing.assert_array_equal(q[:, :k], q_ref)
    np.testing.assert_array_equal(scale, scale_ref)
    np.testing.assert_array_equal(zp, zp_ref)
    assert q.max() <= (127 if reduce_range else 255)


@given(x=arrays(np.float32, st.integers(1, 300), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_float_range_equals_numpy_min_max_and_flags_nan_inf(x):
    lo, hi, finite = float_range(x)
    assert finite == bool(np.isfinite(x).all())
    if finite:                    # the same float32 values (-0.0 and 0.0 compare equal: both qparams agree)
        assert lo == x.min() and hi == x.max()


@pytest.mark.parametrize("path", PATHS)
@given(m=st.integers(1, 40), k=st.integers(1, 90), n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       reduce_range=st.booleans(), relu=st.booleans())
def test_dynamic_linear_in_one_call_equals_the_general_path(path, m, k, n, seed, reduce_range, relu):
    # small per-tensor layers run quantize + GEMM + epilogue in one Numba call; parallel=True forces the
    # general path (quantize_dynamic_u8, then the threaded GEMM): same arithmetic, so the same bits
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10) + rng.uniform(-2, 2)).astype(np.float32)
    packed = pack_weight(int_matrix(rng, (n, k), np.int8), scale=rng.uniform(1e-3, 1e-2, n).astype(np.float32))
    bias = rng.standard_normal(n).astype(np.float32)
    one_call = DynamicQLinear(packed, bias, reduce_range=reduce_range, relu=relu, path=path)
    general = DynamicQLinear(packed, bias, reduce_range=reduce_range, relu=relu, path=path, parallel=True)
    np.testing.assert_array_equal(one_call(x), general(x))


def test_dynamic_linear_in_one_call_skips_the_separate_quantization_and_rejects_nan(monkeypatch):
    def separate_pass(*args, **kwargs):
        raise AssertionError("the one-call path must not quantize in a separate pass")

    monkeypatch.setattr(qgemm, "quantize_dynamic_u8", separate_pass)
    layer = DynamicQLinear(pack_weight(np.ones((3, 8), np.int8), scale=0.5))
    x = np.arange(16, dtype=np.float32).reshape(2, 8) * 17        # range [0, 255]: scale 1, zero point 0, exact
    np.testing.assert_array_equal(layer(x), np.repeat(x.sum(axis=1, keepdims=True) * 0.5, 3, axis=1))
    for bad in (np.nan, np.inf, -np.inf):
        x[1, 3] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            layer(x)


def test_dynamic_quantization_edge_cases():
    q, scale, zp = quantize_dynamic_u8(np.zeros((2, 3), np.float32))
    assert (scale == EPS32).all() and (zp == 0).all() and not q.any()          # constant input: no 0 / 0
    q, scale, zp = quantize_dynamic_u8(np.array([[1.0, 2.0], [-4.0, -1.0]], np.float32), per_row=True)
    assert zp[0] == 0 and zp[1] == 255                                          # 0.0 is always representable
    with pytest.raises(ValueError, match="NaN"):
        quantize_dynamic_u8(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(TypeError, match="float32"):
        quantize_dynamic_u8(np.ones((2, 2)))
    with pytest.raises(ValueError, match="empty"):
        quantize_dynamic_u8(np.ones((0, 2), np.float32))


def loop_im2col(x, kh, kw, sh, sw, ph, pw, pad):
    """Most literal im2col: Python loops over output positions and the window."""
    n_b, c_n, h, w = x.shape
    oh_n, ow_n = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    rows = []
    for n in range(n_b):
        for oh in range(oh_n):
            for ow in range(ow_n):
                row = []
                for c in range(c_n):
                    for i in range(kh):
                        for j in range(kw):
                            y, xx = oh * sh + i - ph, ow * sw + j - pw
                            row.append(x[n, c, y, xx] if 0 <= y < h and 0 <= xx < w else pad)
                rows.append(row)
    return np.array(rows, np.int64).reshape(n_b * oh_n * ow_n, c_n * kh * kw)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 7),
       w=st.integers(1, 7), kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 2), sw=st.integers(1, 2),
       ph=st.integers(0, 2), pw=st.integers(0, 2), pad=st.integers(0, 255))
def test_im2col_matches_loops(seed, n, c, h, w, kh, kw, sh, sw, ph, pw, pad):
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return
    x = int_matrix(np.random.default_rng(seed), (n, c, h, w), np.uint8)
    cols, oh, ow = im2col_u8(x, (kh, kw), (sh, sw), (ph, pw), pad_value=pad)
    expected = loop_im2col(x, kh, kw, sh, sw, ph, pw, pad)
    k = c * kh * kw
    assert cols.shape == (n * oh * ow, -(-k // 4) * 4) and not cols[:, k:].any()
    np.testing.assert_array_equal(cols[:, :k], expected)
    np.testing.assert_array_equal(im2col_reference(x, (kh, kw), (sh, sw), (ph, pw), pad), expected)


def direct_conv(x, zx, w, bias, stride, padding):
    """Integer convolution by definition (int64), zero-padding in the REAL domain: pad x - zx with 0."""
    xr = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n_b, _, hp, wp = xr.shape
    o, _, kh, kw = w.shape
    oh, ow = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    out = np.zeros((n_b, o, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = xr[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w.astype(np.int64))
    return out + np.asarray(bias, np.int64).reshape(1, -1, 1, 1)


@pytest.mark.parametrize("path", PATHS)
@given(seed=st.integers(0, 2**32 - 1), c=st.integers(1, 4), o=st.integers(1, 9), size=st.integers(3, 8),
       k=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 2), relu=st.booleans())
def test_qconv2d_equals_direct_integer_convolution(path, seed, c, o, size, k, stride, padding, relu):
    rng = np.random.default_rng(seed)
    x = int_matrix(rng, (2, c, size, size), np.uint8)
    zx = int(rng.integers(0, 256))
    w = int_matrix(rng, (o, c, k, k), np.int8)
    bias = rng.integers(-1000, 1000, size=o).astype(np.int32)
    packed = pack_weight(w.reshape(o, -1))
    acc = direct_conv(x, zx, w, bias, stride, padding)
    got32 = qconv2d(x, zx, packed, k, None, None, 0, stride=stride, padding=padding, bias_int32=bias,
                    output="int32", path=path)
    np.testing.assert_array_equal(got32, acc)
    m0, shift = quantize_multiplier(0.003)
    got = qconv2d(x, zx, packed, k, m0, shift, 7, stride=stride, padding=padding, bias_int32=bias, relu=relu,
                  path=path)
    expected = requantize_reference(acc.astype(np.int32), m0, shift, 7, 7 if relu else 0, 255, np.uint8)
    assert got.shape == acc.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_epilogue_bad_input():
    w = np.ones((4, 8), np.int8)
    x = np.ones((2, 8), np.uint8)
    with pytest.raises(ValueError, match="scale"):
        qlinear_dynamic(x.astype(np.float32), pack_weight(w))                  # no weight scale
    with pytest.raises(TypeError, match="float32"):
        qlinear_dynamic(x, pack_weight(w, scale=0.1))
    with pytest.raises(ValueError, match="bias"):
        qlinear_dynamic(x.astype(np.float32), pack_weight(w, scale=0.1), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="inner dimensions"):
        qlinear_dynamic(np.ones((2, 7), np.float32), pack_weight(w, scale=0.1))
    with pytest.raises(ValueError, match="m0"):
        qlinear(x, 0, pack_weight(w), 2**31, 0, 0)
    with pytest.raises(ValueError, match="m0 and shift"):
        qlinear(x, 0, pack_weight(w), None, None, 0)
    with pytest.raises(ValueError, match="out_zero_point"):
        qlinear(x, 0, pack_weight(w), 2**30, 0, 300)
    with pytest.raises(TypeError, match="out_dtype"):
        qlinear(x, 0, pack_weight(w), 2**30, 0, 0, out_dtype=np.int32)
    xc = np.ones((1, 2, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="in_features=8"):
        qconv2d(xc, 0, pack_weight(w), 3, 2**30, 0, 0)                   # C*kh*kw = 18 != 8
    with pytest.raises(ValueError, match="larger than the input"):
        qconv2d(xc, 0, pack_weight(np.ones((3, 2 * 5 * 5), np.int8)), 5, 2**30, 0, 0)
    with pytest.raises(TypeError, match="kernel_size"):
        im2col_u8(xc, 2.5)
    with pytest.raises(ValueError, match="4-D"):
        im2col_u8(xc[0], 2)
    with pytest.raises(TypeError, match="x_zero_point"):
        qconv2d(xc, np.array([1, 2]), pack_weight(np.ones((3, 8), np.int8)), 2, 2**30, 0, 0)


@pytest.mark.parametrize("path", PATHS)
def test_layer_objects_equal_the_functional_forms_and_are_reusable(path):
    rng = np.random.default_rng(5)
    w = int_matrix(rng, (70, 33), np.int8)
    w_scale = rng.uniform(1e-3, 1e-2, size=70).astype(np.float32)
    packed = pack_weight(w, scale=w_scale)
    bias_f = rng.standard_normal(70).astype(np.float32)
    dyn = DynamicQLinear(packed, bias_f, per_row=True, relu=True, path=path)
    bias_i = rng.integers(-999, 999, size=70).astype(np.int32)
    m0, shift = quantize_multiplier(rng.uniform(1e-3, 1e-2, size=70))
    static = QLinear(packed, 17, m0, shift, -3, bias_int32=bias_i, out_dtype=np.int8, path=path)
    for m in (1, 5, 40):                                       # one object, several batch sizes
        x = rng.standard_normal((m, 33)).astype(np.float32)
        np.testing.assert_array_equal(dyn(x), qlinear_dynamic(x, packed, bias_f, per_row=True, relu=True,
                                                              path=path))
        x_q = int_matrix(rng, (m, 33), np.uint8)
        expected = requantize_reference(exact_acc(x_q, 17, w, 0, bias_i).astype(np.int32), m0, shift, -3)
        np.testing.assert_array_equal(static(x_q), expected)
    with pytest.raises(ValueError, match="scale"):
        DynamicQLinear(pack_weight(w))
    with pytest.raises(TypeError, match="x_zero_point"):
        QLinear(packed, 1.5, m0, shift, 0)
    with pytest.raises(ValueError, match="inner dimensions"):
        static(np.ones((2, 32), np.uint8))
