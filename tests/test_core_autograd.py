"""Autograd engine: every core op against central differences (float64, hypothesis shapes), plus the
engine's own rules (accumulation, topological order, no_grad, detach, errors, seeding)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress.core.gradcheck import gradcheck
from tests.strategies import arrays, away_from, broadcastable_pair, shapes


def T(a):
    return mc.Tensor(np.array(a, dtype=np.float64), dtype=np.float64, requires_grad=True)


@given(st.data())
def test_binary_ops_broadcast_and_match_finite_differences(data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa))
    b = data.draw(arrays(sb, low=0.5, high=3.0))  # positive: safe divisor and power base
    for fn in (lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y, lambda x, y: x / y,
               lambda x, y: y ** x):
        x, y = T(a), T(b)
        assert gradcheck(fn, [x, y])
        out = fn(x, y)
        assert out.shape == np.broadcast_shapes(sa, sb)
        assert x.grad.shape == sa and y.grad.shape == sb


@given(arrays(shapes()))
def test_unary_ops_match_finite_differences(a):
    a = away_from(a, [0.0, -1.0, 1.0], 1e-3)
    for fn in (lambda x: -x, lambda x: x.exp(), lambda x: (x.abs() + 0.5).log(), lambda x: (x * x + 0.1).sqrt(),
               lambda x: x.abs(), lambda x: x.clip(-1.0, 1.0), lambda x: x.relu(), lambda x: x.sigmoid(),
               lambda x: x.tanh(), lambda x: x ** 3):
        assert gradcheck(fn, [T(a)])


@given(arrays(shapes(min_dims=1, max_dims=3)), st.data())
def test_reductions_over_axes(a, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-a.ndim, a.ndim - 1)))
    keep = data.draw(st.booleans())
    a = a + np.arange(a.size).reshape(a.shape) * 1e-2  # distinct values: max has a unique winner
    for fn in (lambda x: x.sum(axis=axis, keepdims=keep), lambda x: x.mean(axis=axis, keepdims=keep),
               lambda x: x.max(axis=axis, keepdims=keep), lambda x: x.min(axis=axis, keepdims=keep)):
        x = T(a)
        assert gradcheck(fn, [x])
    np.testing.assert_allclose(T(a).sum(axis=axis, keepdims=keep).data, np.sum(a, axis=axis, keepdims=keep))


def test_max_shares_gradient_between_ties():
    x = T([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2), st.data())
def test_matmul_batched_and_1d(m, k, n, batch, data):
    lead = (2,) * batch
    a, b = data.draw(arrays(lead + (m, k))), data.draw(arrays((k, n)))
    assert gradcheck(lambda x, y: x @ y, [T(a), T(b)])
    v = data.draw(arrays((k,)))
    assert gradcheck(lambda x, y: x @ y, [T(a), T(v)])
    assert gradcheck(lambda x, y: x @ y, [T(v), T(b)])
    np.testing.assert_allclose((T(a) @ T(b)).data, np.matmul(a, b))


@given(arrays(shapes(min_dims=2, max_dims=3, min_side=2)))
def test_shape_ops(a):
    nd = a.ndim
    perm = tuple(reversed(range(nd)))
    fns = [lambda x: x.reshape(-1), lambda x: x.flatten(1), lambda x: x.permute(*perm), lambda x: x.transpose(0, 1),
           lambda x: x.T, lambda x: x[0], lambda x: x[:, 1:], lambda x: x[..., ::2],
           lambda x: x[np.array([0, 0, 1])],  # repeated fancy index: gradients must accumulate
           lambda x: mc.concat([x, x * 2], axis=-1), lambda x: mc.stack([x, x], axis=1)]
    for fn in fns:
        assert gradcheck(fn, [T(a)])
    np.testing.assert_array_equal(T(a).permute(*perm).data, np.transpose(a, perm))


def test_where_routes_gradient():
    a, b = T([1.0, 2.0, 3.0]), T([10.0, 20.0, 30.0])
    cond = np.array([True, False, True])
    assert gradcheck(lambda x, y: mc.where(cond, x, y), [a, b])
    out = mc.where(cond, a, b)
    np.testing.assert_array_equal(out.data, [1, 20, 3])


def test_gradient_accumulates_over_uses_and_calls():
    x = T([2.0])
    y = x * x + x * 3  # x used three times: dy/dx = 2x + 3 = 7
    y.backward()
    assert x.grad[0] == 7.0
    (x * 2).backward()
    assert x.grad[0] == 9.0  # leaves accumulate until zeroed, as in PyTorch


def test_diamond_graph_visits_shared_node_once():
    x = T([1.5])
    h = x.exp()
    y = h * h + h  # h feeds two branches
    y.backward()
    e = np.exp(1.5)
    np.testing.assert_allclose(x.grad, [2 * e * e + e])


def test_deep_chain_does_not_hit_recursion_limit():
    x = mc.Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 0.0
    y.backward()
    assert x.grad[0] == 1.0


def test_no_grad_and_detach_record_nothing():
    x = T([1.0, 2.0])
    with mc.no_grad():
        y = x * 2
    assert not y.requires_grad and y._op is None
    z = x.detach() * 2
    assert not z.requires_grad
    with pytest.raises(ValueError, match="does not require grad"):
        z.sum().backward()


def test_retain_grad_keeps_intermediate_gradient():
    x = T([1.0, 2.0])
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * np.array([3.0, 6.0]))


def test_comparisons_are_masks_without_gradient():
    x = T([1.0, 2.0, 3.0])
    m = x > 1.5
    assert m.dtype == np.bool_ and not m.requires_grad
    np.testing.assert_array_equal(m.data, [False, True, True])
    np.testing.assert_array_equal((x == 2.0).data, [False, True, False])


def test_backward_on_non_scalar_needs_grad():
    x = T([1.0, 2.0])
    with pytest.raises(ValueError, match="scalar"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(x.grad, [2, 2])
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))


def test_dtype_conventions():
    assert mc.Tensor(np.random.randn(3)).dtype == np.float32
    assert mc.Tensor([1, 2]).dtype == np.int64
    assert mc.Tensor(np.zeros(2), dtype=np.float64).dtype == np.float64
    x = mc.Tensor(np.ones(2, dtype=np.float32))
    assert (x * np.float64(2.0)).dtype == np.float32  # NumPy scalars do not promote
    with pytest.raises(TypeError, match="floating"):
        mc.Tensor([1, 2], requires_grad=True)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        mc.Tensor(np.zeros((2, 3))).reshape(4, 2)


def test_manual_seed_repeats_draws():
    mc.manual_seed(123)
    a = mc.core.rng().standard_normal(5)
    mc.manual_seed(123)
    np.testing.assert_array_equal(a, mc.core.rng().standard_normal(5))
    with pytest.raises(TypeError):
        mc.manual_seed(1.5)


def test_gradcheck_catches_a_wrong_backward():
    class BadSquare(mc.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved
            return (grad * a,)  # missing factor 2

    with pytest.raises(AssertionError, match="analytic"):
        gradcheck(lambda x: BadSquare.apply(x), [T([1.0, 2.0])])


def test_matmul_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not match"):
        mc.Tensor(np.zeros((2, 3))) @ mc.Tensor(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(3,\) and \(4,\)"):
        mc.Tensor(np.zeros(3)) @ mc.Tensor(np.zeros(4))
