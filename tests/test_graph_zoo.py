"""optimize() on the model zoo (MLP, CNN with BatchNorm, tiny transformer) and on PyTorch-style encoder layers:
the optimised model computes the original's outputs within 1e-5 with fewer nodes."""
import numpy as np
import pytest

import minicompress as mc
from minicompress import nn
from minicompress.graph import GraphModule, optimize

TOL = dict(rtol=1e-5, atol=1e-5)


def _digits(n, seed):
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)


def _with_bn_statistics(model, seed=0):
    """Untrained BatchNorms are the identity; give them statistics so that folding has work to do."""
    r = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = r.normal(size=m.num_features)
            m.running_var[...] = r.random(m.num_features) + 0.5
            m.weight.data[...] = r.normal(1.0, 0.3, size=m.num_features)
            m.bias.data[...] = r.normal(size=m.num_features)
    return model.eval()


@pytest.mark.parametrize("name, expected_ops", [("mlp", 3), ("cnn", 6), ("tiny_transformer", None)])
def test_zoo_models_optimized_equal_original(name, expected_ops):
    mc.manual_seed(0)
    model = _with_bn_statistics(getattr(mc.models, name)())
    fast, report = optimize(model, _digits(8, 0))
    assert isinstance(fast, GraphModule)
    for n, seed in ((8, 0), (1, 1), (33, 2)):
        x = _digits(n, seed)
        np.testing.assert_allclose(fast(x).data, model(mc.Tensor(x)).data, **TOL)
    assert report.nodes_after < report.nodes_before and report.ops_after < report.ops_before
    if expected_ops is not None:
        assert report.ops_after == expected_ops
    labels = [n.label for n in fast.graph.nodes]
    if name == "cnn":
        assert "batch_norm" not in labels and labels.count("conv2d+relu") == 2
    if name == "tiny_transformer":
        assert labels.count("linear+gelu") == 2 and "softmax" not in labels and "dropout" not in labels


def test_optimize_leaves_the_model_unchanged_and_accepts_a_graph():
    mc.manual_seed(0)
    model = _with_bn_statistics(mc.models.cnn())
    state = {k: v.copy() for k, v in model.state_dict().items()}
    graph = mc.graph.trace(model, _digits(4, 0))
    n_before = len(graph)
    fast, report = optimize(graph)
    assert len(graph) == n_before  # the traced graph is not rewritten in place
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    assert "fold_bn" in str(report) and f"nodes {n_before} -> {len(fast.graph)}" in str(report)
    with pytest.raises(ValueError, match="inference only"):
        fast.train()


@pytest.mark.parametrize("norm_first", [False, True])
def test_pytorch_style_encoder_layer_seq_first(norm_first):
    """batch_first=False: the three transposes of the input merge (CSE), then Q, K, V fuse into one linear."""
    mc.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1, batch_first=False,
                                       norm_first=norm_first).eval()
    r = np.random.default_rng(0)
    x = r.normal(size=(5, 2, 16)).astype(np.float32)   # (L, N, E)
    fast, report = optimize(layer, x)
    x2 = r.normal(size=(7, 2, 16)).astype(np.float32)  # the tracer generalises axis 0 (here L)
    for inp in (x, x2):
        np.testing.assert_allclose(fast(inp).data, layer(mc.Tensor(inp)).data, **TOL)
    fired = report.rules_fired
    assert fired["# linear, linear, linear (same input) -> one linear with concatenated weights (QKV)"] == 1
    assert fired["# op repeated on the same inputs -> one op (common subexpression)"] >= 2
    assert fired["# div, softmax -> scaled_masked_softmax (no mask)"] == 1
    assert fired["# linear, relu -> linear+relu"] == 1
    if not norm_first:
        assert fired["# add, layer_norm -> add_layer_norm"] == 2


@pytest.mark.parametrize("name", ["mlp", "cnn", "tiny_transformer"])
def test_bf16_graph_follows_autocast(name):
    """dtype="bf16": the unfused graph reproduces the model under mc.precision.autocast("bf16") (same op
    categories); the fused graph rounds once per fused op and stays within BF16's error of both."""
    mc.manual_seed(0)
    model = _with_bn_statistics(getattr(mc.models, name)())
    x = _digits(16, 3)
    with mc.no_grad():
        ref32 = model(mc.Tensor(x)).data
        with mc.precision.autocast("bf16"):
            ref16 = model(mc.Tensor(x)).data
    scale = np.abs(ref32).max()
    unfused, _ = optimize(model, _digits(4, 0), passes=[], dtype="bf16")
    fused, _ = optimize(model, _digits(4, 0), dtype="bf16")
    out_unfused, out_fused = unfused(x).data, fused(x).data
    # the same emulation: at most one BF16 step (2^-8 relative) apart, in a few elements where the interpreter's
    # FP32 kernels (another summation order) land on the other side of a BF16 rounding boundary
    diff = np.abs(out_unfused - ref16)
    assert diff.max() <= 2.0 ** -7 * scale and np.mean(diff > 0) < 0.01
    bf16_error = np.abs(ref16 - ref32).max()
    assert bf16_error > 1e-4 * scale                                # BF16 is really in effect ...
    assert np.abs(out_fused - ref32).max() <= 3 * bf16_error + 1e-6  # ... and fusion keeps its accuracy
    if name != "tiny_transformer":                                  # the last op is a Linear: a BF16 output
        np.testing.assert_array_equal(mc.precision.round_to_bf16(out_fused), out_fused)
    with pytest.raises(ValueError, match="dtype must be 'fp32' or 'bf16'"):
        optimize(model, _digits(4, 0), dtype="fp16")
