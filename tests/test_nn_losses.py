"""Losses against their definitions written here: cross_entropy (label smoothing, class weights,
ignore_index, probability targets, K-dimensional inputs), nll_loss, mse_loss, kl_div (all reductions,
log_target), their gradients (closed form and central differences) and their input checks."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
import minicompress.nn.functional as F
from minicompress.core.gradcheck import gradcheck
from tests.strategies import seeds


def T(a):
    return mc.Tensor(np.array(a, dtype=np.float64), dtype=np.float64, requires_grad=True)


def ref_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def ref_cross_entropy(z, y, eps=0.0, weight=None, ignore_index=-100, reduction="mean"):
    """PyTorch's definition: (1 - eps) * weighted NLL + eps / C * (-sum_c w_c log p_c), both divided by the sum of
    the target weights of the non-ignored samples for "mean"."""
    n, c = z.shape
    w = np.ones(c) if weight is None else weight
    logp = ref_log_softmax(z)
    keep = y != ignore_index
    y0 = np.where(keep, y, 0)
    nll = np.where(keep, -w[y0] * logp[np.arange(n), y0], 0.0)
    smooth = np.where(keep, -(logp * w).sum(axis=1), 0.0)
    per_sample = (1 - eps) * nll + eps / c * smooth
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.sum() / w[y0][keep].sum()


@st.composite
def classification(draw, max_n=6, max_c=5):
    n, c = draw(st.integers(1, max_n)), draw(st.integers(2, max_c))
    seed = draw(seeds())
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, c)) * 3
    y = r.integers(0, c, n)
    if draw(st.booleans()) and n > 1:
        y[r.integers(0, n)] = -100  # one ignored sample
    return z, y, r


@given(classification(), st.sampled_from([0.0, 0.1, 0.5]), st.booleans(), st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_matches_definition_and_gradchecks(data, eps, weighted, reduction):
    z, y, r = data
    w = r.random(z.shape[1]) + 0.5 if weighted else None
    kw = dict(weight=w, label_smoothing=eps, reduction=reduction)
    out = F.cross_entropy(T(z), y, **kw)
    np.testing.assert_allclose(out.data, ref_cross_entropy(z, y, eps, w, reduction=reduction), rtol=1e-10)
    assert gradcheck(lambda t: F.cross_entropy(t, y, **kw), [T(z)])
    logp = F.log_softmax(T(z), dim=1)
    np.testing.assert_allclose(F.nll_loss(logp, y, weight=w, reduction=reduction).data,
                               ref_cross_entropy(z, y, 0.0, w, reduction=reduction), rtol=1e-10)
    assert gradcheck(lambda t: F.nll_loss(t, y, weight=w, reduction=reduction), [T(logp.data)])


@given(classification(), st.floats(0.0, 0.9))
def test_cross_entropy_gradient_is_softmax_minus_smoothed_target(data, eps):
    z, y, _ = data
    y = np.where(y < 0, 0, y)
    n, c = z.shape
    q = np.full((n, c), eps / c)
    q[np.arange(n), y] += 1 - eps
    zt = T(z)
    F.cross_entropy(zt, y, label_smoothing=eps).backward()
    p = np.exp(ref_log_softmax(z))
    np.testing.assert_allclose(zt.grad, (p - q) / n, rtol=1e-9, atol=1e-12)


@given(classification(), st.floats(0.0, 0.5))
def test_cross_entropy_with_probability_targets(data, eps):
    z, _, r = data
    t = r.random(z.shape)
    t /= t.sum(axis=1, keepdims=True)
    c = z.shape[1]
    expected = -((t * (1 - eps) + eps / c) * ref_log_softmax(z)).sum(axis=1).mean()
    np.testing.assert_allclose(F.cross_entropy(T(z), t, label_smoothing=eps).data, expected, rtol=1e-10)
    assert gradcheck(lambda a: F.cross_entropy(a, t, label_smoothing=eps), [T(z)])


def test_cross_entropy_over_extra_dims_and_unbatched():
    r = np.random.default_rng(3)
    z = r.standard_normal((2, 4, 3, 2))  # (N, C, d1, d2): the class axis is 1
    y = r.integers(0, 4, (2, 3, 2))
    per_pixel = F.cross_entropy(T(z), y, reduction="none")
    flat_z = np.moveaxis(z, 1, -1).reshape(-1, 4)
    np.testing.assert_allclose(per_pixel.data, ref_cross_entropy(flat_z, y.reshape(-1), reduction="none").reshape(
        2, 3, 2), rtol=1e-10)
    assert gradcheck(lambda t: F.cross_entropy(t, y, label_smoothing=0.2), [T(z)])
    v = r.standard_normal(5)
    np.testing.assert_allclose(F.cross_entropy(T(v), np.array(2)).data, -ref_log_softmax(v[None])[0, 2], rtol=1e-10)


def test_cross_entropy_is_stable_and_keeps_float32():
    z = mc.Tensor(np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(z, np.array([1, 1]))
    np.testing.assert_allclose(loss.data, 1000.0, rtol=1e-6)  # (2000 + 0) / 2, no overflow, no inf
    loss.backward()
    assert loss.dtype == np.float32 and z.grad.dtype == np.float32 and np.isfinite(z.grad).all()


def test_all_ignored_targets_give_nan_as_pytorch():
    assert np.isnan(F.cross_entropy(np.zeros((2, 3)), np.array([-100, -100])).item())


def test_cross_entropy_target_errors():
    z = mc.Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="target 3 is out of range for 3 classes"):
        F.cross_entropy(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="target -1 is out of range"):
        F.cross_entropy(z, np.array([0, 1, 2, -1]))
    with pytest.raises(TypeError, match="integer class indices.*float"):
        F.cross_entropy(z, np.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"targets have shape \(3,\), expected \(4,\)"):
        F.cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, np.array([0, 1, 2, 1]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, np.array([0, 1, 2, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight has shape"):
        F.cross_entropy(z, np.array([0, 1, 2, 1]), weight=np.ones(4))
    with pytest.raises(TypeError, match="integer"):
        F.nll_loss(z, np.array([0.5, 1, 2, 1]))
    with pytest.raises(ValueError, match="deprecated"):
        F.cross_entropy(z, np.array([0, 1, 2, 1]), None, True)  # PyTorch's positional size_average slot


@given(st.integers(1, 4), st.integers(1, 4), seeds(), st.sampled_from(["mean", "sum", "none"]))
def test_mse_loss(n, m, seed, reduction):
    r = np.random.default_rng(seed)
    a, b = r.standard_normal((n, m)), r.standard_normal((n, m))
    sq = (a - b) ** 2
    expected = {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction]
    np.testing.assert_allclose(F.mse_loss(T(a), T(b), reduction=reduction).data, expected, rtol=1e-12)
    assert gradcheck(lambda x, y: F.mse_loss(x, y, reduction=reduction), [T(a), T(b)])


def test_mse_loss_refuses_broadcasting_shapes():
    with pytest.raises(ValueError, match=r"input has shape \(4, 1\) but target has shape \(4,\)"):
        F.mse_loss(mc.Tensor(np.zeros((4, 1))), np.zeros(4))


@given(st.integers(1, 4), st.integers(2, 4), seeds(), st.sampled_from(["mean", "sum", "none", "batchmean"]))
def test_kl_div_matches_definition(n, c, seed, reduction):
    r = np.random.default_rng(seed)
    log_q = ref_log_softmax(r.standard_normal((n, c)))
    p = np.exp(ref_log_softmax(r.standard_normal((n, c))))
    p[0, 0] = 0.0  # 0 log 0 = 0
    pointwise = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - log_q), 0.0)
    expected = {"mean": pointwise.mean(), "sum": pointwise.sum(), "none": pointwise,
                "batchmean": pointwise.sum() / n}[reduction]
    np.testing.assert_allclose(F.kl_div(T(log_q), T(p), reduction=reduction).data, expected, rtol=1e-10, atol=1e-14)
    assert gradcheck(lambda a: F.kl_div(a, T(p), reduction=reduction), [T(log_q)])
    p_pos = np.exp(ref_log_softmax(r.standard_normal((n, c))))  # target gradients need p > 0
    assert gradcheck(lambda a, b: F.kl_div(a, b, reduction=reduction), [T(log_q), T(p_pos)])
    assert gradcheck(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=True), [T(log_q), T(np.log(p_pos))])
    np.testing.assert_allclose(F.kl_div(T(log_q), T(np.log(p_pos)), reduction=reduction, log_target=True).data,
                               F.kl_div(T(log_q), T(p_pos), reduction=reduction).data, rtol=1e-10, atol=1e-14)


def test_kl_div_batchmean_is_the_kl_divergence_per_sample():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    kl = (p * np.log(p / q)).sum(axis=1)
    np.testing.assert_allclose(F.kl_div(np.log(q), p, reduction="batchmean").item(), kl.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        F.kl_div(np.log(q), p, reduction="avg")
