"""autocast by op category, LowPrecision, the per-layer report, GradScaler and the MixedPrecision callback,
each against a reference computed in the test (rounded inputs in float64, exact sums, a simulated scale)."""
import numpy as np
import pytest

import minicompress as mc
from minicompress import precision as P
from minicompress.core import get_op_hook
from minicompress.nn import functional as F
from minicompress.precision import op_lists


def T(a, grad=False):
    return mc.Tensor(np.asarray(a, dtype=np.float32), requires_grad=grad)


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- what each category does ------------------------------------------------------------------------
def test_lower_precision_op_rounds_inputs_accumulates_in_fp32_and_rounds_output():
    # inputs: 1 + 2^-10 is not a BF16 number (rounds to 1); 2^-8 is
    x = T([[1.0 + 2.0 ** -10, 2.0 ** -8, 2.0 ** -8]])
    w = T([[1.0, 1.0, 1.0]])
    with P.autocast("bf16"):
        y = F.linear(x, w)
    # rounded inputs 1, 2^-8, 2^-8 summed exactly (FP32 accumulation) = 1 + 2^-7, a BF16 number.
    # (Accumulating in BF16 would give 1: 1 + 2^-8 is a tie that rounds to even.)
    assert y.data[0, 0] == np.float32(1.0 + 2.0 ** -7)
    x2 = T([[1.0, 2.0 ** -9]])
    with P.autocast("bf16"):
        y2 = F.linear(x2, T([[1.0, 1.0]]))
    assert y2.data[0, 0] == 1.0                        # FP32 result 1 + 2^-9 rounded to BF16 -> 1
    assert (F.linear(x2, T([[1.0, 1.0]])).data == np.float32(1 + 2.0 ** -9)).all()   # outside: FP32


@pytest.mark.parametrize("dtype,round_fn,eps", [("bf16", P.round_to_bf16, 2.0 ** -8),
                                                 ("fp16", P.round_to_fp16, 2.0 ** -11)])
def test_linear_and_matmul_match_a_float64_reference_on_rounded_inputs(dtype, round_fn, eps):
    r = rng(1)
    x, w, b = r.normal(size=(6, 20)), r.normal(size=(5, 20)), r.normal(size=5)
    with P.autocast(dtype) as ac:
        y = F.linear(T(x), T(w), T(b))
        z = T(x) @ T(w.T)
    ref = round_fn(x.astype(np.float32)).astype(np.float64) @ round_fn(w.astype(np.float32)).astype(np.float64).T
    for out, expected in ((y.data, ref + round_fn(b.astype(np.float32))), (z.data, ref)):
        np.testing.assert_array_equal(round_fn(out), out)                 # the output holds low-precision values
        assert (np.abs(out - expected) <= eps * np.abs(expected) + 1e-6).all()   # half an ulp + FP32 sums
    assert ac.records == [("linear", "lower", dtype), ("matmul", "lower", dtype)]
    assert not np.allclose(y.data, F.linear(T(x), T(w), T(b)).data, rtol=0, atol=1e-7)   # it did change


def test_fp32_ops_run_unchanged_and_fallthrough_follows_its_inputs():
    r = rng(2)
    x = T(r.normal(size=(4, 7)))
    w = T(r.normal(size=(7, 7)))
    with P.autocast("bf16") as ac:
        h = F.linear(x, w)                  # low
        s = F.softmax(h, axis=-1)           # FP32 op: exactly the FP32 softmax of the same input
        a = h.relu()                        # fall-through on a low input: low
        mixed = a + x                       # low + FP32 -> FP32 (promote)
        both = a + h                        # low + low -> low (rounded)
    np.testing.assert_array_equal(s.data, F.softmax(mc.Tensor(h.data), axis=-1).data)
    np.testing.assert_array_equal(mixed.data, a.data + x.data)
    np.testing.assert_array_equal(both.data, P.round_to_bf16(a.data + h.data))
    assert ac.records == [("linear", "lower", "bf16"), ("softmax", "fp32", "fp32"),
                          ("relu", "fallthrough", "bf16"), ("add", "promote", "fp32"),
                          ("add", "promote", "bf16")]
    assert ac.op_counts()[("add", "fp32")] == 1
    # a fall-through op follows its first input: batch_norm of a low tensor with FP32 statistics is low
    mean, var = mc.Tensor(np.zeros(7, np.float32)), mc.Tensor(np.full(7, 3.0, np.float32))
    with P.autocast("bf16") as ac:
        bn = F.batch_norm(h, mean, var, training=False)
        bn32 = F.batch_norm(x, mean, var, training=False)
    np.testing.assert_array_equal(bn.data, P.round_to_bf16(F.batch_norm(h, mean, var, training=False).data))
    np.testing.assert_array_equal(bn32.data, F.batch_norm(x, mean, var, training=False).data)
    assert [r[2] for r in ac.records] == ["bf16", "fp32"]


def test_op_lists_are_plain_editable_data(monkeypatch):
    x, w = T(rng(3).normal(size=(3, 9))), T(rng(4).normal(size=(4, 9)))
    monkeypatch.setattr(op_lists, "LOWER_PRECISION_OPS", op_lists.LOWER_PRECISION_OPS - {"linear"})
    monkeypatch.setattr(op_lists, "FP32_OPS", op_lists.FP32_OPS | {"linear"})
    with P.autocast("bf16") as ac:
        y = F.linear(x, w)
    np.testing.assert_array_equal(y.data, F.linear(x, w).data)
    assert ac.records == [("linear", "fp32", "fp32")]


def test_fp16_overflows_to_inf_where_bf16_does_not():
    x, w = T([[300.0, 300.0]]), T([[200.0, 200.0]])       # 120000 > FP16 max 65504
    with P.autocast("fp16"):
        assert np.isinf(F.linear(x, w).data).all()
    with P.autocast("bf16"):
        assert F.linear(x, w).data[0, 0] == P.round_to_bf16(np.float32(120000.0))


# ---- gradients --------------------------------------------------------------------------------------
def test_gradients_use_rounded_values_and_are_rounded_themselves():
    r = rng(5)
    xv, wv, g = r.normal(size=(5, 6)), r.normal(size=(3, 6)), r.normal(size=(5, 3))
    rb = lambda a: P.round_to_bf16(np.asarray(a, dtype=np.float32)).astype(np.float64)   # noqa: E731
    for round_grads in (True, False):
        x, w = T(xv, grad=True), T(wv, grad=True)
        with P.autocast("bf16", round_grads=round_grads):
            y = F.linear(x, w)
        y.backward(g.astype(np.float32))
        gg = rb(g) if round_grads else g
        for got, ref in ((w.grad, gg.T @ rb(xv)), (x.grad, gg @ rb(wv))):
            if round_grads:
                np.testing.assert_array_equal(P.round_to_bf16(got), got)
                assert (np.abs(got - ref) <= 2.0 ** -8 * np.abs(ref) + 1e-6).all()
            else:
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32   # FP32 master gradients


def test_fp16_gradients_underflow_without_loss_scaling_and_survive_with_it():
    r = rng(6)
    x, w = T(r.normal(size=(8, 4))), T(r.normal(size=(2, 4)), grad=True)
    for scale in (1.0, 2.0 ** 16):
        w.grad = None
        with P.autocast("fp16"):
            y = F.linear(x, w)
        (P.scale_grad((y * 1e-9).sum(), scale)).backward()
        unscaled = w.grad / scale
        exact = 1e-9 * np.ones((8, 2)).T @ P.round_to_fp16(x.data).astype(np.float64)
        if scale == 1.0:
            assert (unscaled == 0).all()                   # 1e-9 < 2^-24: flushed to zero in FP16
        else:
            np.testing.assert_allclose(unscaled, exact, rtol=2e-3)


def test_scale_grad_keeps_the_value_and_scales_the_gradient():
    x = T([1.5, -2.0], grad=True)
    y = P.scale_grad((x * x).sum(), 8.0)
    assert y.item() == 6.25
    y.backward()
    np.testing.assert_array_equal(x.grad, 8.0 * 2 * np.array([1.5, -2.0], dtype=np.float32))


# ---- the context manager ------------------------------------------------------------------------------
def test_unknown_dtype_is_a_clear_error():
    for bad in ("int8", "fp8", "float64", 3):
        with pytest.raises(ValueError, match="autocast: unknown dtype.*bf16"):
            P.autocast(bad)
    with pytest.raises(ValueError, match="LowPrecision: unknown dtype"):
        P.LowPrecision(mc.nn.Linear(2, 2), "int4")
    with pytest.raises(TypeError, match="Module"):
        P.LowPrecision(lambda x: x, "bf16")
    for alias, name in (("bfloat16", "bf16"), ("half", "fp16"), (np.float16, "fp16"), ("FP16", "fp16")):
        assert P.autocast(alias).dtype == name


def test_nesting_and_exceptions_restore_the_previous_hook():
    assert get_op_hook() is None
    outer, inner = P.autocast("bf16"), P.autocast("fp16")
    with outer:
        assert get_op_hook() is outer
        with inner:
            assert get_op_hook() is inner
            with P.autocast("bf16", enabled=False):
                assert get_op_hook() is None
            assert get_op_hook() is inner
        assert get_op_hook() is outer
        with pytest.raises(ZeroDivisionError):
            with inner:
                1 / 0
        assert get_op_hook() is outer
    assert get_op_hook() is None


# ---- LowPrecision and the report -----------------------------------------------------------------------
def small_mlp(seed=0):
    mc.manual_seed(seed)
    return mc.nn.Sequential(mc.nn.Linear(16, 12), mc.nn.ReLU(), mc.nn.Linear(12, 5))


def test_low_precision_wrapper_equals_running_under_autocast_and_shares_parameters():
    model = small_mlp()
    x = T(rng(7).normal(size=(4, 16)))
    wrapped = P.LowPrecision(model, "bf16")
    with P.autocast("bf16"):
        expected = model(x).data
    np.testing.assert_array_equal(wrapped(x).data, expected)
    assert [p is q for p, q in zip(wrapped.parameters(), model.parameters())] == [True] * 4
    assert [r[2] for r in wrapped.last_autocast.records] == ["bf16"] * 3
    assert get_op_hook() is None
    # one layer of a model in BF16, the rest FP32
    model.set_submodule("2", P.LowPrecision(model.get_submodule("2"), "bf16"))
    h = F.relu(F.linear(x, model.get_submodule("0").weight, model.get_submodule("0").bias))
    with P.autocast("bf16"):
        expected = model.get_submodule("2.module")(h).data
    np.testing.assert_array_equal(model(x).data, expected)


def test_precision_report_rows_and_errors_against_direct_computation():
    model = small_mlp(1)
    x = rng(8).normal(size=(10, 16)).astype(np.float32)
    rows = P.precision_report(model, x, "bf16")
    assert [r["layer"] for r in rows] == ["0", "1", "2", "(output)"]
    assert rows[0]["ops"] == {"linear": "bf16"} and rows[1]["ops"] == {"relu": "bf16"}
    l0 = model.get_submodule("0")
    y32 = x.astype(np.float64) @ l0.weight.data.T.astype(np.float64) + l0.bias.data
    rb = lambda a: P.round_to_bf16(np.asarray(a, dtype=np.float32)).astype(np.float64)   # noqa: E731
    ylow = rb(rb(x) @ rb(l0.weight.data).T + rb(l0.bias.data))
    expected = np.linalg.norm(ylow - y32) / np.linalg.norm(y32)
    assert rows[0]["rel_err"] == pytest.approx(expected, rel=0.05)
    assert rows[0]["rel_err"] == rows[0]["rel_err_isolated"]     # the first layer sees exact inputs
    assert rows[1]["rel_err_isolated"] == 0.0                     # relu of FP32 inputs is exact
    assert 0 < rows[-1]["rel_err"] < 2 ** -5
    assert rows[-1]["ops"] == {("linear", "bf16"): 2, ("relu", "bf16"): 1}
    text = P.format_precision_report(rows)
    assert "linear:bf16" in text and "(output)" in text
    assert model.training                                         # mode restored


# ---- GradScaler ----------------------------------------------------------------------------------------
def test_grad_scaler_skips_on_overflow_backs_off_and_grows_like_pytorch():
    p = mc.nn.Parameter(np.ones(3, dtype=np.float32))
    opt = mc.optim.SGD([p], lr=0.1)
    scaler = P.GradScaler(init_scale=8.0, growth_interval=3)
    events = ["ok", "inf", "ok", "ok", "ok", "nan", "ok"]
    expected_scale, tracker, expected_p = 8.0, 0, np.ones(3)
    for event in events:
        loss = (p * mc.Tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32))).sum()
        assert scaler.scale(loss).item() == pytest.approx(loss.item() * expected_scale)
        opt.zero_grad()
        scaler.scale(loss).backward()
        if event != "ok":
            p.grad[1] = np.inf if event == "inf" else np.nan
        before = p.data.copy()
        scaler.step(opt)
        if event == "ok":
            expected_p = before - 0.1 * np.array([1.0, 2.0, 3.0])
            np.testing.assert_allclose(p.grad, [1.0, 2.0, 3.0])   # unscaled
            tracker += 1
            if tracker == 3:
                expected_scale, tracker = expected_scale * 2, 0
        else:
            expected_p = before                                    # step skipped
            expected_scale, tracker = expected_scale * 0.5, 0
        np.testing.assert_allclose(p.data, expected_p, rtol=1e-6, atol=1e-6)
        scaler.update()
        assert scaler.get_scale() == expected_scale
    assert (scaler.steps_skipped, scaler.steps_taken) == (2, 5)
    state = scaler.state_dict()
    fresh = P.GradScaler()
    fresh.load_state_dict(state)
    assert fresh.get_scale() == scaler.get_scale() and fresh.state_dict() == state
    assert P.GradScaler().get_scale() == 65536.0                   # PyTorch's default init_scale
    with pytest.raises(ValueError, match="init_scale"):
        P.GradScaler(init_scale=0)
    with pytest.raises(ValueError, match="missing"):
        fresh.load_state_dict({"scale": 2.0})
