"""Packed 4-bit weights: the nibble layout against a byte-by-byte reference written here, the round trip, clear
errors, and a converted 4-bit model that is smaller than its 8-bit twin by exactly half of its weight bytes
while computing the same integers as its fake-quantized twin."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import minicompress as mc
from minicompress import quant
from minicompress.quant import quantized as Q
from minicompress.quant.int4 import pack_int4, unpack_int4


def reference_pack(codes):
    """One byte at a time with Python ints: low nibble = first code mod 16, high nibble = second code mod 16."""
    flat = [int(c) for c in codes.reshape(-1)] + [0]
    return np.array([(flat[i] % 16) + 16 * (flat[i + 1] % 16) for i in range(0, codes.size, 2)], np.uint8)


@given(arrays(np.int8, array_shapes(min_dims=1, max_dims=4, max_side=7), elements=st.integers(-8, 7)))
def test_pack_is_two_nibbles_per_byte_first_code_low_and_unpack_inverts_it(codes):
    packed = pack_int4(codes)
    assert packed.dtype == np.uint8 and packed.shape == ((codes.size + 1) // 2,)
    np.testing.assert_array_equal(packed, reference_pack(codes))
    back = unpack_int4(packed, codes.shape)
    assert back.dtype == np.int8
    np.testing.assert_array_equal(back, codes)


def test_pack_refuses_codes_that_do_not_fit_and_unpack_a_wrong_length():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([0, 8], np.int8))
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([-9], np.int8))
    with pytest.raises(TypeError, match="int8"):
        pack_int4(np.array([1, 2], np.int32))
    with pytest.raises(ValueError, match="expected uint8 of shape"):
        unpack_int4(np.zeros(3, np.uint8), (2, 4))


def convert(model, qconfig, x):
    prepared = quant.prepare(model, qconfig)
    with mc.no_grad():
        prepared(mc.Tensor(x))
    return prepared, quant.convert(prepared)


def test_a_4_bit_model_stores_half_a_byte_per_weight_and_runs_its_fake_quantized_arithmetic(pretrained_model,
                                                                                              digits):
    model, x = pretrained_model("mlp"), digits[0][:256]
    _, int8_model = convert(model, quant.per_channel_qconfig, x)
    prepared, int4_model = convert(model, quant.int4_qconfig, x)
    layers4 = [m for m in int4_model.modules() if isinstance(m, Q.QuantizedLinear)]
    assert layers4 and all("weight_int4" in m._buffers and "weight_int" not in m._buffers for m in layers4)
    weights = [m.weight for m in model.modules() if isinstance(m, mc.nn.Linear)]
    saved = sum(w.data.size - (w.data.size + 1) // 2 for w in weights)        # 1 byte -> half a byte each
    assert quant.model_size_bytes(int4_model) == quant.model_size_bytes(int8_model) - saved
    assert mc.report.model_size_bytes(int4_model) == mc.report.model_size_bytes(int8_model) - saved
    for layer in layers4:                                         # the unpacked codes are 4-bit int8 codes
        assert layer.weight_int.dtype == np.int8 and -8 <= layer.weight_int.min() <= layer.weight_int.max() <= 7
    with mc.no_grad():                                            # same outputs as the fake-quantized model
        got = int4_model(mc.Tensor(digits[2])).data
        twin = quant.simulate(prepared)(mc.Tensor(digits[2])).data
    step = layers4[-1].out_qp.scale                               # within one output step, mostly equal
    assert np.all(np.abs(got - twin) <= step * (1 + 1e-4))
    assert np.mean(np.abs(got - twin) < step * 1e-3) > 0.95
