"""Pattern matching, rewrite rules and the deck's FP32 fusions of minicompress.graph.

Every fused graph is compared with the original model (the layers' own forward, an independent
implementation) and, for BatchNorm folding, with the formula written out here in NumPy.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicompress as mc
from minicompress import nn
from minicompress.graph import (P, Ref, RewriteError, Rule, apply_rules, fuse_conv_bn, fuse_linear_bn, match,
                                optimize, trace)
from minicompress.graph.ir import Node

TOL = dict(rtol=1e-5, atol=1e-5)


def _randomize_bn(model, seed=0):
    r = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean[...] = r.normal(size=c)
            m.running_var[...] = r.random(c) + 0.5
            m.weight.data[...] = r.normal(size=c)
            m.bias.data[...] = r.normal(size=c)
    return model.eval()


def _check(model, x, x_other):
    fast, report = optimize(model, x)
    for inp in (x, x_other):
        np.testing.assert_allclose(fast(inp).data, model(mc.Tensor(inp)).data, **TOL)
    return fast, report


def _img(n, c=3, h=6, w=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(np.float32)


# ---- the pattern language ------------------------------------------------------------------------------
def _chain_graph():
    return trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)).eval(), np.ones((2, 4), np.float32))


def test_pattern_matches_a_tree_with_bindings_and_respects_single_consumer():
    g = _chain_graph()
    relu = g.nodes[2]
    m = match(P("relu", P("linear", name="fc"), name="act"), relu, g)
    assert m is not None and m["fc"] is g.nodes[1] and m["act"] is relu and m.interior == [g.nodes[1]]
    assert match(P("relu", P("conv2d")), relu, g) is None
    # a linear read by two consumers cannot disappear into a fusion
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = self.fc(x)
            return h.relu() + h
    g2 = trace(Two().eval(), np.ones((2, 4), np.float32))
    relu2 = next(n for n in g2.nodes if n.op == "relu")
    assert match(P("relu", P("linear")), relu2, g2) is None
    assert match(P("add", P("relu"), P("linear", name="fc")), next(n for n in g2.nodes if n.op == "add"), g2)


def test_ref_and_commutative_patterns():
    class Swishy(nn.Module):
        def forward(self, x):
            return x.sigmoid() * x
    g = trace(Swishy(), np.ones((2, 3), np.float32))
    mul = g.nodes[-1]
    assert match(P("mul", P("*", name="a"), P("sigmoid", Ref("a"))), mul, g) is None  # wrong order
    m = match(P("mul", P("*", name="a"), P("sigmoid", Ref("a")), commutative=True), mul, g)
    assert m is not None and m["a"].op == "input"


def test_rules_run_to_a_fixed_point_and_count_firings():
    g = _chain_graph()
    drop_relu = Rule(P("relu"), lambda graph, m: m.root.inputs[0], "# relu -> nothing (test)")
    counts = apply_rules(g, [drop_relu])
    assert counts == {"# relu -> nothing (test)": 1}
    assert [n.op for n in g.nodes] == ["input", "linear", "linear"]
    assert apply_rules(g, [drop_relu]) == {"# relu -> nothing (test)": 0}


def test_a_rule_that_changes_the_output_shape_is_an_error_and_optimize_leaves_the_graph_alone():
    g = _chain_graph()
    before = [(n.name, n.op, n.shape) for n in g.nodes]

    def widen(graph, m):  # replaces relu (2, 4) by a linear producing (2, 5)
        return Node("w", "linear", m.root.inputs, params={"weight": np.ones((5, 4), np.float32)})

    bad = Rule(P("relu"), widen, "# relu -> wider linear (wrong)")
    with pytest.raises(RewriteError, match=r"relu -> wider linear.*shape \(2, 4\).*\(2, 5\)"):
        optimize(g, passes=[[bad]])
    assert [(n.name, n.op, n.shape) for n in g.nodes] == before
    with pytest.raises(ValueError, match="unknown pass 'nope'"):
        optimize(g, passes=["nope"])
    with pytest.raises(ValueError, match="example_input"):
        optimize(nn.Linear(2, 2))


# ---- BatchNorm folding -----------------------------------------------------------------------------
def test_fuse_conv_bn_follows_the_formula_and_leaves_inputs_unchanged():
    mc.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), _randomize_bn(nn.BatchNorm2d(4), seed=1)
    w_before = conv.weight.data.copy()
    fused = fuse_conv_bn(conv.eval(), bn)
    gamma, beta = bn.weight.data.astype(np.float64), bn.bias.data.astype(np.float64)
    s = gamma / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    np.testing.assert_allclose(fused.weight.data, conv.weight.data * s[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(fused.bias.data, (conv.bias.data - bn.running_mean) * s + beta, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(conv.weight.data, w_before)
    x = mc.Tensor(_img(2, 3))
    np.testing.assert_allclose(fused(x).data, bn(conv(x)).data, **TOL)


def test_fuse_linear_bn_and_errors():
    mc.manual_seed(0)
    lin, bn = nn.Linear(5, 3, bias=False).eval(), _randomize_bn(nn.BatchNorm1d(3), seed=2)
    fused = fuse_linear_bn(lin, bn)
    x = mc.Tensor(np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32))
    np.testing.assert_allclose(fused(x).data, bn(lin(x)).data, **TOL)
    with pytest.raises(ValueError, match="training mode"):
        fuse_conv_bn(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="num_features=5"):
        fuse_conv_bn(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(5).eval())
    with pytest.raises(TypeError, match="nn.Conv2d"):
        fuse_conv_bn(nn.Linear(2, 2), nn.BatchNorm2d(2).eval())


# ---- the deck's FP32 fusions -------------------------------------------------------------------------
class ConvThen(nn.Module):
    """conv followed by a tail given as a function of (conv output, block input)."""

    def __init__(self, tail, channels=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.tail = tail

    def forward(self, x):
        return self.tail(self.conv(x), x)


CONV_TAILS = {
    "conv2d+relu": lambda y, x: y.relu(),
    "conv2d+add": lambda y, x: y + x,
    "conv2d+add+relu": lambda y, x: (x + y).relu(),
    "conv2d+sigmoid": lambda y, x: y.sigmoid(),
    "conv2d+sigmoid+mul": lambda y, x: y.sigmoid() * x,
    "conv2d+silu": lambda y, x: y * y.sigmoid(),
    "conv2d+hardtanh": lambda y, x: mc.nn.functional.hardtanh(y, -0.5, 0.5),
    "conv2d+elu": lambda y, x: mc.nn.functional.elu(y, 0.7),
}


@pytest.mark.parametrize("label", sorted(CONV_TAILS))
def test_conv_epilogue_fusions(label):
    mc.manual_seed(0)
    model = ConvThen(CONV_TAILS[label]).eval()
    fast, report = _check(model, _img(2), _img(5, seed=1))
    assert [n.label for n in fast.graph.nodes if n.op != "input"] == [label]
    assert report.ops_after == 1 < report.ops_before


@pytest.mark.parametrize("act, label", [(nn.ReLU(), "linear+relu"), (nn.GELU(), "linear+gelu"),
                                        (nn.GELU("tanh"), "linear+gelu")])
def test_linear_epilogue_fusions(act, label):
    mc.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 7), act, nn.Linear(7, 3)).eval()
    fast, report = _check(model, np.ones((2, 6), np.float32) * 0.3, np.random.default_rng(0).normal(size=(9, 6)))
    assert [n.label for n in fast.graph.nodes] == ["input", label, "linear"]
    assert report.rules_fired == {f"# linear, {label.split('+')[1]} -> {label}": 1}


def test_conv_bn_relu_stack_folds_then_fuses():
    mc.manual_seed(0)
    model = _randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                        nn.Conv2d(4, 2, 1, stride=2), nn.BatchNorm2d(2), nn.Hardtanh()))
    fast, report = _check(model, _img(2), _img(3, seed=2))
    assert [n.label for n in fast.graph.nodes] == ["input", "conv2d+relu", "conv2d+hardtanh"]
    assert report.rules_fired == {"# conv2d, batch_norm -> conv2d": 2, "# conv2d, relu -> conv2d+relu": 1,
                                  "# conv2d, hardtanh -> conv2d+hardtanh": 1}
    assert (report.nodes_before, report.nodes_after) == (7, 3)


def test_linear_batchnorm1d_fold():
    mc.manual_seed(0)
    model = _randomize_bn(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU()))
    fast, report = _check(model, np.ones((3, 5), np.float32), np.random.default_rng(1).normal(size=(6, 5)))
    assert [n.label for n in fast.graph.nodes] == ["input", "linear+relu"]


class Attention(nn.Module):
    """Self-attention with three separate projections, a float mask and a view/transpose/view head split."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.heads, self.d = heads, d
        self.mask = mc.Tensor(np.triu(np.full((4, 4), -1e9, np.float32), 1))

    def split(self, t):
        n, length, _ = t.shape
        return t.reshape(n, length, self.heads, self.d // self.heads).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = (q @ k.transpose(-2, -1)) / float(np.sqrt(self.d // self.heads)) + self.mask
        out = mc.nn.functional.softmax(scores, axis=-1) @ v
        n, _, length, _ = out.shape
        return out.permute(0, 2, 1, 3).reshape(n, length, self.d)


def test_attention_fusions_qkv_div_add_softmax_and_restride():
    mc.manual_seed(0)
    model = Attention().eval()
    r = np.random.default_rng(0)
    fast, report = _check(model, r.normal(size=(2, 4, 8)).astype(np.float32), r.normal(size=(3, 4, 8)))
    fired = report.rules_fired
    assert fired["# linear, linear, linear (same input) -> one linear with concatenated weights (QKV)"] == 1
    assert fired["# div, add, softmax -> scaled_masked_softmax"] == 1
    # q, v and the output: view+transpose (1 merge each); k: view+transpose+transpose (2 merges)
    assert fired["# view, transpose, (contiguous), view -> one restride op"] == 5
    ops = [n.op for n in fast.graph.nodes]
    assert ops.count("restride") == 4 and "reshape" not in ops and "permute" not in ops
    assert ops.count("linear") == 1 and "softmax" not in ops and "div" not in ops
    assert report.ops_after < report.ops_before


def test_add_layernorm_and_cse_and_dead_code_and_constant_folding():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = nn.Linear(4, 4), nn.LayerNorm(4)
            self.scale = nn.Parameter(np.full(4, 3.0, np.float32))

        def forward(self, x):
            unused = x.exp()                               # dead code
            a, b = x.tanh(), x.tanh()                      # the same op twice
            w = self.scale * 2.0                           # constant folding
            return self.norm(self.fc(a) + b * w)

    mc.manual_seed(0)
    model = Block().eval()
    fast, report = _check(model, np.ones((2, 4), np.float32) * 0.1, np.random.default_rng(0).normal(size=(5, 4)))
    fired = report.rules_fired
    assert fired["# op whose result is never used -> nothing (dead code)"] == 1
    assert fired["# op repeated on the same inputs -> one op (common subexpression)"] == 1
    assert fired["# op(constants) -> constant (constant folding)"] == 1
    assert fired["# add, layer_norm -> add_layer_norm"] == 1
    assert [n.op for n in fast.graph.nodes].count("tanh") == 1


# ---- property: random models from a grammar of supported layers ---------------------------------------
class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return (self.conv(x) + x).relu()


class Swish(nn.Module):
    def forward(self, x):
        return x * x.sigmoid()


ACTS = [nn.ReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.ELU, nn.Hardtanh, Swish]


@st.composite
def conv_models(draw):
    """Random conv stacks on a 6 x 6 input; `size` tracks the feature map, so every kernel fits."""
    c, size, layers = 2, 6, []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "residual"]))
        if kind == "residual":
            layers.append(Residual(c))
            continue
        out, kernel, padding = draw(st.integers(1, 4)), draw(st.sampled_from([1, 3])), draw(st.sampled_from([0, 1]))
        if size + 2 * padding < kernel:
            padding = 1                                  # a 3 x 3 kernel on a 1 x 1 map needs the padding
        layers.append(nn.Conv2d(c, out, kernel, padding=padding))
        c, size = out, size + 2 * padding - kernel + 1
        if draw(st.booleans()):
            layers.append(nn.BatchNorm2d(c))
        layers.append(draw(st.sampled_from(ACTS))())
    if size >= 2 and draw(st.booleans()):
        layers.append(nn.MaxPool2d(2))
    layers.append(nn.Flatten())
    return layers


@st.composite
def mlp_models(draw):
    d, layers = 5, []
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 6))
        layers.append(nn.Linear(d, out))
        d = out
        if draw(st.booleans()):
            layers.append(nn.BatchNorm1d(d))
        layers.append(draw(st.sampled_from(ACTS))())
        if draw(st.booleans()):
            layers.append(nn.Dropout(0.5))
    return layers


@given(layers=st.one_of(conv_models(), mlp_models()), seed=st.integers(0, 2**16), batch=st.integers(1, 4))
def test_optimized_equals_original_on_random_models(layers, seed, batch):
    mc.manual_seed(seed)
    for layer in layers:  # fresh parameters for this seed
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    model = _randomize_bn(nn.Sequential(*layers), seed)
    r = np.random.default_rng(seed)
    shape = (2, 6, 6) if isinstance(layers[0], (nn.Conv2d, Residual)) else (5,)
    x, x_other = (r.normal(size=(n,) + shape).astype(np.float32) for n in (batch, batch + 2))
    fast, report = _check(model, x, x_other)
    assert report.nodes_after <= report.nodes_before
    fusible = any(isinstance(a, nn.BatchNorm1d) or isinstance(a, nn.BatchNorm2d) or isinstance(a, nn.Dropout)
                  for a in layers)
    if fusible:
        assert report.nodes_after < report.nodes_before
