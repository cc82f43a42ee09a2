"""Statically quantized MultiheadAttention: int_bmm exact against int64 NumPy, the integer attention against an
independent recomputation from its own codes and against its fake-quantized twin (simulate), the zoo transformer's
accuracy, the prepare / convert hook (opt-in only) and the errors."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicompress as mc
from minicompress import nn
from minicompress import quant as Q
from minicompress.quant import integer_ops
from minicompress.quant.quantized_attention import (AttentionQConfig, ObservedMultiheadAttention,
                                                     QuantizedMultiheadAttention, attention_qconfig)

from .strategies import seeds


class SelfAttention(nn.Module):
    def __init__(self, embed_dim=16, num_heads=4, batch_first=True):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=batch_first)

    def forward(self, x, mask=None):
        return self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]


class CrossAttention(SelfAttention):
    def forward(self, x, memory):
        return self.attn(x, memory, memory, need_weights=False)[0]


def _codes(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


# ---- int_bmm --------------------------------------------------------------------------------------------------------
@given(seed=seeds(), batch=st.lists(st.integers(1, 3), min_size=0, max_size=2), m=st.integers(1, 6),
       k=st.integers(1, 40), n=st.integers(1, 6), dtypes=st.sampled_from([(np.uint8, np.uint8), (np.uint8, np.int8),
                                                                          (np.int8, np.int8), (np.int8, np.uint8)]))
def test_int_bmm_is_exact_against_int64_numpy(seed, batch, m, k, n, dtypes):
    rng = np.random.default_rng(seed)
    qa, qb = _codes(rng, tuple(batch) + (m, k), dtypes[0]), _codes(rng, tuple(batch) + (k, n), dtypes[1])
    za, zb = (int(rng.integers(np.iinfo(d).min, np.iinfo(d).max + 1)) for d in dtypes)
    expected = np.einsum("...mk,...kn->...mn", qa.astype(np.int64) - za, qb.astype(np.int64) - zb)
    acc = integer_ops.int_bmm(qa, za, qb, zb)
    assert acc.dtype == np.int32 and acc.shape == expected.shape
    np.testing.assert_array_equal(acc, expected)


def test_int_bmm_broadcasts_batch_axes_and_extreme_codes():
    qa = np.full((2, 3, 4, 64), 255, np.uint8)                     # the largest |q - z| everywhere: 255 * 128 * 64
    qb = np.full((1, 3, 64, 5), -128, np.int8)
    acc = integer_ops.int_bmm(qa, 0, qb, 0)
    assert acc.shape == (2, 3, 4, 5) and (acc == 255 * -128 * 64).all()


def test_int_bmm_bad_input_names_the_layer():
    a = np.zeros((2, 3), np.uint8)
    with pytest.raises(TypeError, match="layer.scores.*float32"):
        integer_ops.int_bmm(a.astype(np.float32), 0, a.T.copy(), 0, "layer.scores")
    with pytest.raises(ValueError, match="layer.scores.*do not chain"):
        integer_ops.int_bmm(a, 0, a, 0, "layer.scores")
    k = 2 ** 31 // (255 * 255) + 1                                # K (qa - za)(qb - zb) could overflow int32
    with pytest.raises(ValueError, match="layer.ctx.*overflow"):
        integer_ops.int_bmm(np.full((1, k), 255, np.uint8), 0, np.full((k, 1), 255, np.uint8), 0, "layer.ctx")


def test_int_bmm_epilogue_against_the_float_formula():
    rng = np.random.default_rng(3)
    acc = rng.integers(-40000, 40000, size=(2, 5, 7)).astype(np.int32)
    sa, sb, d, s_out, z_out = np.float32(0.031), np.float32(0.007), math.sqrt(8), np.float32(0.002), 100
    y = integer_ops.int_bmm_epilogue(acc, sa, sb, d)
    expected = (acc.astype(np.float32) * np.float32(float(sa) * float(sb))) / np.float32(d)
    np.testing.assert_allclose(y, acc * float(sa) * float(sb) / d, rtol=1e-6)
    np.testing.assert_array_equal(y, expected)
    q = integer_ops.int_bmm_epilogue(acc, sa, sb, d, (s_out, z_out, 0, 255))
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(q, np.clip(np.rint(expected / s_out) + z_out, 0, 255))


# ---- the quantized attention -----------------------------------------------------------------------------------------
def _calibrated(model, *batches, qconfig=attention_qconfig):
    prepared = Q.prepare(model.eval(), qconfig)
    for b in batches:
        prepared(*[mc.Tensor(x) for x in (b if isinstance(b, tuple) else (b,))])
    return prepared


def test_prepare_convert_only_with_the_attention_qconfig():
    mc.manual_seed(0)
    model = SelfAttention()
    x = mc.core.rng().standard_normal((4, 6, 16)).astype(np.float32)
    plain = Q.convert(_calibrated(model, x, qconfig=Q.per_channel_qconfig))
    assert type(plain.attn) is nn.MultiheadAttention                   # as before: only out_proj quantized
    assert type(plain.attn.out_proj).__name__ == "QuantizedLinear"
    prepared = _calibrated(model, x)
    assert isinstance(prepared.attn, ObservedMultiheadAttention)
    assert type(model.attn) is nn.MultiheadAttention                  # the input model is untouched
    qmodel = Q.convert(prepared)
    assert isinstance(qmodel.attn, QuantizedMultiheadAttention)
    assert isinstance(prepared.attn, ObservedMultiheadAttention)     # convert copies
    # the output is close to float: a few output steps at most
    y, yq = model(mc.Tensor(x)).data, qmodel(mc.Tensor(x)).data
    assert np.abs(y - yq).max() < 0.05 * np.abs(y).max()


def _recompute_from_codes(qattn, x):
    """The integer attention recomputed from scratch in int64 / float64 from its quantization parameters."""
    E, H = qattn.embed_dim, qattn.num_heads
    D = E // H
    n, length, _ = x.shape
    qkv = x @ qattn.in_proj_weight.data.T + qattn.in_proj_bias.data
    heads = qkv.reshape(n, length, 3, H, D).transpose(2, 0, 3, 1, 4)
    codes = []
    for t, quant in zip(heads, (qattn.quant_q, qattn.quant_k, qattn.quant_v)):
        qp = quant.qp
        codes.append((np.clip(np.rint(t / qp.scale) + qp.zero_point, qp.qmin, qp.qmax).astype(np.int64), qp))
    (cq, pq), (ck, pk), (cv, pv) = codes
    acc = np.einsum("nhld,nhsd->nhls", cq - pq.zero_point, ck - pk.zero_point)
    scores = acc * float(pq.scale) * float(pk.scale) / math.sqrt(D)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ca = np.clip(np.rint(probs * 256), 0, 255).astype(np.int64)
    ctx = np.einsum("nhls,nhsd->nhld", ca, cv - pv.zero_point) * (float(pv.scale) / 256)
    out_qp = qattn.out_proj.in_qp
    cc = np.clip(np.rint(ctx / out_qp.scale) + out_qp.zero_point, out_qp.qmin, out_qp.qmax)
    return cc.transpose(0, 2, 1, 3).reshape(n, length, E), out_qp


def test_context_codes_match_an_independent_integer_recomputation():
    mc.manual_seed(1)
    model = SelfAttention()
    x = mc.core.rng().standard_normal((8, 7, 16)).astype(np.float32)
    qmodel = Q.convert(_calibrated(model, x))
    seen = {}
    qmodel.attn.context_bmm.register_forward_hook(lambda m, a, out: seen.update(ctx=out))
    qmodel(mc.Tensor(x))
    expected, qp = _recompute_from_codes(qmodel.attn, x.astype(np.float64))
    got = seen["ctx"]
    assert got.q.dtype == np.uint8 and (got.scale, got.zero_point) == (qp.scale, qp.zero_point)
    diff = np.abs(got.q.astype(np.int64) - expected)
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.99        # float32 vs float64 rounding: rare one-code ties


@pytest.mark.parametrize("batch_first, masked", [(True, False), (False, True)])
def test_integer_attention_agrees_with_its_fake_quantized_twin_within_one_step(batch_first, masked):
    mc.manual_seed(2)
    model = SelfAttention(batch_first=batch_first)
    rng = mc.core.rng()
    x = rng.standard_normal((6, 5, 16)).astype(np.float32)         # (L, N, E) when not batch_first
    mask = np.triu(np.ones((6, 6), bool), 1) if masked and not batch_first else None
    prepared = Q.prepare(model.eval(), attention_qconfig)
    prepared(mc.Tensor(x), mask)
    qmodel, twin = Q.convert(prepared), Q.simulate(prepared)
    x_test = (rng.standard_normal(x.shape) * 1.2).astype(np.float32)
    got, ref = qmodel(mc.Tensor(x_test), mask).data, twin(mc.Tensor(x_test), mask).data
    step = float(qmodel.attn.out_proj.out_qp.scale)
    assert np.abs(got - ref).max() <= step * 1.001
    exact = np.mean(np.abs(got - ref) < step / 2)
    print(f"integer attention vs fake-quantized twin: {exact:.4f} of outputs equal, max diff "
          f"{np.abs(got - ref).max() / step:.2f} steps")
    assert exact > 0.95


def test_cross_attention_runs_on_codes():
    mc.manual_seed(3)
    model = CrossAttention()
    rng = mc.core.rng()
    x, mem = rng.standard_normal((3, 4, 16)).astype(np.float32), rng.standard_normal((3, 9, 16)).astype(np.float32)
    prepared = _calibrated(model, (x, mem))
    qmodel, twin = Q.convert(prepared), Q.simulate(prepared)
    got, ref = qmodel(mc.Tensor(x), mc.Tensor(mem)).data, twin(mc.Tensor(x), mc.Tensor(mem)).data
    assert got.shape == (3, 4, 16)
    assert np.abs(got - ref).max() <= float(qmodel.attn.out_proj.out_qp.scale) * 1.001


def test_zoo_transformer_stays_within_one_point_of_float(pretrained_model, digits):
    model = pretrained_model("tiny_transformer")
    X_train, _, X_test, y_test = digits
    prepared = Q.prepare(model, attention_qconfig)
    prepared(mc.Tensor(X_train[:512]))
    qmodel = Q.convert(prepared)
    kinds = [type(m).__name__ for m in qmodel.modules()]
    assert kinds.count("QuantizedMultiheadAttention") == 2 and "MultiheadAttention" not in kinds
    base, acc = mc.train.evaluate(model, (X_test, y_test)), mc.train.evaluate(qmodel, (X_test, y_test))
    twin = mc.train.evaluate(Q.simulate(prepared), (X_test, y_test))
    print(f"tiny transformer: float {base:.4f}, static INT8 attention {acc:.4f}, fake-quantized twin {twin:.4f}")
    assert base - acc <= 0.01 and abs(acc - twin) <= 0.005


def test_overrides_quantize_one_attention_only(pretrained_model):
    model = pretrained_model("tiny_transformer")
    prepared = Q.prepare(model, Q.per_channel_qconfig, overrides={"encoder.layers.1.self_attn": attention_qconfig})
    prepared(mc.Tensor(mc.data.digits_split()[0][:64]))
    qmodel = Q.convert(prepared)
    assert type(qmodel.encoder.layers[0].self_attn) is nn.MultiheadAttention
    assert isinstance(qmodel.encoder.layers[1].self_attn, QuantizedMultiheadAttention)


def test_non_8bit_attention_qconfig_is_a_clear_error_naming_the_layer():
    model = SelfAttention()
    int4 = AttentionQConfig(Q.int4_qconfig.activation, Q.int4_qconfig.weight)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"layer 'attn'.*8-bit.*\[0, 15\]"):
        Q.prepare(model, int4)
    assert type(model.attn) is nn.MultiheadAttention                  # nothing lost
    assert all(np.array_equal(v, state[k]) for k, v in model.state_dict().items())


def test_convert_without_calibration_names_the_attention():
    prepared = Q.prepare(SelfAttention().eval(), attention_qconfig)
    with pytest.raises(ValueError, match="'attn'.*calibration"):
        Q.convert(prepared)
