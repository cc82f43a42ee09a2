"""The fast integer path of quantized layers: packed weights, the fused single-rounding (half-even) requantization
epilogue, one-thread drivers for small products, channels-last im2col, the one-pass float-boundary quantization.

Every fast result is compared with an independent exact reference written here (int64 / Fraction arithmetic,
direct convolution loops) or with the NumPy twin it replaces (integer_ops.requantize, quant.quantize /
dequantize); both kernel paths (VNNI where the CPU has it, portable) and both drivers (threaded, one thread)."""
import copy
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress import kernels
from minicompress.kernels.im2col import im2col_nhwc_reference, im2col_nhwc_u8
from minicompress.quant import integer_ops as iops
from minicompress.quant import quantized as Q
from minicompress.quant.qparams import dequantize, quantize
from minicompress.quant.qtensor import QTensor

PATHS = ["portable", "vnni"] if kernels.cpu_has_vnni() else ["portable"]


def exact_requantize(acc, m0, shift, zp, qmin, qmax):
    """clamp(round_half_even(acc * m0 / 2^(31 + shift)) + zp, qmin, qmax), per column, with Fractions."""
    out = np.empty(acc.shape, np.int64)
    for (i, j), a in np.ndenumerate(acc):
        value = Fraction(int(a) * int(m0[j]), 2 ** (31 + int(shift[j])))
        out[i, j] = min(max(round(value) + zp, qmin), qmax)      # Python's round(Fraction): half to even
    return out


# ---- the fused half-even epilogue -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("parallel", [False, True])
@given(data=st.data())
def test_half_even_epilogue_equals_exact_rounding_including_ties(path, parallel, data):
    # K = 1, w = 1: acc[m, n] = a[m] + bias[n], so the test chooses every accumulator, ties included
    n = data.draw(st.integers(1, 70), label="n")
    m = data.draw(st.integers(1, 40), label="m")
    shift = np.array(data.draw(st.lists(st.integers(-1, 62), min_size=n, max_size=n), label="shift"), np.int64)
    tie = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="tie"))
    m0 = np.array(data.draw(st.lists(st.integers(2 ** 30, 2 ** 31 - 1), min_size=n, max_size=n)), np.int64)
    m0[tie] = 2 ** 30                                     # M = 2^-(1 + shift): odd multiples of 2^shift tie
    odd = np.array(data.draw(st.lists(st.integers(-2 ** 20, 2 ** 20), min_size=n, max_size=n)), np.int64)
    bias = np.where(tie & (shift >= 0) & (shift <= 9), (2 * odd + 1) << np.clip(shift, 0, 9),
                    np.array(data.draw(st.lists(st.integers(-2 ** 31 + 256, 2 ** 31 - 256), min_size=n,
                                                max_size=n)), np.int64))
    a = np.array(data.draw(st.lists(st.integers(0, 255), min_size=m, max_size=m)), np.uint8).reshape(m, 1)
    a[0] = 0                                              # row 0: acc = bias, the exact tie in tie columns
    z_out, lo, hi = data.draw(st.sampled_from([(0, 0, 255), (-3, -128, 127), (7, 0, 15), (100, 50, 255)]))
    out_dtype = np.uint8 if lo >= 0 else np.int8
    packed = kernels.pack_weight(np.ones((n, 1), np.int8))
    layer = kernels.QLinear(packed, 0, m0, shift, z_out, bias.astype(np.int32), out_dtype=out_dtype, path=path,
                            rounding="half_even", qmin=lo, qmax=hi, parallel=parallel)
    got = layer(a)
    acc = a.astype(np.int64) + bias[None, :]
    assert got.dtype == out_dtype
    np.testing.assert_array_equal(got, exact_requantize(acc, m0, shift, z_out, lo, hi))
    np.testing.assert_array_equal(got, iops.requantize(acc.astype(np.int32), m0, shift, z_out, lo, hi))


@pytest.mark.parametrize("path", PATHS)
@given(m=st.integers(1, 70), k=st.integers(1, 300), n=st.integers(1, 140), unsigned=st.booleans(),
       weight_zp=st.booleans(), per_channel=st.booleans(), relu=st.booleans(), seed=st.integers(0, 2 ** 31))
def test_int_linear_fast_path_equals_int64_gemm_and_numpy_requantize(path, m, k, n, unsigned, weight_zp,
                                                                      per_channel, relu, seed):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINICOMPRESS_PORTABLE_KERNELS", "1" if path == "portable" else "0")
        check_int_linear(m, k, n, unsigned, weight_zp, per_channel, relu, seed)


def check_int_linear(m, k, n, unsigned, weight_zp, per_channel, relu, seed):
    r = np.random.default_rng(seed)
    lo, hi = (0, 255) if unsigned else (-128, 127)
    qx = r.integers(lo, hi + 1, (m, k)).astype(np.uint8 if unsigned else np.int8)
    zx = int(r.integers(lo, hi + 1))
    qw = r.integers(-128, 128, (n, k)).astype(np.int8)
    zw = r.integers(-4, 5, n) if weight_zp else np.zeros(n, np.int64)
    bias = r.integers(-50000, 50000, n).astype(np.int32)
    mult = r.uniform(1e-5, 1e-2, n if per_channel else 1)
    m0, shift = iops.quantize_multiplier(mult if per_channel else float(mult[0]))
    m0_n, shift_n = np.broadcast_to(m0, (n,)), np.broadcast_to(shift, (n,))
    z_out = int(r.integers(-128, 128))
    qmin = max(-128, z_out) if relu else -128
    layer = iops.IntLinear(qw, zw, zx, lo, hi, bias, m0, shift, z_out, qmin, 127, who="fc")
    assert layer.kernel is not None                      # the packed kernel runs, not the reference
    got = layer(qx)
    acc = (qx.astype(np.int64) - zx) @ (qw.astype(np.int64) - zw[:, None]).T + bias
    expected = iops.requantize(acc.astype(np.int32), m0_n, shift_n, z_out, qmin, 127)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(layer.reference(qx), expected)
    # the functional form (graph executor) and int_matmul agree with the same exact product
    prepared = iops.prepare_weight(qw, zw)
    np.testing.assert_array_equal(iops.int_linear(qx, zx, prepared, bias, m0, shift, z_out, qmin, 127), expected)
    np.testing.assert_array_equal(iops.int_matmul(qx, zx, prepared), acc - bias)


@given(m=st.integers(1, 300), seed=st.integers(0, 2 ** 31))
def test_serial_and_threaded_drivers_agree_on_every_output(m, seed):
    r = np.random.default_rng(seed)
    a = r.integers(0, 256, (m, 37)).astype(np.uint8)
    w = r.integers(-128, 128, (70, 37)).astype(np.int8)
    packed = kernels.pack_weight(w, zero_point=r.integers(-3, 4, 70))
    m0, shift = kernels.quantize_multiplier(r.uniform(1e-4, 1e-2, 70))
    outs = [kernels.QLinear(packed, 9, m0, shift, 4, rounding="half_even", parallel=p)(a) for p in (False, True)]
    np.testing.assert_array_equal(outs[0], outs[1])
    ints = [kernels.gemm_u8s8s32(a, packed, 9, parallel=p) for p in (False, True)]
    exact = (a.astype(np.int64) - 9) @ (w.astype(np.int64) - packed.zero_point[:, None]).T
    np.testing.assert_array_equal(ints[0], exact)
    np.testing.assert_array_equal(ints[1], exact)


def test_parallel_threshold_picks_one_thread_for_small_products():
    from minicompress.kernels import qgemm
    packed = kernels.pack_weight(np.ones((10, 64), np.int8))
    assert not qgemm.use_parallel(256, packed)                   # the digits MLP's last layer
    assert qgemm.use_parallel(1 << 20, packed) == (numba.get_num_threads() > 1)
    assert qgemm.use_parallel(1, packed, parallel=True) and not qgemm.use_parallel(1 << 20, packed, parallel=False)
    assert not qgemm.use_parallel(1 << 20, packed, parallel=1 << 40)              # an int is the threshold
    assert qgemm.use_parallel(1 << 20, packed, parallel=1 << 10) == (numba.get_num_threads() > 1)


# ---- convolution --------------------------------------------------------------------------------------------
@given(n=st.integers(1, 3), c=st.integers(1, 5), o=st.integers(1, 40), h=st.integers(3, 9), w=st.integers(3, 9),
       kh=st.integers(1, 3), kw=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 1),
       seed=st.integers(0, 2 ** 31))
def test_int_conv2d_layer_equals_a_direct_integer_convolution(n, c, o, h, w, kh, kw, stride, pad, seed):
    r = np.random.default_rng(seed)
    qx = r.integers(0, 256, (n, c, h, w)).astype(np.uint8)
    qw = r.integers(-128, 128, (o, c, kh, kw)).astype(np.int8)
    zx, z_out = int(r.integers(0, 256)), int(r.integers(0, 256))
    bias = r.integers(-3000, 3000, o).astype(np.int32)
    m0, shift = iops.quantize_multiplier(r.uniform(1e-4, 1e-2, o))
    conv = iops.IntConv2d(qw, np.zeros(o, np.int64), (stride, stride), (pad, pad), zx, 0, 255, bias, m0, shift,
                          z_out, 0, 255, who="conv")
    got = conv(qx)
    xp = np.pad(qx.astype(np.int64) - zx, ((0, 0), (0, 0), (pad, pad), (pad, pad)))      # real 0 outside
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    acc = np.zeros((n, o, ho, wo), np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            acc[:, :, i, j] = np.einsum("nchw,ochw->no", patch, qw.astype(np.int64))
    acc += bias[None, :, None, None]
    flat = acc.transpose(0, 2, 3, 1).reshape(-1, o)
    expected = iops.requantize(flat.astype(np.int32), m0, shift, z_out, 0, 255)
    np.testing.assert_array_equal(got, expected.reshape(n, ho, wo, o).transpose(0, 3, 1, 2))
    # the int8-activation fallback (NumPy im2col) gives the same codes for the same real inputs
    conv8 = iops.IntConv2d(qw, np.zeros(o, np.int64), (stride, stride), (pad, pad), zx - 128, -128, 127, bias, m0,
                           shift, z_out, 0, 255, who="conv")
    np.testing.assert_array_equal(conv8((qx.astype(np.int16) - 128).astype(np.int8)), got)


@pytest.mark.parametrize("parallel", [False, True])
@given(n=st.integers(1, 3), c=st.integers(1, 6), h=st.integers(1, 8), w=st.integers(1, 8), kh=st.integers(1, 3),
       kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       pad_value=st.integers(0, 255), seed=st.integers(0, 2 ** 31))
def test_im2col_kernels_equal_their_numpy_twins(parallel, n, c, h, w, kh, kw, sh, sw, ph, pw, pad_value, seed):
    if h + 2 * ph < kh or w + 2 * pw < kw:
        with pytest.raises(ValueError, match="larger than the input"):
            im2col_nhwc_u8(np.zeros((n, h, w, c), np.uint8), (kh, kw), (sh, sw), (ph, pw), pad_value)
        return
    x = np.random.default_rng(seed).integers(0, 256, (n, c, h, w)).astype(np.uint8)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    cols, _, _ = im2col_nhwc_u8(nhwc, (kh, kw), (sh, sw), (ph, pw), pad_value, parallel=parallel)
    ref = im2col_nhwc_reference(nhwc, (kh, kw), (sh, sw), (ph, pw), pad_value)
    np.testing.assert_array_equal(cols[:, :ref.shape[1]], ref)
    assert cols.shape[1] % 4 == 0 and not cols[:, ref.shape[1]:].any()          # zero K padding
    cols_nchw, _, _ = kernels.im2col_u8(x, (kh, kw), (sh, sw), (ph, pw), pad_value, parallel=parallel)
    ref_nchw = kernels.im2col_reference(x, (kh, kw), (sh, sw), (ph, pw), pad_value)
    np.testing.assert_array_equal(cols_nchw[:, :ref_nchw.shape[1]], ref_nchw)
    # channels-last order is the NCHW order with K permuted (c, i, j) -> (i, j, c), written independently
    perm = ref_nchw.reshape(-1, c, kh, kw).transpose(0, 2, 3, 1).reshape(ref_nchw.shape[0], -1)
    np.testing.assert_array_equal(ref, perm)


# ---- float boundaries and dynamic quantization ----------------------------------------------------------------
@given(data=st.data())
def test_quantize_affine_and_dequantize_output_equal_quant_bit_for_bit(data):
    scale = np.float32(data.draw(st.floats(1e-4, 10.0), label="scale"))
    qmin, qmax = data.draw(st.sampled_from([(0, 255), (-128, 127), (0, 15), (-8, 7), (0, 127)]))
    zp = data.draw(st.integers(qmin, qmax), label="zp")
    ties = (np.arange(-20, 20) + np.float32(0.5)) * scale                          # exact .5 codes
    x = np.concatenate([ties.astype(np.float32), np.array(data.draw(st.lists(
        st.floats(-1e4, 1e4, width=32), min_size=1, max_size=200)), np.float32)])
    got = iops.quantize_input(x, scale, zp, qmin, qmax)
    expected = quantize(x, scale, zp, qmin, qmax)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(kernels.quantize_affine(x, scale, zp, qmin, qmax), expected)
    deq = iops.dequantize_output(expected, scale, zp)
    ref = dequantize(expected, scale, zp)
    assert deq.dtype == np.float32
    np.testing.assert_array_equal(deq.view(np.int32), ref.view(np.int32))


def test_quantize_input_keeps_the_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        iops.quantize_input(np.array([1.0, np.nan], np.float32), np.float32(0.1), 0, 0, 255)
    with pytest.raises(ValueError, match="inf"):
        iops.quantize_input(np.array([np.inf], np.float32), np.float32(0.1), 0, 0, 255)
    with pytest.raises(TypeError, match="dtype float32"):
        kernels.quantize_affine(np.zeros(3, np.float64), 0.1, 0, 0, 255)
    with pytest.raises(ValueError, match="does not fit"):
        kernels.quantize_affine(np.zeros(3, np.float32), 0.1, 0, 0, 1000)


@given(m=st.integers(1, 40), k=st.integers(1, 90), n=st.integers(1, 80), per_row=st.booleans(),
       with_bias=st.booleans(), k_multiple_of_4=st.booleans(), seed=st.integers(0, 2 ** 31))
def test_dynamic_fast_path_equals_the_numpy_reference_bit_for_bit(m, k, n, per_row, with_bias, k_multiple_of_4,
                                                                   seed):
    k = -(-k // 4) * 4 if k_multiple_of_4 else k      # K % 4 == 0 per tensor: the one-pass small-case path
    r = np.random.default_rng(seed)
    x = (r.standard_normal((m, k)) * r.uniform(0.01, 10, (m, 1))).astype(np.float32)
    qw = r.integers(-127, 128, (n, k)).astype(np.int8)
    scale = r.uniform(1e-3, 1e-1, n).astype(np.float32)
    bias = r.standard_normal(n).astype(np.float32) if with_bias else None
    layer = iops.DynamicIntLinear(qw, 0, scale, bias, per_row=per_row, who="fc")
    assert layer.kernel is not None
    got, ref = layer(x), layer.reference(x)
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    # and the reference is the formula s_x s_w sum (q_x - z_x) q_w + b, with the float32 qparams of PyTorch
    lo, hi = (x.min(1), x.max(1)) if per_row else (x.min(), x.max())
    lo, hi = np.minimum(lo, np.float32(0)), np.maximum(hi, np.float32(0))
    s = np.maximum((hi - lo) / np.float32(255), np.finfo(np.float32).eps).astype(np.float32)
    z = np.clip(-np.rint(lo / s), 0, 255)
    s_col, z_col = (s.reshape(-1, 1), z.reshape(-1, 1)) if per_row else (s, z)
    qx = np.clip(np.rint(x * (np.float32(1) / s_col)) + z_col, 0, 255)
    exact = (qx - z_col).astype(np.int64) @ qw.astype(np.int64).T
    formula = exact.astype(np.float32) * (s_col * scale[None, :]).astype(np.float32) + (0 if bias is None else bias)
    np.testing.assert_allclose(got, formula, rtol=1e-5, atol=1e-5)


def test_dynamic_layer_names_itself_on_non_finite_input():
    for k in (3, 4):                                  # the general and the small-case paths
        layer = iops.DynamicIntLinear(np.ones((2, k), np.int8), 0, np.ones(2, np.float32), None, who="encoder.fc1")
        for bad in (np.nan, np.inf):
            x = np.zeros((2, k), np.float32)
            x[1, 1] = bad
            with pytest.raises(ValueError, match="encoder.fc1: .*NaN or inf"):
                layer(x)


# ---- overflow, bad input ---------------------------------------------------------------------------------------
def test_overflow_is_refused_at_construction_naming_the_layer():
    k = 70_000                                    # 70000 * 255 * 127 > 2^31 for uint8 activations in [0, 255]
    w = np.full((1, k), 127, np.int8)
    m0, shift = iops.quantize_multiplier(1e-6)
    with pytest.raises(ValueError, match=r"layers\.3: the int32 accumulator could overflow: K=70000"):
        iops.IntLinear(w, 0, 0, 0, 255, None, m0, shift, 0, 0, 255, who="layers.3")
    # the same K with a narrow activation range (4-bit: |q_x - z_x| <= 15) fits and is accepted
    small = iops.IntLinear(w, 0, 0, 0, 15, None, m0, shift, 0, 0, 255, who="layers.3")
    assert small.prepared.k == k


def test_fast_path_bad_input_errors():
    packed = kernels.pack_weight(np.ones((4, 6), np.int8))
    layer = kernels.QLinear(packed, 3, 2 ** 30, 0, 0, rounding="half_even")
    with pytest.raises(ValueError, match="run_rows takes uint8 rows of width k_padded=8"):
        layer.run_rows(np.zeros((2, 6), np.uint8))
    with pytest.raises(ValueError, match="inner dimensions do not match"):
        layer(np.zeros((2, 5), np.uint8))
    with pytest.raises(TypeError, match="uint8 \\(or int8\\)"):
        layer(np.zeros((2, 6), np.int16))
    with pytest.raises(ValueError, match="rounding must be one of"):
        kernels.QLinear(packed, 3, 2 ** 30, 0, 0, rounding="nearest")
    with pytest.raises(ValueError, match="qmin=0, qmax=300"):
        kernels.QLinear(packed, 3, 2 ** 30, 0, 0, qmin=0, qmax=300)
    lin = iops.IntLinear(np.ones((4, 6), np.int8), 0, 3, 0, 255, None, 2 ** 30, 0, 0, 0, 255, who="fc2")
    with pytest.raises(TypeError, match="fc2: the integer path takes int8/uint8"):
        lin(np.zeros((2, 6), np.int16))


# ---- the quantized modules -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(pretrained_model, digits):
    out = {}
    for name in ("mlp", "cnn"):
        prepared = mc.quant.prepare(pretrained_model(name), mc.quant.per_channel_qconfig)
        prepared(mc.Tensor(digits[0][:256]))
        out[name] = mc.quant.convert(prepared)
    return out


def quantized_layers(model):
    return [m for m in model.modules() if isinstance(m, (Q.QuantizedLinear, Q.QuantizedConv2d))]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_each_quantized_layer_equals_the_numpy_reference_path(name, converted, digits):
    model = converted[name]
    seen = {}

    def record(mod, inp, out):                       # returns None: the output is left as it is
        seen.setdefault(id(mod), inp[0])

    handles = [layer.register_forward_hook(record) for layer in quantized_layers(model)]
    with mc.no_grad():
        model(mc.Tensor(digits[2][:37]))
    for handle in handles:
        handle.remove()
    assert len(seen) == len(handles) >= 2
    for layer in quantized_layers(model):
        qx = layer._input(seen[id(layer)])
        qmin, qmax = layer._out_range()
        w = layer.weight_int.reshape(layer.out_features, -1)
        if isinstance(layer, Q.QuantizedConv2d):     # the old NumPy path: im2col in (c, i, j) order + int64
            cols, (n, ho, wo) = iops.im2col(qx, *layer.kernel_size, layer.stride, layer.padding,
                                            layer.in_qp.zero_point)
        else:
            cols = qx.reshape(-1, layer.in_features)
        acc = (cols.astype(np.int64) - layer.in_qp.zero_point) @ w.astype(np.int64).T + layer.bias_int.astype(np.int64)
        ref = iops.requantize(acc.astype(np.int32), layer.multiplier_m0, layer.multiplier_shift,
                              layer.out_qp.zero_point, qmin, qmax)
        if isinstance(layer, Q.QuantizedConv2d):
            ref = ref.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
        got = layer._kernel()(qx) if isinstance(layer, Q.QuantizedConv2d) else layer._kernel()(cols)
        np.testing.assert_array_equal(got.reshape(ref.shape), ref)


def test_packed_cache_is_not_state_and_follows_the_buffers(converted, digits, tmp_path):
    model = converted["mlp"]
    x = mc.Tensor(digits[2][:50])
    with mc.no_grad():
        before = model(x).data
    for layer in quantized_layers(model):
        for value in vars(layer).values():           # nothing packed is an attribute (so nothing is saved)
            assert not isinstance(value, (iops.IntLinear, iops.PreparedWeight, kernels.PackedWeight))
    assert all(not k.startswith("_") for k in model.state_dict())
    mc.report.save(model, tmp_path / "q.npz")
    loaded = mc.report.load(tmp_path / "q.npz")
    with mc.no_grad():
        np.testing.assert_array_equal(loaded(x).data, before)
        np.testing.assert_array_equal(copy.deepcopy(model)(x).data, before)
    # load_state_dict replaces the buffers: the packed weight is rebuilt from the new ones
    changed = copy.deepcopy(model)
    state = changed.state_dict()
    first = [k for k in state if k.endswith("weight_int")][0]
    state[first] = -state[first]
    changed.load_state_dict(state)
    layer = changed.get_submodule(first.rsplit(".", 1)[0])
    with mc.no_grad():
        after = changed(x).data
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(layer._kernel().prepared.weight, state[first].reshape(layer.out_features, -1))
    np.testing.assert_array_equal(layer._kernel().prepared.packed.unpack(), state[first].reshape(layer.out_features, -1))


def test_quantized_maxpool_on_codes_equals_float_maxpool():
    r = np.random.default_rng(0)
    for k, s, p, shape in [(2, 2, 0, (3, 4, 8, 8)), (3, 2, 1, (2, 3, 7, 9)), ((2, 3), (1, 2), (1, 0), (2, 2, 6, 7))]:
        pool = mc.nn.MaxPool2d(k, s, p)
        q = r.integers(0, 256, shape).astype(np.uint8)
        got = Q.QuantizedMaxPool2d(pool)(QTensor(q, np.float32(0.1), 3, 0, 255))
        np.testing.assert_array_equal(got.q.astype(np.float32), pool(mc.Tensor(q.astype(np.float32))).data)
        assert got.q.dtype == np.uint8
