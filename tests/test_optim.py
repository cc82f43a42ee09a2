"""Optimisers and schedules against NumPy re-implementations of PyTorch's documented update equations
(several steps, hypothesis hyperparameters, float64 so that the comparison is tight), plus their rules:
parameter groups, zero_grad, skipped parameters, state_dict round trips and the errors."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR
from tests.strategies import arrays, shapes


def param(a):
    return mc.Tensor(np.array(a, dtype=np.float64), dtype=np.float64, requires_grad=True)


# ---- independent references (the pseudo-code of the torch.optim documentation) ----------------------
def sgd_reference(theta, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    theta, b = theta.copy(), None
    for t, g in enumerate(grads, start=1):
        if weight_decay:
            g = g + weight_decay * theta
        if momentum:
            b = g.copy() if t == 1 else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        theta = theta - lr * g
    return theta


def adam_reference(theta, grads, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False, amsgrad=False):
    theta = theta.copy()
    m, v, vmax = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta = theta - lr * weight_decay * theta
        elif weight_decay:
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** t)
        if amsgrad:  # the max is over the raw second moments, then bias-corrected (PyTorch's code, and
            vmax = np.maximum(vmax, v)  # its docs since pytorch/pytorch#142351)
            v_hat = vmax / (1 - beta2 ** t)
        else:
            v_hat = v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


def run(optimizer_cls, theta0, grads, **kwargs):
    p = param(theta0)
    data_id = id(p.data)
    opt = optimizer_cls([p], **kwargs)
    for g in grads:
        p.grad = g.copy()
        opt.step()
    assert id(p.data) == data_id  # updated in place: views and masks holding the array stay valid
    return p.data


@st.composite
def problem(draw, n_steps=st.integers(1, 6)):
    shape = draw(shapes(max_dims=2, max_side=4))
    theta = draw(arrays(shape))
    grads = [draw(arrays(shape)) for _ in range(draw(n_steps))]
    return theta, grads


lrs = st.floats(1e-4, 0.5)
rates = st.floats(0.0, 0.95)


@given(problem(), lrs, rates, rates, st.floats(0.0, 0.1), st.booleans())
def test_sgd_matches_reference(prob, lr, momentum, dampening, weight_decay, nesterov):
    theta, grads = prob
    if nesterov:
        momentum, dampening = max(momentum, 0.1), 0.0
    kwargs = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
    np.testing.assert_allclose(run(SGD, theta, grads, **kwargs), sgd_reference(theta, grads, **kwargs),
                               rtol=1e-10, atol=1e-12)


@given(problem(), lrs, st.floats(0.0, 0.99), st.floats(0.5, 0.9999), st.floats(1e-8, 1e-3),
       st.floats(0.0, 0.1), st.booleans())
def test_adam_and_adamw_match_reference(prob, lr, beta1, beta2, eps, weight_decay, amsgrad):
    theta, grads = prob
    kwargs = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
    ref = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
    np.testing.assert_allclose(run(Adam, theta, grads, **kwargs), adam_reference(theta, grads, **ref),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(run(AdamW, theta, grads, **kwargs),
                               adam_reference(theta, grads, decoupled=True, **ref), rtol=1e-9, atol=1e-12)


def test_adam_first_step_moves_each_weight_by_lr():
    # t = 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) = lr * sign(g) (eps negligible)
    p = param([1.0, -2.0, 3.0])
    p.grad = np.array([0.5, -7.0, 1e-3])
    Adam([p], lr=0.1, eps=1e-12).step()
    np.testing.assert_allclose(p.data, [0.9, -1.9, 2.9], rtol=1e-9)


def test_adamw_decays_weights_even_without_gradient_signal_but_adam_l2_differs():
    # a zero gradient: AdamW shrinks theta by (1 - lr*wd) exactly; Adam's L2 feeds wd*theta into the moments
    pw, pa = param([2.0]), param([2.0])
    pw.grad, pa.grad = np.zeros(1), np.zeros(1)
    AdamW([pw], lr=0.1, weight_decay=0.5).step()
    Adam([pa], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(pw.data, [2.0 * (1 - 0.05)])
    np.testing.assert_allclose(pa.data, [2.0 - 0.1], rtol=1e-7)  # first Adam step: lr * sign(wd*theta)


def test_defaults_are_pytorchs():
    p = param([1.0])
    assert Adam([p]).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)
    assert AdamW([p]).defaults["weight_decay"] == 1e-2
    sgd = SGD([p], lr=0.1).defaults
    assert (sgd["momentum"], sgd["dampening"], sgd["weight_decay"], sgd["nesterov"]) == (0.0, 0.0, 0.0, False)


def test_param_groups_use_their_own_hyperparameters_and_parameters_without_grad_are_skipped():
    a, b, c = param([1.0, 1.0]), param([1.0]), param([5.0])
    opt = SGD([{"params": [a]}, {"params": [b, c], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.array([1.0, 2.0]), np.array([1.0])
    opt.step()
    np.testing.assert_allclose(a.data, [0.9, 0.8])
    np.testing.assert_allclose(b.data, [0.5])
    np.testing.assert_array_equal(c.data, [5.0])
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[0]["lr"] == 0.1


def test_zero_grad_to_none_or_to_zeros():
    p = param([1.0, 2.0])
    opt = SGD([p], lr=0.1)
    p.grad = np.array([3.0, 4.0])
    grad_array = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad_array and np.all(p.grad == 0)
    opt.zero_grad()
    assert p.grad is None


def test_works_with_module_parameters_and_reduces_a_loss():
    mc.manual_seed(0)
    layer = mc.nn.Linear(3, 1)
    x = mc.Tensor(mc.core.rng().normal(size=(16, 3)))
    target = x.data @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    opt = SGD(layer.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(200):
        loss = ((layer(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-4 * losses[0]


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda ps: Adam(ps, lr=0.01, amsgrad=True), lambda ps: AdamW(ps, lr=0.01)])
def test_state_dict_round_trip_continues_exactly(make):
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(2, 3)) for _ in range(6)]
    p_ref = param(np.ones((2, 3)))
    opt_ref = make([p_ref])
    for g in grads:
        p_ref.grad = g
        opt_ref.step()
    p = param(np.ones((2, 3)))
    opt = make([p])
    for g in grads[:3]:
        p.grad = g
        opt.step()
    saved, saved_theta = opt.state_dict(), p.data.copy()
    p2 = param(saved_theta)
    opt2 = make([p2])
    opt2.load_state_dict(saved)
    for g in grads[3:]:
        p2.grad = g
        opt2.step()
    np.testing.assert_array_equal(p2.data, p_ref.data)
    opt.step()  # the saved state is a copy: stepping the source optimiser afterwards does not change it
    assert saved["state"][0] and all(not isinstance(v, np.ndarray) or v.shape == (2, 3)
                                     for v in saved["state"][0].values())


def test_load_state_dict_errors_leave_the_optimiser_unchanged():
    p = param([1.0, 2.0])
    opt = Adam([p], lr=0.1)
    p.grad = np.array([1.0, 1.0])
    opt.step()
    before = opt.state_dict()
    other = Adam([param([1.0, 2.0, 3.0])], lr=0.5)
    other.param_groups[0]["params"][0].grad = np.ones(3)
    other.step()
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict({"lr": 1})
    after = opt.state_dict()
    assert after["param_groups"][0]["lr"] == 0.1
    np.testing.assert_array_equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])


@pytest.mark.parametrize("call, match", [
    (lambda p: SGD([p], lr=-0.1), "lr"),
    (lambda p: SGD([p], lr=0.1, momentum=-1), "momentum"),
    (lambda p: SGD([p], lr=0.1, nesterov=True), "nesterov"),
    (lambda p: SGD([p], lr=float("nan")), "lr"),
    (lambda p: Adam([p], betas=(0.9, 1.0)), "betas"),
    (lambda p: Adam([p], betas=0.9), "betas"),
    (lambda p: AdamW([p], weight_decay=-1), "weight_decay"),
    (lambda p: Adam([p], eps=-1e-8), "eps"),
    (lambda p: SGD([], lr=0.1), "empty"),
    (lambda p: SGD([mc.Tensor([1.0])], lr=0.1), "does not require grad"),
    (lambda p: SGD([p, p], lr=0.1), "more than one"),
    (lambda p: SGD([{"params": [p], "momentun": 0.9}], lr=0.1), "momentun"),
])
def test_bad_hyperparameters_raise_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(param([1.0]))


def test_bad_params_types():
    with pytest.raises(TypeError, match="single Tensor"):
        SGD(param([1.0]), lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        SGD([param([1.0]), np.ones(2)], lr=0.1)


def test_gradient_of_wrong_shape_is_an_error_and_changes_nothing():
    p = param([1.0, 2.0])
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match="shape"):
        SGD([p], lr=0.1).step()
    np.testing.assert_array_equal(p.data, [1.0, 2.0])


def test_step_with_closure_returns_its_loss():
    p = param([3.0])
    opt = SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0
    np.testing.assert_allclose(p.data, [3.0 - 0.25 * 6.0])


# ---- schedules ------------------------------------------------------------------------------------
def collect_lrs(make_scheduler, base_lrs, n_epochs):
    groups = [{"params": [param([1.0])], "lr": lr} for lr in base_lrs]
    opt = SGD(groups, lr=base_lrs[0])
    sched = make_scheduler(opt)
    seen = [sched.get_last_lr()]
    for _ in range(n_epochs):
        opt.step()
        sched.step()
        seen.append(sched.get_last_lr())
    return np.array(seen)


@given(st.integers(1, 7), st.floats(0.01, 1.0), st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=3))
def test_step_lr_formula(step_size, gamma, base_lrs):
    seen = collect_lrs(lambda o: StepLR(o, step_size, gamma=gamma), base_lrs, 20)
    expected = [[lr * gamma ** (e // step_size) for lr in base_lrs] for e in range(21)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


@given(st.integers(1, 12), st.floats(0.0, 1e-3), st.lists(st.floats(1e-2, 1.0), min_size=1, max_size=3))
def test_cosine_annealing_formula(t_max, eta_min, base_lrs):
    n = 2 * t_max + 3  # past T_max the cosine goes on (PyTorch's closed form)
    seen = collect_lrs(lambda o: CosineAnnealingLR(o, T_max=t_max, eta_min=eta_min), base_lrs, n)
    expected = [[eta_min + (lr - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2 for lr in base_lrs]
                for e in range(n + 1)]
    np.testing.assert_allclose(seen, expected, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(seen[t_max], eta_min, atol=1e-15)
    np.testing.assert_allclose(seen[0], base_lrs)


def test_scheduler_changes_the_step_the_optimiser_takes():
    p = param([0.0])
    opt = SGD([p], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = np.array([1.0])
        opt.step()
        sched.step()
    np.testing.assert_allclose(p.data, [-(1.0 + 0.5 + 0.25)])


def test_scheduler_errors():
    opt = SGD([param([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(opt, T_max=2.5)
    with pytest.raises(TypeError, match="Optimizer"):
        StepLR([param([1.0])], step_size=1)
