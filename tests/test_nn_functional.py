"""nn.functional: every op's forward against a NumPy formula written here, its backward against central
differences (float64 gradcheck, hypothesis shapes) and, where a textbook derivation exists, against that too.
Conv and pooling have their own file (test_nn_conv_pool.py); losses are in test_nn_losses.py."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
import minicompress.nn.functional as F
from minicompress.core.gradcheck import gradcheck
from tests.strategies import arrays, away_from, seeds, shapes


def T(a):
    return mc.Tensor(np.array(a, dtype=np.float64), dtype=np.float64, requires_grad=True)


def ref_sigmoid(x):
    return 1 / (1 + np.exp(-x))


ERF = np.vectorize(math.erf)

# name -> (op, NumPy reference, kinks to keep finite differences away from)
ACTIVATIONS = {
    "relu": (F.relu, lambda x: np.where(x > 0, x, 0.0), [0.0]),
    "gelu": (F.gelu, lambda x: 0.5 * x * (1 + ERF(x / math.sqrt(2))), []),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), []),
    "silu": (F.silu, lambda x: x * ref_sigmoid(x), []),
    "sigmoid": (F.sigmoid, ref_sigmoid, []),
    "tanh": (F.tanh, np.tanh, []),
    "elu": (lambda t: F.elu(t, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1)), [0.0]),
    "hardtanh": (lambda t: F.hardtanh(t, -0.5, 1.5), lambda x: np.minimum(np.maximum(x, -0.5), 1.5), [-0.5, 1.5]),
    "relu6": (F.relu6, lambda x: np.minimum(np.maximum(x, 0), 6), [0.0, 6.0]),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.2), lambda x: np.where(x > 0, x, 0.2 * x), [0.0]),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(a=arrays(shapes(max_dims=3, max_side=4), low=-7.0, high=7.0))
def test_activation_matches_formula_and_finite_differences(name, a):
    op, ref, kinks = ACTIVATIONS[name]
    a = away_from(a, kinks, 1e-3)
    np.testing.assert_allclose(op(T(a)).data, ref(a), rtol=1e-12, atol=1e-12)
    assert gradcheck(op, [T(a)])
    out32 = op(mc.Tensor(a.astype(np.float32)))
    assert out32.dtype == np.float32, f"{name} changed float32 to {out32.dtype}"


def test_gelu_derivative_is_cdf_plus_x_pdf():
    x = T(np.linspace(-4, 4, 17))
    F.gelu(x).sum().backward()
    pdf = np.exp(-x.data ** 2 / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(x.grad, 0.5 * (1 + ERF(x.data / math.sqrt(2))) + x.data * pdf, rtol=1e-12)


def test_activations_do_not_overflow_on_large_inputs():
    x = mc.Tensor(np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=np.float32), requires_grad=True)
    for op in (F.sigmoid, F.silu, F.elu, F.gelu, lambda t: F.gelu(t, "tanh")):
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # overflow or NaN would raise
            y = op(x)
            y.sum().backward()
        assert np.isfinite(y.data).all() and np.isfinite(x.grad).all()
        x.grad = None


def test_gradients_at_kinks_follow_pytorch():
    """At a kink PyTorch picks one side: relu'(0) = 0, hardtanh' = 0 on both bounds, elu'(0) = alpha,
    leaky_relu'(0) = slope."""
    cases = [(F.relu, [0.0], [0.0]), (lambda t: F.hardtanh(t, -1.0, 1.0), [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]),
             (lambda t: F.elu(t, 0.5), [0.0], [0.5]), (lambda t: F.leaky_relu(t, 0.2), [0.0], [0.2]),
             (F.relu6, [0.0, 6.0, 3.0], [0.0, 0.0, 1.0])]
    for op, xs, grads in cases:
        x = T(xs)
        op(x).sum().backward()
        np.testing.assert_array_equal(x.grad, grads)


def test_activation_argument_errors():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(mc.Tensor([1.0]), approximate="fast")
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(mc.Tensor([1.0]), 1.0, -1.0)


# ---- softmax / log_softmax ------------------------------------------------------------------------------

def ref_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@given(arrays(shapes(min_dims=1, max_dims=3, max_side=4), low=-20, high=20), st.data())
def test_softmax_and_log_softmax_forward_and_gradients(a, data):
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1))
    np.testing.assert_allclose(F.softmax(T(a), axis).data, ref_softmax(a, axis), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(F.log_softmax(T(a), dim=axis).data, np.log(ref_softmax(a, axis)), rtol=1e-9,
                               atol=1e-12)
    assert gradcheck(lambda t: F.softmax(t, dim=axis), [T(a)])
    assert gradcheck(lambda t: F.log_softmax(t, axis), [T(a)])


@given(arrays((3, 5), low=-5, high=5), arrays((3, 5)))
def test_softmax_backward_is_the_jacobian_product(a, g):
    """dL/dx_i = sum_j g_j (s_j [i = j] - s_j s_i), written as the explicit Jacobian per row."""
    x = T(a)
    F.softmax(x, axis=1).backward(g)
    s = ref_softmax(a, 1)
    expected = np.stack([(np.diag(s[r]) - np.outer(s[r], s[r])) @ g[r] for r in range(3)])
    np.testing.assert_allclose(x.grad, expected, rtol=1e-10, atol=1e-12)


def test_softmax_axis_and_dim_spellings_agree_and_are_stable():
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    for axis in (0, 1, 2, -1):
        np.testing.assert_array_equal(F.softmax(a, axis).data, F.softmax(a, dim=axis).data)
    assert F.softmax(a).shape == (2, 3, 4)
    np.testing.assert_allclose(F.softmax(a).data.sum(axis=-1), 1, rtol=1e-6)
    big = mc.Tensor(np.array([[1000.0, 1000.0, -1000.0]], dtype=np.float32))
    np.testing.assert_allclose(F.softmax(big).data, [[0.5, 0.5, 0.0]])
    assert np.isfinite(F.log_softmax(big).data).all()
    with pytest.raises(ValueError, match="dim 3 is out of range"):
        F.softmax(a, dim=3)
    with pytest.raises(ValueError, match="give one of them"):
        F.softmax(a, 0, dim=1)
    np.testing.assert_array_equal(F.softmax(mc.Tensor(3.0)).data, 1.0)  # a scalar, as PyTorch


# ---- layer_norm -----------------------------------------------------------------------------------------

def ref_layer_norm(x, k, w, b, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def ref_norm_backward(x, g, w, axes, eps):
    """Ioffe & Szegedy's step-by-step chain rule (through var and mean), a different route to the same dL/dx."""
    n = np.prod([x.shape[a] for a in axes])
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    dxhat = g * w
    dvar = (dxhat * (x - mu) * -0.5 * (var + eps) ** -1.5).sum(axis=axes, keepdims=True)
    dmu = (-dxhat / np.sqrt(var + eps)).sum(axis=axes, keepdims=True) + dvar * (-2 * (x - mu)).mean(
        axis=axes, keepdims=True)
    return dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / n + dmu / n


@given(st.data())
def test_layer_norm_forward_and_backward(data):
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    k = data.draw(st.integers(1, len(shape)))
    norm_shape = shape[len(shape) - k:]
    x, w, b = (data.draw(arrays(s)) for s in (shape, norm_shape, norm_shape))
    eps = 1e-5
    np.testing.assert_allclose(F.layer_norm(T(x), norm_shape, T(w), T(b), eps).data, ref_layer_norm(x, k, w, b, eps),
                               rtol=1e-9, atol=1e-9)
    assert gradcheck(lambda t, tw, tb: F.layer_norm(t, norm_shape, tw, tb), [T(x), T(w), T(b)], atol=1e-4)
    assert gradcheck(lambda t: F.layer_norm(t, norm_shape), [T(x)], atol=1e-4)
    g = data.draw(arrays(shape))
    xt, wt, bt = T(x), T(w), T(b)
    F.layer_norm(xt, norm_shape, wt, bt, eps).backward(g)
    axes = tuple(range(len(shape) - k, len(shape)))
    np.testing.assert_allclose(xt.grad, ref_norm_backward(x, g, w, axes, eps), rtol=1e-6, atol=1e-8)
    lead = tuple(range(len(shape) - k))
    xhat = ref_layer_norm(x, k, 1.0, 0.0, eps)
    np.testing.assert_allclose(wt.grad, (g * xhat).sum(axis=lead), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bt.grad, g.sum(axis=lead), rtol=1e-9, atol=1e-9)


def test_layer_norm_errors_name_the_shapes():
    x = mc.Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"normalized_shape \(3,\).*\(2, 3, 4\)"):
        F.layer_norm(x, 3)
    with pytest.raises(ValueError, match="weight has shape"):
        F.layer_norm(x, 4, weight=mc.Tensor(np.ones(3)))


# ---- batch_norm -----------------------------------------------------------------------------------------

@given(st.sampled_from([(4, 3), (3, 2, 4), (2, 3, 2, 3)]), seeds(), st.floats(0.0, 1.0))
def test_batch_norm_training_forward_running_stats_and_backward(shape, seed, momentum):
    r = np.random.default_rng(seed)
    x, w, b = r.standard_normal(shape) * 3 + 1, r.standard_normal(shape[1]), r.standard_normal(shape[1])
    rm0, rv0 = r.standard_normal(shape[1]), r.random(shape[1]) + 0.5
    rm, rv = rm0.copy(), rv0.copy()
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    out = F.batch_norm(T(x), rm, rv, T(w), T(b), training=True, momentum=momentum)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    n = x.size // shape[1]
    expected = (x - mu.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * w.reshape(bshape) + b.reshape(bshape)
    np.testing.assert_allclose(out.data, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rm, (1 - momentum) * rm0 + momentum * mu, rtol=1e-12)
    np.testing.assert_allclose(rv, (1 - momentum) * rv0 + momentum * var * n / (n - 1), rtol=1e-12)  # unbiased
    assert gradcheck(lambda t, tw, tb: F.batch_norm(t, None, None, tw, tb, training=True), [T(x), T(w), T(b)],
                     atol=1e-4)
    g = r.standard_normal(shape)
    xt = T(x)
    F.batch_norm(xt, None, None, T(w), T(b), training=True).backward(g)
    np.testing.assert_allclose(xt.grad, ref_norm_backward(x, g, w.reshape(bshape), axes, 1e-5), rtol=1e-6,
                               atol=1e-8)


@given(st.sampled_from([(4, 3), (2, 3, 2, 3)]), seeds())
def test_batch_norm_eval_uses_running_stats_and_is_affine(shape, seed):
    r = np.random.default_rng(seed)
    x, w, b = r.standard_normal(shape), r.standard_normal(shape[1]), r.standard_normal(shape[1])
    rm, rv = r.standard_normal(shape[1]), r.random(shape[1]) + 0.5
    rm_before, rv_before = rm.copy(), rv.copy()
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    out = F.batch_norm(T(x), rm, rv, T(w), T(b), training=False, eps=1e-3)
    expected = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-3) * w.reshape(bshape) + b.reshape(bshape)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10)
    np.testing.assert_array_equal(rm, rm_before)  # eval never touches the running statistics
    np.testing.assert_array_equal(rv, rv_before)
    assert gradcheck(lambda t, tw, tb: F.batch_norm(t, rm, rv, tw, tb), [T(x), T(w), T(b)])


def test_batch_norm_errors():
    x = mc.Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"running_mean has shape \(2,\), expected \(3,\)"):
        F.batch_norm(x, np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(mc.Tensor(np.zeros((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match="needed when training=False"):
        F.batch_norm(x, None, None, training=False)


# ---- dropout --------------------------------------------------------------------------------------------

@given(st.floats(0.05, 0.95), seeds())
def test_dropout_zeroes_a_fraction_p_and_rescales_survivors(p, seed):
    mc.manual_seed(seed)
    x = mc.Tensor(np.full((200, 50), 2.0, dtype=np.float32), requires_grad=True)
    y = F.dropout(x, p, training=True)
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], 2.0 / (1 - p), rtol=1e-6)
    assert abs((~kept).mean() - p) < 5 * math.sqrt(p * (1 - p) / kept.size)  # 5 sigma binomial bound
    y.backward(np.ones(x.shape, dtype=np.float32))
    np.testing.assert_allclose(x.grad, kept / (1 - p), rtol=1e-6)  # same mask forward and backward
    mc.manual_seed(seed)
    np.testing.assert_array_equal(F.dropout(x, p).data, y.data)  # manual_seed repeats the mask


def test_dropout_identity_cases_and_errors():
    x = mc.Tensor(np.ones((3, 4)))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0)
    for bad in (-0.1, 1.5, "a"):
        with pytest.raises(ValueError, match="probability"):
            F.dropout(x, bad)


# ---- embedding ------------------------------------------------------------------------------------------

@given(st.integers(1, 6), st.integers(1, 4), shapes(min_dims=1, max_dims=2, max_side=5), seeds())
def test_embedding_lookup_and_scatter_add_gradient(num, dim, idx_shape, seed):
    r = np.random.default_rng(seed)
    w = r.standard_normal((num, dim))
    idx = r.integers(0, num, idx_shape)
    np.testing.assert_array_equal(F.embedding(idx, T(w)).data, w[idx])
    assert gradcheck(lambda t: F.embedding(idx, t), [T(w)])
    g = r.standard_normal(idx_shape + (dim,))
    wt = T(w)
    F.embedding(idx, wt).backward(g)
    expected = np.zeros_like(w)
    for pos in np.ndindex(idx_shape):  # repeated indices must accumulate
        expected[idx[pos]] += g[pos]
    np.testing.assert_allclose(wt.grad, expected, rtol=1e-12)


def test_embedding_padding_row_gets_no_gradient_and_errors():
    wt = T(np.ones((4, 2)))
    F.embedding(np.array([0, 1, 1, 3]), wt, padding_idx=1).sum().backward()
    np.testing.assert_array_equal(wt.grad, [[1, 1], [0, 0], [0, 0], [1, 1]])
    with pytest.raises(TypeError, match="integer"):
        F.embedding(np.array([0.0, 1.0]), wt)
    with pytest.raises(ValueError, match="index 4 is out of range"):
        F.embedding(np.array([0, 4]), wt)
    with pytest.raises(ValueError, match="index -1 is out of range"):
        F.embedding(np.array([-1]), wt)


def test_function_names_for_autocast_lists():
    import importlib
    activation, conv, loss, normalization, pooling, softmax = (
        importlib.import_module(f"minicompress.nn.functional.{m}")  # `F.softmax` is the function, not the file
        for m in ("activation", "conv", "loss", "normalization", "pooling", "softmax"))
    names = {softmax.SoftmaxFn: "softmax", softmax.LogSoftmaxFn: "log_softmax", normalization.LayerNormFn: "layer_norm",
             normalization.BatchNormFn: "batch_norm", conv.Conv2dFn: "conv2d", pooling.MaxPool2dFn: "max_pool2d",
             pooling.AvgPool2dFn: "avg_pool2d", loss.CrossEntropyFn: "cross_entropy", loss.MSELossFn: "mse_loss",
             loss.NLLLossFn: "nll_loss", loss.KLDivFn: "kl_div", activation.GELUFn: "gelu"}
    for fn, name in names.items():
        assert fn.name == name
    assert mc.core.elementwise.ReLU.name == "relu"
