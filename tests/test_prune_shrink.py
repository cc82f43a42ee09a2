"""Physical shrinking (shrunk == masked), params/MACs, CSR SparseLinear, sensitivity scan."""
import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

import minicompress as mc
from minicompress import nn
from minicompress.prune import (Pruner, SparseLinear, count_macs, count_params, format_sensitivity,
                                pick_sparsities, plot_sensitivity, sensitivity_scan, shrink, sparsify_linears)
from tests.strategies import seeds


def cnn(c1=8, c2=8, seed=0):
    mc.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)),
                         nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
                         nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(c2 * 16, 10))


def mlp(seed=0, hidden=(12, 8)):
    mc.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, hidden[0]), nn.ReLU(), nn.Sequential(nn.Linear(hidden[0], hidden[1]),
                                                                            nn.GELU(), nn.Dropout(0.1)),
                         nn.Linear(hidden[1], 3))


def randomise_batchnorm(model, rng):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean = rng.standard_normal(m.num_features).astype(np.float32)
            m.running_var = rng.uniform(0.5, 2, m.num_features).astype(np.float32)
            m.bias.data[...] = rng.standard_normal(m.num_features)


def outputs(model, X):
    model.eval()
    with mc.no_grad():
        return model(mc.Tensor(X)).data


@settings(max_examples=10)
@given(st.floats(0.1, 0.9), st.floats(0.0, 0.9), seeds())
def test_shrunk_cnn_equals_masked_cnn(s1, s2, seed):
    rng = np.random.default_rng(seed)
    model = cnn(seed=seed % 1000)
    randomise_batchnorm(model, rng)
    model.double()
    Pruner(model, {"1": s1, "4": s2}, "channel").prune()
    X = rng.uniform(0, 1, (5, 64))
    before = model.state_dict()
    small = shrink(model)
    k1, k2 = 8 - round(s1 * 8), 8 - round(s2 * 8)
    assert small[1].weight.shape == (k1, 1, 3, 3) and small[2].running_mean.shape == (k1,)
    assert small[4].weight.shape == (k2, k1, 3, 3) and small[5].num_features == k2
    assert small[9].weight.shape == (10, k2 * 16) and small[9].in_features == k2 * 16
    np.testing.assert_allclose(outputs(small, X), outputs(model, X), rtol=1e-10, atol=1e-12)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # the input model is unchanged


def test_shrunk_cnn_params_and_macs_by_formula():
    model = cnn(16, 32)
    Pruner(model, 0.5, "channel", layers=["1", "4"]).prune()
    small = shrink(model)
    X = np.zeros((2, 64), np.float32)

    def formula(c1, c2):
        params = (9 * c1 + c1) + 2 * c1 + (9 * c1 * c2 + c2) + 2 * c2 + (16 * c2 * 10 + 10)
        macs = 64 * 9 * c1 + 64 * 9 * c1 * c2 + 16 * c2 * 10
        return params, macs

    assert (count_params(model), count_macs(model, X)) == formula(16, 32)
    assert (count_params(small), count_macs(small, X)) == formula(8, 16)
    zeros = 8 * 9 + 8 + 2 * 8 + 16 * 16 * 9 + 16 + 2 * 16  # pruned conv filters, biases, BatchNorm
    zeros += 8 + 16  # the kept BatchNorm biases are still at their initial 0
    assert count_params(model, nonzero=True) == formula(16, 32)[0] - zeros


@settings(max_examples=10)
@given(st.floats(0.0, 0.9), st.floats(0.0, 0.9), seeds())
def test_shrunk_mlp_equals_masked_through_nested_sequential(s0, s1, seed):
    model = mlp(seed % 1000).double()
    Pruner(model, {"0": s0, "2.0": s1}, "channel").prune()
    small = shrink(model)
    X = np.random.default_rng(seed).standard_normal((7, 6))
    np.testing.assert_allclose(outputs(small, X), outputs(model, X), rtol=1e-10, atol=1e-12)
    assert small[0].out_features == 12 - round(s0 * 12) == small[2][0].in_features
    assert small[2][0].out_features == 8 - round(s1 * 8) == small[3].in_features


def test_last_layer_outputs_are_kept_and_nothing_dead_is_a_copy():
    model = mlp()
    Pruner(model, 0.34, "channel", layers=["3"]).prune()
    small = shrink(model)
    assert small[3].weight.shape == (3, 8) and small is not model


def test_unsupported_consumer_names_both_layers_and_leaves_model_unchanged():
    mc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 2))
    Pruner(model, 0.5, "channel", layers=["0"]).prune()
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\) are consumed by '1' \(Sigmoid\)"):
        shrink(model)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    Pruner(model, 0.5, "channel", layers=["0"]).prune()
    with pytest.raises(ValueError, match=r"'1' \(LayerNorm\)"):
        shrink(model)


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(self.a(x))


def test_custom_forward_and_fully_pruned_layer_are_errors():
    with pytest.raises(ValueError, match=r"Custom.*own forward\(\).*Sequential"):
        shrink(Custom())
    model = mlp()
    model[0].weight.data[...] = 0
    model[0].bias.data[...] = 0
    with pytest.raises(ValueError, match=r"every output channel of layer '0'"):
        shrink(model)


def test_dead_channel_needs_zero_bias():
    model = mlp().double()
    model[0].weight.data[:4] = 0  # weights zero but bias not: the channel is relu(b), not 0
    assert shrink(model)[0].out_features == 12
    model[0].bias.data[:4] = 0
    assert shrink(model)[0].out_features == 8


# ---- CSR -------------------------------------------------------------------------------------------


@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 5), st.floats(0.0, 0.99), st.booleans(), seeds())
def test_sparse_linear_equals_dense(n_in, n_out, batch, sparsity, bias, seed):
    mc.manual_seed(seed % 10000)
    linear = nn.Linear(n_in, n_out, bias=bias)
    Pruner(nn.Sequential(linear), sparsity).prune()
    sparse = SparseLinear.from_dense(linear)
    assert sparse.nnz == np.count_nonzero(linear.weight.data)
    assert scipy.sparse.issparse(sparse.weight_csr) and sparse.weight_csr.format == "csr"
    x = np.random.default_rng(seed).standard_normal((batch, n_in)).astype(np.float32)
    expected = x.astype(np.float64) @ linear.weight.data.T.astype(np.float64)
    if bias:
        expected += linear.bias.data
    np.testing.assert_allclose(sparse(mc.Tensor(x)).data, expected, rtol=1e-5, atol=1e-5)
    back = sparse.to_dense()
    assert np.array_equal(back.weight.data, linear.weight.data)


def test_sparse_linear_bad_input_and_sparsify_model():
    mc.manual_seed(0)
    with pytest.raises(TypeError, match="expects a Linear"):
        SparseLinear.from_dense(nn.ReLU())
    sparse = SparseLinear.from_dense(nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"in_features=4"):
        sparse(mc.Tensor(np.ones((2, 5))))
    model = mlp()
    Pruner(model, 0.9, layers=["0"]).prune()
    swapped = sparsify_linears(model, min_sparsity=0.5)
    assert isinstance(swapped[0], SparseLinear) and isinstance(swapped[3], nn.Linear)
    X = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(outputs(swapped, X), outputs(model, X), rtol=1e-5, atol=1e-6)


# ---- sensitivity scan ------------------------------------------------------------------------------


def test_sensitivity_scan_table_pick_and_plot(tmp_path):
    model = mlp(3)
    X = np.random.default_rng(3).standard_normal((64, 6)).astype(np.float32)
    reference = outputs(model, X).argmax(axis=1)

    def agreement(m):
        return float((outputs(m, X).argmax(axis=1) == reference).mean())

    before = model.state_dict()
    rows = sensitivity_scan(model, agreement, sparsities=(0.0, 0.5, 0.9))
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert len(rows) == 3 * 3 and {r["layer"] for r in rows} == {"0", "2.0", "3"}
    for r in rows:
        check = mlp(3)
        layer = check.get_submodule(r["layer"])
        w = layer.weight.data
        order = np.argsort(np.abs(w).ravel(), kind="stable")[: round(r["sparsity"] * w.size)]
        w.ravel()[order] = 0
        assert r["accuracy"] == agreement(check) and r["drop"] == pytest.approx(1.0 - r["accuracy"])
    assert all(r["accuracy"] == 1.0 for r in rows if r["sparsity"] == 0.0)
    picked = pick_sparsities(rows, max_drop=0.05)
    for layer, s in picked.items():
        ok = [r["sparsity"] for r in rows if r["layer"] == layer and r["drop"] <= 0.05]
        assert s == max(ok)
    assert format_sensitivity(rows).splitlines()[0].split() == ["layer", "0%", "50%", "90%"]
    ax = plot_sensitivity(rows, path=tmp_path / "sens.png")
    assert (tmp_path / "sens.png").stat().st_size > 0 and len(ax.lines) == 3
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sensitivity_scan(model, agreement, sparsities=(0.5, 1.0))
