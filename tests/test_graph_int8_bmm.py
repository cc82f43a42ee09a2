"""The deck's INT8 bmm patterns: dequantize -> bmm (-> div) (-> quantize) collapsed into one int_bmm node on codes.
Each rule must fire where it applies and give exactly (bit for bit) what the unfused path and mc.quant's
QuantizedMultiheadAttention compute; the fused values are also checked against an int64 NumPy recomputation."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicompress as mc
from minicompress import nn
from minicompress import quant as Q
from minicompress.graph import Node, optimize, trace
from minicompress.graph.int8 import BMM_RULES, INT8
from minicompress.graph.interpreter import make_step
from minicompress.quant.quantized import QuantParams
from minicompress.quant.quantized_attention import QuantizeCodes, QuantizedBmm, attention_qconfig

from .strategies import seeds

RULE = {"bmm": "# dequantize, bmm -> int_bmm (INT8 in, float out)",
        "div": "# dequantize, bmm, div -> int_bmm+div (INT8 in, float out: scaled attention scores)",
        "quant": "# dequantize, bmm, quantize -> int_bmm+requantize (INT8 in, INT8 out)",
        "div_quant": "# dequantize, bmm, div, quantize -> int_bmm+div+requantize (INT8 in, INT8 out)"}


def _qp(scale, zero_point, qmin=0, qmax=255):
    return QuantParams(scale, zero_point, qmin, qmax, "quint8", "per_tensor_affine", "test")


class BmmNet(nn.Module):
    """quantize a, quantize b, then one QuantizedBmm (the four shapes of the deck's pattern)."""

    def __init__(self, a_qp, b_qp, transpose_b, divisor, out_qp):
        super().__init__()
        self.quant_a, self.quant_b = QuantizeCodes(a_qp), QuantizeCodes(b_qp)
        self.bmm = QuantizedBmm(a_qp, b_qp, transpose_b=transpose_b, divisor=divisor, out_qp=out_qp, name="bmm")

    def forward(self, a, b):
        return self.bmm(self.quant_a(a), self.quant_b(b))


def _reference(a, b, a_qp, b_qp, transpose_b, divisor, out_qp):
    """Independent: codes by the quantization formula, the product in int64, the epilogue in float32. Quantizing
    multiplies by the float32 reciprocal of the scale, PyTorch's convention (x / scale rounds differently
    within an ulp of a tie: hypothesis found such an output)."""
    def rounded(x, scale):
        return np.rint(x * (np.float32(1) / np.float32(scale)))

    codes = [np.clip(rounded(x, qp.scale) + qp.zero_point, qp.qmin, qp.qmax).astype(np.int64) - qp.zero_point
             for x, qp in ((a, a_qp), (b, b_qp))]
    cb = np.swapaxes(codes[1], -1, -2) if transpose_b else codes[1]
    acc = np.einsum("...mk,...kn->...mn", codes[0], cb)
    y = acc.astype(np.float32) * np.float32(float(a_qp.scale) * float(b_qp.scale))
    if divisor is not None:
        y = y / np.float32(divisor)
    if out_qp is None:
        return y
    q = np.clip(rounded(y, out_qp.scale) + out_qp.zero_point, out_qp.qmin, out_qp.qmax)
    return ((q - out_qp.zero_point) * out_qp.scale).astype(np.float32)


@pytest.mark.parametrize("kind", ["bmm", "div", "quant", "div_quant"])
@given(seed=seeds(), shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 9),
                                     st.integers(1, 5)), transpose_b=st.booleans())
def test_each_bmm_rule_fires_and_is_exact(kind, seed, shape, transpose_b):
    rng = np.random.default_rng(seed)
    n, h, m, k, p = shape
    a_qp = _qp(rng.uniform(0.005, 0.05), int(rng.integers(0, 256)))
    b_qp = _qp(rng.uniform(0.005, 0.05), int(rng.integers(0, 256)))
    divisor = math.sqrt(k) if "div" in kind else None
    out_qp = _qp(rng.uniform(0.01, 0.2), int(rng.integers(0, 256))) if "quant" in kind else None
    model = BmmNet(a_qp, b_qp, transpose_b, divisor, out_qp)
    a = rng.normal(size=(n, h, m, k)).astype(np.float32)
    b = rng.normal(size=(n, h, p, k) if transpose_b else (n, h, k, p)).astype(np.float32)
    unfused = trace(model, (a, b))
    fused, report = optimize(unfused, passes=[INT8])
    assert report.rules_fired == {RULE[kind]: 1}
    labels = [node.label for node in fused.graph.nodes]
    expected_label = {"bmm": "int_bmm", "div": "int_bmm+div", "quant": "int_bmm+requantize",
                      "div_quant": "int_bmm+div+requantize"}[kind]
    assert expected_label in labels and "bmm" not in labels and "div_scalar" not in labels
    bmm_node = fused.graph.nodes[labels.index(expected_label)]
    assert all(np.issubdtype(fused.graph.node(i).dtype, np.integer) for i in bmm_node.inputs)   # codes in
    for batch in (n, n + 2):
        a2 = rng.normal(size=(batch,) + a.shape[1:]).astype(np.float32)
        b2 = rng.normal(size=(batch,) + b.shape[1:]).astype(np.float32)
        want = _reference(a2, b2, a_qp, b_qp, transpose_b, divisor, out_qp)
        got_fused, got_unfused = fused(a2, b2).data, unfused(a2, b2)
        np.testing.assert_array_equal(got_fused, got_unfused)                      # the rewrite changes nothing
        np.testing.assert_array_equal(got_fused, model(mc.Tensor(a2), mc.Tensor(b2)).dequantize().data
                                      if out_qp is not None else model(mc.Tensor(a2), mc.Tensor(b2)).data)
        np.testing.assert_array_equal(got_fused, want)                             # and is the integer formula


def test_unfused_bmm_is_a_float_matmul_off_the_grid():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 3, 4)).astype(np.float32), rng.normal(size=(2, 5, 4)).astype(np.float32)
    node = Node("b", "bmm", ["x", "y"], {"transpose_b": True, "grid_a": (np.float32(0.1), 3),
                                         "grid_b": (np.float32(0.1), 3)})
    np.testing.assert_allclose(make_step(node)(x, y), x @ y.transpose(0, 2, 1), rtol=1e-6)


def test_a_dequantized_operand_read_twice_is_not_fused():
    """The dequantized tensor is also an output: removing it would lose it, so the rule declines."""
    qp = _qp(0.02, 128)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = QuantizeCodes(qp)
            self.bmm = QuantizedBmm(qp, qp, transpose_b=True, name="bmm")

        def forward(self, a):
            qa = self.quant(a)
            return self.bmm(qa, qa), qa

    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    unfused = trace(Twice(), x)
    fused, report = optimize(unfused, passes=[BMM_RULES])
    assert report.rules_fired == {}
    np.testing.assert_array_equal(fused(x)[0].data, unfused(x)[0])


def test_int_bmm_node_rejects_float_operands_naming_the_node():
    node = Node("layers.0.scores", "int_bmm", ["a", "b"], {"transpose_b": False, "scale_a": np.float32(0.1),
                                                           "zero_point_a": 0, "scale_b": np.float32(0.1),
                                                           "zero_point_b": 0, "epilogue": ()})
    with pytest.raises(TypeError, match="layers.0.scores.*int8/uint8"):
        make_step(node)(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8))


def test_zoo_transformer_fused_exactly_equal_unfused(pretrained_model, digits):
    model = pretrained_model("tiny_transformer")
    X_train, _, X_test, _ = digits
    prepared = Q.prepare(model, attention_qconfig)
    prepared(mc.Tensor(X_train[:256]))
    qmodel = Q.convert(prepared)
    unfused = trace(qmodel, X_test[:8])
    fused, report = optimize(unfused)
    for x in (X_test[:8], X_test[8:11], X_test[11:51]):
        np.testing.assert_array_equal(fused(x).data, unfused(x))               # the INT8 bmm patterns: exact
        np.testing.assert_array_equal(unfused(x), qmodel(mc.Tensor(x)).data)  # the trace is the integer model
    fired = report.rules_fired
    assert fired[RULE["div"]] == 2 and fired[RULE["quant"]] == 2                # scores and context, 2 layers
    counts = fused.graph.op_counts()
    assert counts["int_bmm+div"] == 2 and counts["int_bmm+requantize"] == 2
    assert "bmm" not in counts and "div_scalar" not in counts
    assert unfused.op_counts()["bmm"] == 4 and report.nodes_after < report.nodes_before
    for node in fused.graph.nodes:                                          # every bmm reads int8 codes
        if node.op == "int_bmm":
            assert all(fused.graph.node(i).dtype in (np.uint8, np.int8) for i in node.inputs)
    print(f"\ntiny transformer (INT8 attention): nodes {report.nodes_before} -> {report.nodes_after}\n{report}")
