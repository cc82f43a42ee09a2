"""Static and dynamic PTQ: integer arithmetic against exact references, the accuracy / size bars on the zoo,
integer model == fake-quantized model within one output step, inspection, and the bad-input errors."""
import copy
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress.quant import integer_ops as iops
from minicompress.quant import quantized as Q
from minicompress.quant.qtensor import QTensor

quant = mc.quant


# ---- integer arithmetic ------------------------------------------------------------------------------------
@given(st.integers(1, 7), st.integers(1, 300), st.integers(1, 6), st.booleans(), st.booleans(), st.data())
def test_int_matmul_is_the_exact_zero_point_corrected_product(m, k, n, unsigned, weight_zp, data):
    r = np.random.default_rng(data.draw(st.integers(0, 2 ** 31)))
    qx = r.integers(0, 256, (m, k)).astype(np.uint8) if unsigned else r.integers(-128, 128, (m, k)).astype(np.int8)
    zx = data.draw(st.one_of(st.integers(0, 255) if unsigned else st.integers(-128, 127),
                             st.just(r.integers(0, 256, m) if unsigned else r.integers(-128, 128, m))))
    qw = r.integers(-128, 128, (n, k)).astype(np.int8)
    zw = r.integers(-5, 6, n) if weight_zp else np.zeros(n, int)
    acc = iops.int_matmul(qx, zx, iops.prepare_weight(qw, zw))
    zx_col = np.asarray(zx).reshape(-1, 1) if np.ndim(zx) else zx
    exact = (qx.astype(np.int64) - zx_col) @ (qw.astype(np.int64) - zw[:, None]).T
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, exact)


@given(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), min_size=1, max_size=20),
       st.floats(1e-6, 8.0, allow_nan=False), st.integers(-128, 127))
def test_requantize_is_one_half_even_rounding_of_acc_times_m0_2_pow_minus_31_minus_shift(accs, multiplier, zp):
    m0, shift = iops.quantize_multiplier(multiplier)
    assert 2 ** 30 <= m0 < 2 ** 31                                   # M0 = m0 / 2^31 in [0.5, 1)
    acc = np.array(accs, dtype=np.int32).reshape(-1, 1)
    q = iops.requantize(acc, m0, shift, zp, -128, 127)
    for a, got in zip(accs, q.ravel()):
        exact = Fraction(a * m0, 2 ** (31 + shift)) if 31 + shift >= 0 else Fraction(a * m0 * 2 ** -(31 + shift))
        assert int(got) == min(max(round(exact) + zp, -128), 127)   # Python's round(Fraction) is half-even


def test_requantize_ties_go_to_even():
    m0, shift = iops.quantize_multiplier(0.5)
    q = iops.requantize(np.array([[1], [3], [5], [-1], [-3]], np.int32), m0, shift, 0, -128, 127)
    np.testing.assert_array_equal(q.ravel(), [0, 2, 2, 0, -2])


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(3, 6), st.integers(0, 1),
       st.integers(1, 2), st.data())
def test_int_conv2d_matches_a_direct_integer_convolution(n, c, o, size, pad, stride, data):
    r = np.random.default_rng(data.draw(st.integers(0, 2 ** 31)))
    qx = r.integers(0, 256, (n, c, size, size)).astype(np.uint8)
    qw = r.integers(-128, 128, (o, c, 3, 3)).astype(np.int8)
    zx = int(r.integers(0, 256))
    bias = r.integers(-1000, 1000, o).astype(np.int32)
    m0, shift = iops.quantize_multiplier(np.full(o, 0.001))
    got = iops.int_conv2d(qx, zx, iops.prepare_weight(qw.reshape(o, -1), 0), (3, 3), (stride, stride), (pad, pad),
                          bias, m0, shift, 10, 0, 255)
    xp = np.pad(qx.astype(np.int64) - zx, ((0, 0), (0, 0), (pad, pad), (pad, pad)))   # zero in real units
    ho = (size + 2 * pad - 3) // stride + 1
    acc = np.zeros((n, o, ho, ho), np.int64)
    for i in range(ho):
        for j in range(ho):
            patch = xp[:, :, i * stride:i * stride + 3, j * stride:j * stride + 3]
            acc[:, :, i, j] = np.einsum("nchw,ochw->no", patch, qw.astype(np.int64))
    acc += bias[None, :, None, None]
    expected = np.clip([[[[round(Fraction(int(v) * int(m0[oo]), 2 ** (31 + int(shift[oo])))) + 10
                           for v in row] for row in acc[b, oo]] for oo in range(o)] for b in range(n)], 0, 255)
    np.testing.assert_array_equal(got, expected)


def test_int_add_is_within_one_step_of_the_real_sum():
    r = np.random.default_rng(0)
    qa, qb = r.integers(0, 256, 500).astype(np.uint8), r.integers(0, 256, 500).astype(np.uint8)
    q = iops.int_add(qa, 0.03, 120, qb, 0.011, 7, 0.05, 100, 0, 255)
    real = ((qa - 120.0) * 0.03 + (qb - 7.0) * 0.011) / 0.05 + 100
    assert np.all(np.abs(q - np.clip(np.rint(real), 0, 255)) <= 1)
    clear = np.abs(real - np.floor(real) - 0.5) > 1e-3          # away from a rounding tie: exactly the rint
    np.testing.assert_array_equal(q[clear], np.clip(np.rint(real), 0, 255)[clear])


def test_accumulator_overflow_is_a_clear_error():
    k = 140_000                                   # 140000 * 128 * 128 > 2^31
    qx = np.full((1, k), -128, np.int8)
    with pytest.raises(ValueError, match="int32 accumulator could overflow: K=140000"):
        iops.int_matmul(qx, 0, iops.prepare_weight(np.full((1, k), -128, np.int8), 0), who="layer fc")


# ---- static PTQ on the zoo -------------------------------------------------------------------------------
def calibrate(prepared, X, batches=4, size=128):
    for i in range(batches):
        prepared(mc.Tensor(X[i * size:(i + 1) * size]))
    return prepared


def last_quantized(model):
    return [m for m in model.modules() if isinstance(m, (Q.QuantizedLinear, Q.QuantizedConv2d))][-1]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_static_int8_per_channel_meets_the_bars(name, pretrained_model, digits):
    X_train, _, X_test, y_test = digits
    model = pretrained_model(name)
    before = copy.deepcopy(model.state_dict())
    prepared = calibrate(quant.prepare(model, quant.per_channel_qconfig), X_train)
    qmodel = quant.convert(prepared)
    base = mc.train.evaluate(model, (X_test, y_test))
    acc = mc.train.evaluate(qmodel, (X_test, y_test))
    assert base - acc <= 0.005
    assert quant.model_size_bytes(qmodel) <= 0.3 * quant.model_size_bytes(model)
    for key, value in model.state_dict().items():              # the float model is untouched
        np.testing.assert_array_equal(value, before[key])
    # the integer model equals its fake-quantized twin within one output step, element by element
    sim = quant.simulate(prepared)
    yq, ys = qmodel(mc.Tensor(X_test)).data, sim(mc.Tensor(X_test)).data
    step = last_quantized(qmodel).out_qp.scale
    assert np.all(np.abs(yq - ys) <= step * (1 + 1e-4))
    exact = float(np.mean(np.abs(yq - ys) < step * 1e-3))
    print(f"{name}: fraction of outputs exactly equal to the fake-quantized model: {exact:.4f}")
    assert exact > 0.95


def test_integer_layers_hand_integers_to_each_other(pretrained_model, digits):
    prepared = calibrate(quant.prepare(pretrained_model("cnn"), quant.per_channel_qconfig), digits[0])
    qmodel = quant.convert(prepared)
    seen = {}
    for name, m in qmodel.named_modules():
        m.register_forward_hook(lambda mod, a, y, name=name: seen.__setitem__(name, (a[0], y)))
    qmodel(mc.Tensor(digits[2][:5]))
    kinds = {name: type(m).__name__ for name, m in qmodel.named_children()}
    assert kinds["1"] == "QuantizedConv2d" and kinds["2"] == "Identity" and kinds["7"] == "QuantizedMaxPool2d"
    assert isinstance(seen["1"][1], QTensor) and seen["1"][1].q.dtype == np.uint8
    assert isinstance(seen["4"][0], QTensor) and isinstance(seen["7"][1], QTensor)   # conv -> conv -> pool
    assert isinstance(seen["9"][0], QTensor) and isinstance(seen["9"][1], mc.Tensor)  # float only at the end
    # the integer conv's first layer shares its output qparams with the next layer's input: no requantization
    assert qmodel[1].out_qp.scale == qmodel[4].in_qp.scale


def test_print_and_compare_models(pretrained_model, digits):
    model = pretrained_model("mlp")
    qmodel = quant.convert(calibrate(quant.prepare(model, quant.per_channel_qconfig), digits[0]))
    text = repr(qmodel)
    for piece in ("QuantizedLinear", "qint8 per_channel_symmetric", "PerChannelMinMaxObserver", "scale in [",
                  "quint8 per_tensor_affine", "MinMaxObserver", "relu=True", "-> QTensor", "-> float"):
        assert piece in text, piece
    x = digits[2][:64]
    rows = quant.compare_models(model, qmodel, x)
    last = rows[-1]
    yf = model(mc.Tensor(x)).data.astype(np.float64)
    yq = qmodel(mc.Tensor(x)).data.astype(np.float64)
    assert last["layer"] == "(model output)"
    assert np.isclose(last["mse"], np.mean((yf - yq) ** 2))
    assert np.isclose(last["sqnr_db"], 10 * np.log10(np.sum(yf ** 2) / np.sum((yf - yq) ** 2)))
    assert np.isclose(last["cosine"], np.dot(yf.ravel(), yq.ravel()) / np.linalg.norm(yf) / np.linalg.norm(yq))
    assert last["sqnr_db"] > 20 and [r["layer"] for r in rows] == ["0+1", "2+3", "4", "(model output)"]
    assert quant.model_size_bytes(model) == sum(p.data.size for p in model.parameters()) * 4
    first = rows[0]                                   # Linear 0 + fused ReLU 1 vs the float ReLU 1 output
    relu_out = np.maximum(x @ model[0].weight.data.T + model[0].bias.data, 0).astype(np.float64)
    qmodel[0].output_quantized = False
    q_out = qmodel[0](mc.Tensor(x)).data.astype(np.float64)
    assert np.isclose(first["mse"], np.mean((relu_out - q_out) ** 2), rtol=1e-4)


def test_overrides_keep_layers_in_float(pretrained_model, digits):
    model = pretrained_model("mlp")
    prepared = calibrate(quant.prepare(model, quant.per_channel_qconfig, overrides={"2": None}), digits[0])
    qmodel = quant.convert(prepared)
    assert type(qmodel[2]).__name__ == "Linear" and type(qmodel[0]).__name__ == "QuantizedLinear"
    assert qmodel[0].output_quantized is False                  # its consumer is float: dequantize at the boundary
    assert mc.train.evaluate(qmodel, digits[2:]) >= mc.train.evaluate(model, digits[2:]) - 0.01


def test_residual_add_in_the_integer_domain(digits):
    class Residual(mc.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.head = mc.nn.Linear(64, 32), mc.nn.Linear(32, 32), mc.nn.Linear(32, 10)
            self.skip = quant.FloatFunctional()

        def forward(self, x):
            h = self.fc1(x).relu()
            return self.head(self.skip.add(h, self.fc2(h)))

    mc.manual_seed(0)
    model = Residual().eval()
    prepared = calibrate(quant.prepare(model, quant.per_channel_qconfig), digits[0])
    qmodel = quant.convert(prepared)
    assert isinstance(qmodel.skip, Q.QuantizedAdd)
    sim = quant.simulate(prepared)
    x = mc.Tensor(digits[2])
    step = qmodel.head.out_qp.scale
    yq, ys = qmodel(x).data, sim(x).data
    assert np.max(np.abs(yq - ys)) <= 2 * step        # one rounding more (the add) than a plain chain
    assert np.mean(np.abs(yq - ys) < 1e-3 * step) > 0.9


def test_bad_inputs_are_clear_errors(pretrained_model, digits):
    model = pretrained_model("mlp")
    prepared = quant.prepare(model, quant.per_channel_qconfig)
    with pytest.raises(ValueError, match="layer '0' has no calibration data"):
        quant.convert(prepared)
    with pytest.raises(ValueError, match="no prepared layers, so nothing would be quantized"):
        quant.convert(model)
    with pytest.raises(ValueError, match="nothing to quantize"):
        quant.prepare(model, quant.per_channel_qconfig, overrides={"": None})
    with pytest.raises(ValueError, match=r"overrides\['1'\] gives a QConfig to a ReLU"):
        quant.prepare(model, quant.per_channel_qconfig, overrides={"1": quant.per_channel_qconfig})
    with pytest.raises(ValueError, match="'fc9', which is not a module"):
        quant.prepare(model, quant.per_channel_qconfig, overrides={"fc9": None})
    with pytest.raises(TypeError, match="qconfig must be a QConfig"):
        quant.prepare(model, "int8")
    calibrate(prepared, digits[0], batches=1)
    saved = copy.deepcopy(prepared.state_dict())
    bad = digits[0][:8].copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prepared(mc.Tensor(bad))
    for key, value in prepared.state_dict().items():        # the failed batch recorded nothing
        np.testing.assert_array_equal(value, saved[key])
    wide = quant.QConfig(activation=quant.MinMaxObserver.with_args(dtype="quint16"),
                         weight=quant.per_channel_qconfig.weight)
    with pytest.raises(ValueError, match=r"layer '0' \(input\): the integer path takes activations of at most 8 bits"):
        quant.convert(calibrate(quant.prepare(model, wide), digits[0], batches=1))


def test_fold_bn_into_conv_matches_conv_then_bn():
    mc.manual_seed(1)
    conv, bn = mc.nn.Conv2d(3, 4, 3, padding=1), mc.nn.BatchNorm2d(4)
    bn.running_mean = mc.core.rng().standard_normal(4).astype(np.float32)
    bn.running_var = mc.core.rng().uniform(0.5, 2, 4).astype(np.float32)
    bn.weight.data = mc.core.rng().standard_normal(4).astype(np.float32)
    bn.bias.data = mc.core.rng().standard_normal(4).astype(np.float32)
    bn.eval()
    x = mc.Tensor(mc.core.rng().standard_normal((2, 3, 5, 5)))
    fused = quant.fold_bn_into_conv(conv, bn)
    np.testing.assert_allclose(fused(x).data, bn(conv(x)).data, rtol=1e-4, atol=1e-5)
    assert fused is not conv and fused.weight is not conv.weight


# ---- dynamic PTQ ------------------------------------------------------------------------------------------
def test_dynamic_linear_matches_a_numpy_reference():
    mc.manual_seed(2)
    lin = mc.nn.Linear(20, 7)
    x = mc.core.rng().standard_normal((5, 3, 20)).astype(np.float32)
    dq = quant.quantize_dynamic(mc.nn.Sequential(lin))[0]
    w = lin.weight.data
    sw = np.maximum(np.abs(w).max(1) / np.float32(127.5), np.finfo(np.float32).eps).astype(np.float32)
    qw = np.clip(np.rint(w * (np.float32(1) / sw[:, None])), -128, 127)
    lo, hi = min(x.min(), 0), max(x.max(), 0)
    sx = np.float32(np.float32(hi - lo) / np.float32(255))
    zx = int(np.clip(0 - np.rint(np.float32(lo) / sx), 0, 255))
    qx = np.clip(np.rint(x * (np.float32(1) / sx)) + zx, 0, 255)
    ref = ((qx - zx).astype(np.int64) @ qw.astype(np.int64).T) * (sx * sw) + lin.bias.data
    np.testing.assert_allclose(dq(mc.Tensor(x)).data, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dq.weight_int, qw)


def test_dynamic_per_row_helps_rows_of_different_scales():
    mc.manual_seed(3)
    model = mc.nn.Sequential(mc.nn.Linear(16, 8))
    x = mc.core.rng().standard_normal((6, 16)).astype(np.float32) * np.array([[1e-3], [1], [1], [1], [1], [50]],
                                                                                np.float32)
    y = model(mc.Tensor(x)).data
    per_batch = quant.quantize_dynamic(model)(mc.Tensor(x)).data
    per_row = quant.quantize_dynamic(model, per_row=True)(mc.Tensor(x)).data
    assert np.abs(per_row - y)[0].max() < np.abs(per_batch - y)[0].max()


@pytest.mark.parametrize("name", ["mlp", "tiny_transformer"])
def test_dynamic_int8_meets_the_bars(name, pretrained_model, digits):
    model = pretrained_model(name)
    qmodel = quant.quantize_dynamic(model)
    base, acc = mc.train.evaluate(model, digits[2:]), mc.train.evaluate(qmodel, digits[2:])
    assert base - acc <= 0.005
    kinds = [type(m).__name__ for m in qmodel.modules()]
    assert "Linear" not in kinds and "MultiheadAttention" not in kinds      # every projection is int8
    n_weights = sum(m.weight.data.size for m in model.modules() if type(m).__name__ == "Linear")
    n_weights += sum(m.in_proj_weight.data.size for m in model.modules() if type(m).__name__ == "MultiheadAttention")
    assert sum(m.weight_int.nbytes for m in qmodel.modules() if isinstance(m, Q.DynamicQuantizedLinear)) == n_weights
    ratio = quant.model_size_bytes(qmodel) / quant.model_size_bytes(model)
    # biases, LayerNorms and the positional embedding stay float32 (as in PyTorch): for the tiny transformer
    # they alone are 0.31x of the float bytes, so its bar is the weights being int8, with a ratio under 0.34
    assert ratio <= (0.3 if name == "mlp" else 0.34)


def test_dynamic_attention_matches_float_attention_closely():
    mc.manual_seed(4)
    mha = mc.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    q = mc.Tensor(mc.core.rng().standard_normal((2, 5, 16)))
    kv = mc.Tensor(mc.core.rng().standard_normal((2, 7, 16)))
    dq = quant.quantize_dynamic(mc.nn.Sequential(mha))[0]
    for args in ((q, q, q), (q, kv, kv)):                       # self-attention (packed GEMM) and cross-attention
        ref, ref_w = mha(*args)
        out, w = dq(*args)
        assert out.shape == ref.shape and w.shape == ref_w.shape
        assert np.abs(out.data - ref.data).max() < 0.05 * np.abs(ref.data).max()


def test_dynamic_errors():
    with pytest.raises(ValueError, match="no Linear layer"):
        quant.quantize_dynamic(mc.nn.Sequential(mc.nn.ReLU()))
    with pytest.raises(ValueError, match=r"overrides\['0'\] gives a QConfig to a ReLU"):
        quant.quantize_dynamic(mc.nn.Sequential(mc.nn.ReLU(), mc.nn.Linear(2, 2)),
                               overrides={"0": quant.default_dynamic_qconfig})


def test_per_tensor_dynamic_weights_store_one_scale_and_match_numpy():
    """Per-tensor weights keep ONE scale and zero point (not one per row), and the layer still computes
    round(x/s_x) . round(w/s_w) * s_x s_w + b as a NumPy formula written here says."""
    mc.manual_seed(3)
    lin = mc.nn.Linear(16, 8)
    dq = quant.quantize_dynamic(mc.nn.Sequential(lin), quant.per_tensor_dynamic_qconfig)[0]
    assert dq.weight_scale.shape == () and dq.weight_zero_point.shape == ()
    w = lin.weight.data.astype(np.float64)
    s_w = np.float32(np.abs(w).max() / 127.5)  # symmetric qint8: max|w| / ((qmax - qmin) / 2)
    assert np.isclose(dq.weight_scale, s_w, rtol=1e-6)
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    lo, hi = min(x.min(), 0.0), max(x.max(), 0.0)
    s_x = np.float32((hi - lo) / 255)
    z_x = int(np.clip(0 - np.rint(lo / s_x), 0, 255))
    q_x = np.clip(np.rint(x * np.float32(1 / s_x)) + z_x, 0, 255)
    q_w = np.clip(np.rint(w * np.float32(1 / dq.weight_scale)), -128, 127)
    ref = ((q_x - z_x) @ q_w.T) * np.float64(s_x) * np.float64(dq.weight_scale) + lin.bias.data
    np.testing.assert_allclose(dq(mc.Tensor(x)).data, ref, rtol=1e-5, atol=1e-5)
    per_channel = quant.quantize_dynamic(mc.nn.Sequential(lin))[0]
    assert quant.model_size_bytes(dq) < quant.model_size_bytes(per_channel)


def test_dynamic_quantization_fuses_a_following_relu_exactly():
    mc.manual_seed(5)
    model = mc.nn.Sequential(mc.nn.Linear(8, 16), mc.nn.ReLU(), mc.nn.Linear(16, 4), mc.nn.ReLU())
    dq = quant.quantize_dynamic(model)
    assert dq[0].relu and dq[2].relu and type(dq[1]).__name__ == "Identity" and type(dq[3]).__name__ == "Identity"
    assert isinstance(model[1], mc.nn.ReLU)                      # the float model is not changed
    x = np.random.default_rng(5).standard_normal((7, 8)).astype(np.float32)
    alone = quant.quantize_dynamic(mc.nn.Sequential(mc.nn.Linear(8, 16)))[0]
    alone.load_state_dict(dict(dq[0].state_dict()), strict=False)  # same integer weights, no fused ReLU
    expected = np.maximum(alone(mc.Tensor(x)).data, 0)
    fused = dq[0](mc.Tensor(x)).data
    np.testing.assert_array_equal(fused, expected)
    np.testing.assert_array_equal(dq[0]._kernel().reference(x), expected)   # the NumPy twin agrees
    assert (fused == 0).any() and (fused > 0).any()
    assert "relu=True" in repr(dq[0])
