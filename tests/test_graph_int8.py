"""INT8 graphs: integer models from mc.quant.convert traced into their unfused integer path, and the deck's
INT8 fusions, which must reproduce that path bit for bit while removing every float round-trip."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicompress as mc
from minicompress import nn
from minicompress import quant as Q
from minicompress.graph import Graph, Node, apply_rules, optimize, trace
from minicompress.graph.int8 import INT8

INTEGER_OPS = {"qlinear", "qconv2d", "int_relu", "int_max_pool2d", "lut", "requantize", "flatten", "unflatten",
               "reshape", "restride", "identity"}


def _convert(model, x):
    prepared = Q.prepare(model.eval(), Q.default_qconfig)
    prepared(mc.Tensor(x))
    return Q.convert(prepared)


def _digits(n, seed):
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)


def _assert_integer_between_boundaries(graph):
    """After the first quantize and before the last dequantize, every node works on integer codes."""
    nodes = graph.nodes
    first = next(k for k, n in enumerate(nodes) if n.op == "quantize")
    assert nodes[-1].op == "dequantize"
    for n in nodes[first:-1]:
        assert np.issubdtype(n.dtype, np.integer), f"{n.name} ({n.label}) is {n.dtype}"
        assert n.op in INTEGER_OPS | {"quantize"}, n.label
    assert [n.op for n in nodes].count("quantize") == 1 and [n.op for n in nodes].count("dequantize") == 1


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_zoo_integer_models_fused_exactly_equal_unfused(name):
    mc.manual_seed(0)
    qmodel = _convert(getattr(mc.models, name)(), _digits(128, 0))
    unfused = trace(qmodel, _digits(8, 1))
    fused, report = optimize(unfused)
    for n, seed in ((8, 1), (3, 2), (40, 3)):
        x = _digits(n, seed)
        np.testing.assert_array_equal(fused(x).data, unfused(x))       # the INT8 patterns change nothing
        np.testing.assert_array_equal(unfused(x), qmodel(mc.Tensor(x)).data)  # the trace is the model
    _assert_integer_between_boundaries(fused.graph)
    assert report.nodes_after < report.nodes_before
    fired = report.rules_fired
    assert fired["# dequantize, quantize (same qparams) -> nothing"] == 2
    if name == "cnn":
        assert fired["# dequantize, max_pool2d -> max_pool2d on codes, dequantize"] == 1
        labels = [n.label for n in fused.graph.nodes]
        assert labels.count("qconv2d+relu") == 2 and "int_max_pool2d" in labels


@pytest.mark.parametrize("act", [nn.GELU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.ELU, nn.Hardtanh])
def test_activation_between_integer_linears_becomes_a_lookup_table(act):
    mc.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)
    qmodel = _convert(nn.Sequential(nn.Linear(12, 16), act(), nn.Linear(16, 4)), x)
    unfused = trace(qmodel, x[:5])
    fused, report = optimize(unfused)
    assert [n.label for n in fused.graph.nodes] == ["input", "quantize", "qlinear+lut", "qlinear", "dequantize"]
    np.testing.assert_array_equal(fused(x).data, unfused(x))
    # the table against an independent float64 evaluation: q_out = rint(f((c - z_in) s_in) / s_out) + z_out
    lin = qmodel[0]
    s_in, z_in, s_out, z_out = (float(lin.out_qp.scale), lin.out_qp.zero_point, float(qmodel[2].in_qp.scale),
                                qmodel[2].in_qp.zero_point)
    step = fused.graph.nodes[2].attrs["epilogue"][0]
    assert step[0] == "lut"
    table = step[1].astype(np.int64)
    codes = np.arange(0, 256)
    real = act()(mc.Tensor(((codes - z_in) * s_in).astype(np.float64))).data
    expected = np.clip(np.rint(real / s_out) + z_out, 0, 255)
    assert np.abs(table - expected).max() <= 1 and np.mean(table != expected) < 0.02


def test_requantize_between_different_qparams_is_exact():
    nodes = [Node("x", "input", shape=(4, 3)),
             Node("q", "quantize", ["x"], {"scale": np.float32(0.02), "zero_point": 3, "qmin": 0, "qmax": 255}),
             Node("dq", "dequantize", ["q"], {"scale": np.float32(0.02), "zero_point": 3}),
             Node("q2", "quantize", ["dq"], {"scale": np.float32(0.05), "zero_point": 128, "qmin": 0, "qmax": 255}),
             Node("out", "dequantize", ["q2"], {"scale": np.float32(0.05), "zero_point": 128})]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    g = Graph(nodes, ["x"], ["out"], (x,))
    from minicompress.graph.interpreter import run_all
    env = run_all(g, x)
    for n in g.nodes:
        n.shape, n.dtype = env[n.name].shape, env[n.name].dtype
    before = g(x)
    counts = apply_rules(g, INT8)
    assert counts["# dequantize, quantize -> requantize"] == 1
    assert [n.op for n in g.nodes] == ["input", "quantize", "requantize", "dequantize"]
    y = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32) * 3
    np.testing.assert_array_equal(g(x), before)
    q = np.clip(np.rint(y / np.float32(0.02)) + 3, 0, 255)
    q2 = np.clip(np.rint((q - 3) * 0.02 / 0.05) + 128, 0, 255)
    assert np.abs(g(y) - (q2 - 128) * np.float32(0.05)).max() <= 0.05 + 1e-6  # at most one code from float64


@st.composite
def integer_models(draw):
    conv = draw(st.booleans())
    layers, c = ([nn.Unflatten(1, (1, 8, 8))], 1) if conv else ([], 64)
    for _ in range(draw(st.integers(1, 2))):
        out = draw(st.integers(2, 6))
        layers.append(nn.Conv2d(c, out, 3, padding=1) if conv else nn.Linear(c, out))
        c = out
        layers.append(draw(st.sampled_from([nn.ReLU, nn.GELU, nn.Sigmoid, nn.Hardtanh]))())
    if conv:
        if draw(st.booleans()):
            layers.append(nn.MaxPool2d(2))
        layers.append(nn.Flatten())
        c = c * (16 if isinstance(layers[-2], nn.MaxPool2d) else 64)
    layers.append(nn.Linear(c, 3))
    return layers


@settings(max_examples=6)
@given(layers=integer_models(), seed=st.integers(0, 2**16))
def test_random_integer_models_fused_equal_unfused(layers, seed):
    mc.manual_seed(seed)
    for layer in layers:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    qmodel = _convert(nn.Sequential(*layers), _digits(32, seed))
    unfused = trace(qmodel, _digits(4, seed + 1))
    fused, report = optimize(unfused)
    x = _digits(7, seed + 2)
    np.testing.assert_array_equal(fused(x).data, unfused(x))
    assert report.nodes_after < report.nodes_before


@pytest.mark.parametrize("qconfig", ["per_channel_qconfig", "symmetric_qconfig"])
def test_other_qconfigs_keep_exactness_and_code_dtypes(qconfig):
    """Symmetric activations are int8: the fused relu clamp must keep int8 codes (not uint8)."""
    mc.manual_seed(0)
    model = mc.models.cnn().eval()
    prepared = Q.prepare(model, getattr(Q, qconfig))
    prepared(mc.Tensor(_digits(64, 0)))
    qmodel = Q.convert(prepared)
    unfused = trace(qmodel, _digits(4, 1))
    fused, _ = optimize(unfused)
    x = _digits(9, 2)
    np.testing.assert_array_equal(fused(x).data, unfused(x))
    np.testing.assert_array_equal(unfused(x), qmodel(mc.Tensor(x)).data)
    _assert_integer_between_boundaries(fused.graph)


def test_integer_transformer_mixed_float_and_integer_graph():
    mc.manual_seed(0)
    qmodel = _convert(mc.models.tiny_transformer(), _digits(32, 0))
    unfused = trace(qmodel, _digits(4, 1))
    fused, report = optimize(unfused)
    x = _digits(6, 2)
    np.testing.assert_array_equal(fused(x).data, unfused(x))
    np.testing.assert_array_equal(unfused(x), qmodel(mc.Tensor(x)).data)
    labels = [n.label for n in fused.graph.nodes]
    assert labels.count("qlinear+lut") == 2  # linear1 -> GELU -> linear2 of both encoder layers


class ResidualNet(nn.Module):
    """conv -> (conv + skip) via FloatFunctional.add -> relu -> linear: the deck's "conv -> sum -> relu"."""

    def __init__(self):
        super().__init__()
        self.unflat = nn.Unflatten(1, (1, 8, 8))
        self.conv0, self.conv = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.skip, self.relu = Q.FloatFunctional(), nn.ReLU()
        self.flat, self.fc = nn.Flatten(), nn.Linear(256, 10)

    def forward(self, x):
        h = self.conv0(self.unflat(x))
        return self.fc(self.flat(self.relu(self.skip.add(self.conv(h), h))))


def test_integer_residual_add_fuses_into_the_conv():
    mc.manual_seed(0)
    qmodel = _convert(ResidualNet(), _digits(64, 0))
    unfused = trace(qmodel, _digits(8, 1))
    assert "add" not in qmodel.skip.__dict__  # the tracer's wrapper of QuantizedAdd.add is removed again
    assert [n.op for n in unfused.nodes].count("qadd") == 1
    fused, report = optimize(unfused)
    labels = [n.label for n in fused.graph.nodes]
    assert "qconv2d+add+relu" in labels and "qadd" not in labels
    for n, seed in ((8, 1), (5, 2)):
        x = _digits(n, seed)
        np.testing.assert_array_equal(fused(x).data, unfused(x))
        np.testing.assert_array_equal(unfused(x), qmodel(mc.Tensor(x)).data)
    _assert_integer_between_boundaries(fused.graph)


def test_dynamic_quantized_models_trace_into_dynamic_linear_nodes():
    # quantize_dynamic's Linear (ReLU fused in) is one "dynamic_linear" node: the MLP's graph computes the very
    # same floats as the module on any batch size, and counts the same bytes (the nodes hold the module's arrays)
    mc.manual_seed(0)
    mlp = Q.quantize_dynamic(mc.models.mlp().eval())
    graph, report = optimize(mlp, _digits(8, 1))
    assert [n.label for n in graph.graph.nodes if n.op != "input"] == ["dynamic_linear+relu", "dynamic_linear+relu",
                                                                     "dynamic_linear"]
    for n, seed in ((8, 2), (1, 3), (33, 4)):
        x = _digits(n, seed)
        np.testing.assert_array_equal(graph(x).data, mlp(mc.Tensor(x)).data)
    assert mc.report.model_size_bytes(graph) == mc.report.model_size_bytes(mlp)
    # the transformer's attention projections are dynamic_linear nodes among float ops; its float fusions
    # (softmax scaling, add + LayerNorm) round differently, so close rather than equal
    transformer = Q.quantize_dynamic(mc.models.tiny_transformer().eval(), Q.per_tensor_dynamic_qconfig)
    graph, _ = optimize(transformer, _digits(8, 5))
    assert sum(n.op == "dynamic_linear" for n in graph.graph.nodes) == sum(
        isinstance(m, Q.quantized.DynamicQuantizedLinear) for m in transformer.modules())
    x = _digits(16, 6)
    expected = transformer(mc.Tensor(x)).data
    np.testing.assert_allclose(graph(x).data, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
