"""Hutchinson's trace estimator and finite-difference Hessian-vector products against closed-form Hessians."""
import copy

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress.tune import hawq_sensitivity, hessian_vector_product, hutchinson_trace
from minicompress.tune.hessian import cross_entropy, weight_quant_error


def softmax_regression(seed, n=6, d=4, k=3):
    gen = np.random.default_rng(seed)
    mc.manual_seed(seed)
    model = mc.nn.Linear(d, k, bias=False).double()
    x = gen.normal(size=(n, d))
    y = gen.integers(0, k, size=n)
    return model, x, y


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ce_hessian_times(w, x, v):
    """H V for L = mean_n CE(W x_n): H V = 1/N sum_n (diag(p_n) - p_n p_n^T) V x_n x_n^T."""
    p = softmax(x @ w.T)
    out = np.zeros_like(v)
    for pn, xn in zip(p, x):
        a = np.diag(pn) - np.outer(pn, pn)
        out += a @ v @ np.outer(xn, xn)
    return out / len(x)


@given(seed=st.integers(0, 10_000))
def test_hessian_vector_product_matches_the_softmax_regression_hessian(seed):
    model, x, y = softmax_regression(seed)
    xt = mc.Tensor(x, dtype=np.float64)
    v = np.random.default_rng(seed + 1).normal(size=model.weight.shape)
    (hv,) = hessian_vector_product(lambda: cross_entropy(model(xt), y), [model.weight], [v])
    expected = ce_hessian_times(model.weight.data, x, v)
    np.testing.assert_allclose(hv, expected, rtol=1e-5, atol=1e-8)


def test_hessian_vector_product_is_exact_for_least_squares():
    gen = np.random.default_rng(0)
    model = mc.nn.Linear(5, 2, bias=False).double()
    x, t = gen.normal(size=(7, 5)), gen.normal(size=(7, 2))
    xt, tt = mc.Tensor(x, dtype=np.float64), mc.Tensor(t, dtype=np.float64)
    v = gen.normal(size=(2, 5))
    (hv,) = hessian_vector_product(lambda: ((model(xt) - tt) ** 2).mean(), [model.weight], [v])
    np.testing.assert_allclose(hv, 2.0 / (7 * 2) * v @ (x.T @ x), rtol=1e-7)  # H = 2/(Nk) I_k (x) X^T X


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    # L = sum c_i w_i^2: H = diag(2c), and v^T H v = sum 2 c_i for every Rademacher v
    w = mc.nn.Parameter(np.zeros(6))
    w.data = np.linspace(-1, 1, 6)
    c = np.array([0.5, 1.0, 2.0, 3.0, 0.1, 4.0])
    mc.manual_seed(1)
    (trace,) = hutchinson_trace(lambda: (mc.Tensor(c, dtype=np.float64) * w * w).sum(), [w], n_samples=3)
    assert trace == pytest.approx(2 * c.sum(), rel=1e-7)
    np.testing.assert_array_equal(w.data, np.linspace(-1, 1, 6))  # weights restored


def test_hutchinson_converges_to_the_closed_form_trace():
    model, x, y = softmax_regression(3)
    p = softmax(x @ model.weight.data.T)
    exact = np.mean([np.sum(pn * (1 - pn)) * xn @ xn for pn, xn in zip(p, x)])  # Tr of (diag p - pp^T) (x) xx^T
    xt = mc.Tensor(x, dtype=np.float64)
    mc.manual_seed(0)
    (trace,) = hutchinson_trace(lambda: cross_entropy(model(xt), y), [model.weight], n_samples=300)
    assert trace == pytest.approx(exact, rel=0.08)


def test_per_layer_traces_from_one_joint_vector():
    # two independent quadratic "layers": the cross terms vanish, each block's trace is recovered exactly
    a, b = mc.nn.Parameter(np.ones(3)), mc.nn.Parameter(np.ones(2))
    a.data, b.data = np.ones(3), np.ones(2)
    mc.manual_seed(0)
    traces = hutchinson_trace(lambda: (a * a).sum() * 1.5 + (b * b).sum() * 4.0, [a, b], n_samples=2)
    np.testing.assert_allclose(traces, [3 * 3.0, 2 * 8.0], rtol=1e-7)


def test_weight_quant_error_matches_a_loop():
    w = np.random.default_rng(0).normal(size=(3, 5))
    total = 0.0
    for row in w:
        scale = np.abs(row).max() / 7.5  # (qmax - qmin) / 2 with 4 bits: (7 - (-8)) / 2
        q = np.clip(np.rint(row / scale), -8, 7)
        total += np.sum((q * scale - row) ** 2)
    assert weight_quant_error(w, bits=4) == pytest.approx(total, rel=1e-12)
    assert weight_quant_error(w, bits=8) < weight_quant_error(w, bits=4)


def test_hawq_sensitivity_is_trace_per_weight_times_quant_error_and_leaves_the_model():
    model, x, y = softmax_regression(5, n=8)
    model = mc.nn.Sequential(model).float()
    before = copy.deepcopy(model.state_dict())
    p = softmax(x @ model[0].weight.data.astype(np.float64).T)
    exact_trace = np.mean([np.sum(pn * (1 - pn)) * xn @ xn for pn, xn in zip(p, x)])
    mc.manual_seed(0)
    sens = hawq_sensitivity(model, ["0"], [(x.astype(np.float32), y)], n_samples=300)
    w = model[0].weight.data
    assert sens["0"] == pytest.approx(exact_trace / w.size * weight_quant_error(w, 4), rel=0.08)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert model[0].weight.dtype == np.float32


def test_hawq_sensitivity_ranks_a_layer_with_a_sharper_loss_higher():
    mc.manual_seed(0)
    model = mc.nn.Sequential(mc.nn.Linear(4, 4), mc.nn.Linear(4, 3))
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    mc.manual_seed(1)
    base = hawq_sensitivity(model, ["0", "1"], [x], n_samples=20)
    model[1].weight.data = model[1].weight.data * 3  # the loss curves 9x faster along layer 1's weights...
    mc.manual_seed(1)
    sharp = hawq_sensitivity(model, ["0", "1"], [x], n_samples=20)
    assert sharp["1"] > base["1"]


def test_errors_are_named():
    with pytest.raises(ValueError, match="params is empty"):
        hutchinson_trace(lambda: None, [])
    with pytest.raises(ValueError, match="calib_data is empty"):
        hawq_sensitivity(mc.nn.Sequential(mc.nn.Linear(2, 2)), ["0"], [])
