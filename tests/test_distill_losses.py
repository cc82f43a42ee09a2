"""Distillation losses against a float64 NumPy reference, finite differences and Hinton's T² argument;
bad inputs (temperature, shapes, NaN) raise clear errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress import distill as D
from tests.strategies import arrays


def ref_log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def ref_kd(s, t, T):
    log_ps, log_pt = ref_log_softmax(s / T), ref_log_softmax(t / T)
    return T * T * np.mean(np.sum(np.exp(log_pt) * (log_pt - log_ps), axis=1))


def S(a, dtype=np.float64):
    return mc.Tensor(np.asarray(a, dtype=dtype), dtype=dtype, requires_grad=True)


logit_pairs = st.tuples(st.integers(1, 6), st.integers(2, 7)).flatmap(
    lambda nc: st.tuples(arrays(nc, -8, 8), arrays(nc, -8, 8)))
temperatures = st.sampled_from([0.5, 1.0, 2.0, 4.0, 10.0])


@given(logit_pairs, temperatures)
def test_kd_loss_matches_reference_is_nonnegative_and_zero_for_equal_logits(pair, T):
    s, t = pair
    loss = D.kd_loss(S(s, np.float32), t, T)
    assert loss.shape == () and loss.dtype == np.float32
    assert loss.item() >= 0.0
    np.testing.assert_allclose(loss.item(), ref_kd(s.astype(np.float32), t, T), rtol=1e-5, atol=1e-6)
    assert D.kd_loss(S(t), t, T).item() == 0.0
    shifted = D.kd_loss(S(t + 3.0), t, T).item()          # softmax is shift-invariant per row
    assert abs(shifted) < 1e-9


@given(logit_pairs, temperatures)
def test_gradients_match_finite_differences(pair, T):
    s, t = pair
    y = np.argmax(t, axis=1)
    assert mc.gradcheck(lambda a: D.kd_loss(a, t, T), [S(s)])
    assert mc.gradcheck(lambda a: D.soft_cross_entropy(a, t, T), [S(s)])
    assert mc.gradcheck(lambda a: D.logit_mse_loss(a, t), [S(s)])
    assert mc.gradcheck(lambda a: D.distillation_loss(a, t, y, T, alpha=0.7), [S(s)])


def test_only_the_student_gets_a_gradient():
    r = np.random.default_rng(0)
    s, t = S(r.normal(size=(4, 5))), S(r.normal(size=(4, 5)))
    D.kd_loss(s, t, 2.0).backward()
    assert s.grad is not None and t.grad is None
    # analytic gradient: T (p_s - p_t) / N
    T = 2.0
    expected = T * (np.exp(ref_log_softmax(s.data / T)) - np.exp(ref_log_softmax(t.data / T))) / 4
    np.testing.assert_allclose(s.grad, expected, rtol=1e-10)


def test_t_squared_keeps_gradient_magnitudes_comparable_across_temperatures():
    r = np.random.default_rng(1)
    s, t = r.normal(size=(16, 10)) * 3, r.normal(size=(16, 10)) * 3
    norms = {}
    for T in (2.0, 4.0, 8.0, 16.0, 64.0):
        x = S(s)
        D.kd_loss(x, t, T).backward()
        norms[T] = np.linalg.norm(x.grad)
    ratios = [norms[T] / norms[2.0] for T in norms]
    assert min(ratios) > 0.4 and max(ratios) < 2.5                 # comparable with T²
    assert norms[64.0] / 64.0 ** 2 < norms[2.0] / 2.0 ** 2 / 100    # without T² they would collapse
    # Hinton's high-temperature limit: grad -> ((s - mean s) - (t - mean t)) / (N C)
    centred = (s - s.mean(1, keepdims=True)) - (t - t.mean(1, keepdims=True))
    x = S(s)
    D.kd_loss(x, t, 1000.0).backward()
    limit = centred / (16 * 10)
    assert np.linalg.norm(x.grad - limit) < 0.01 * np.linalg.norm(limit)


@given(logit_pairs, temperatures)
def test_soft_cross_entropy_is_kd_plus_teacher_entropy(pair, T):
    s, t = pair
    log_pt = ref_log_softmax(t / T)
    entropy = -np.mean(np.sum(np.exp(log_pt) * log_pt, axis=1))
    np.testing.assert_allclose(D.soft_cross_entropy(S(s), t, T).item(),
                               D.kd_loss(S(s), t, T).item() + T * T * entropy, rtol=1e-9, atol=1e-9)


def test_distillation_loss_combines_kd_and_cross_entropy():
    r = np.random.default_rng(2)
    s, t = r.normal(size=(6, 4)), r.normal(size=(6, 4))
    y = np.array([0, 1, 2, 3, 0, 1])
    ce = -np.mean(ref_log_softmax(s)[np.arange(6), y])
    for alpha in (0.0, 0.3, 1.0):
        got = D.distillation_loss(S(s), t, y, temperature=3.0, alpha=alpha).item()
        np.testing.assert_allclose(got, alpha * ref_kd(s, t, 3.0) + (1 - alpha) * ce, rtol=1e-7)
    np.testing.assert_allclose(D.logit_mse_loss(S(s), t).item(), np.mean((s - t) ** 2), rtol=1e-12)


def test_bad_inputs_are_clear_errors():
    s, t = S(np.zeros((3, 4))), np.zeros((3, 4))
    for T in (0, -1.0, float("nan"), float("inf"), True, "4"):
        with pytest.raises(ValueError, match="temperature"):
            D.kd_loss(s, t, T)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        D.kd_loss(s, np.zeros((3, 5)), 2.0)
    with pytest.raises(ValueError, match="same shape"):
        D.kd_loss(S(np.zeros(4)), np.zeros(4), 2.0)
    bad = np.zeros((3, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="teacher_logits contains NaN"):
        D.kd_loss(s, bad, 2.0)
    with pytest.raises(ValueError, match="student_logits contains NaN"):
        D.soft_cross_entropy(S(bad), t, 2.0)
    with pytest.raises(TypeError, match="student_logits must be a Tensor"):
        D.kd_loss(np.zeros((3, 4)), t, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        D.distillation_loss(s, t, np.zeros(3, dtype=np.int64), 2.0, alpha=1.5)
    with pytest.raises(ValueError, match="targets"):
        D.distillation_loss(s, t, np.zeros(4, dtype=np.int64), 2.0)
