"""Mixed-precision training through fit: autocast only around the forward, low-precision gradients, FP32
master weights, FP16 loss scaling that skips overflowing steps and backs off; BF16 inference and training
accuracy close to FP32 on digits (the full bars, over seeds and all zoo models, are in tutorial 10)."""
import numpy as np
import pytest

import minicompress as mc
from minicompress import precision as P
from minicompress.core import get_op_hook


class Probe:
    """Records what the op hook is at each point of a step, and the weights around skipped steps."""

    def __init__(self, model, amp):
        self.model, self.amp, self.seen = model, amp, []
        model[0].register_forward_hook(lambda m, a, out: self.seen.append(("forward", type(get_op_hook()))))

    def on_step_begin(self, state):
        self.before = [p.data.copy() for p in self.model.parameters()]

    def on_after_backward(self, state):
        self.seen.append(("backward", type(get_op_hook())))
        self.grad = self.model[0].weight.grad
        self.grad_finite = self.grad is None or bool(np.isfinite(self.grad).all())

    def on_step_end(self, state):
        unchanged = all(np.array_equal(a, p.data) for a, p in zip(self.before, self.model.parameters()))
        self.seen.append(("skipped" if state.step in self.amp.skipped_steps else "taken", unchanged))


def small_data(n=256):
    X, y, _, _ = mc.data.digits_split()
    return X[:n], y[:n]


def model(seed=0):
    mc.manual_seed(seed)
    return mc.nn.Sequential(mc.nn.Linear(64, 32), mc.nn.ReLU(), mc.nn.Linear(32, 10))


def test_bf16_autocast_covers_the_forward_only_and_gradients_are_bf16():
    m = model()
    amp = P.MixedPrecision("bf16")
    probe = Probe(m, amp)
    history = mc.train.fit(m, small_data(), epochs=1, batch_size=64, callbacks=[probe, amp], verbose=False)
    assert amp.scaler is None and np.isfinite(history.loss).all()
    assert ("forward", P.autocast) in probe.seen and ("backward", type(None)) in probe.seen
    assert ("forward", type(None)) not in probe.seen
    assert get_op_hook() is None
    np.testing.assert_array_equal(P.round_to_bf16(probe.grad), probe.grad)      # BF16 gradient values
    assert m[0].weight.data.dtype == np.float32
    assert not np.array_equal(P.round_to_bf16(m[0].weight.data), m[0].weight.data)   # FP32 master weights


def test_fp16_loss_scaling_skips_overflowing_steps_and_halves_the_scale():
    m = model(1)
    amp = P.MixedPrecision("fp16", scaler=P.GradScaler(init_scale=2.0 ** 30))
    probe = Probe(m, amp)
    history = mc.train.fit(m, small_data(), epochs=4, batch_size=32, callbacks=[probe, amp], verbose=False)
    skipped, k = set(amp.skipped_steps), len(amp.skipped_steps)
    assert set(range(5)) <= skipped and k < 32       # 2^30 · grad overflows FP16 (max 65504) at first
    assert amp.scales[0] == 2.0 ** 30 and len(amp.scales) == 32
    for i in range(31):                              # halve after each overflow; growth needs 2000 clean steps
        assert amp.scales[i + 1] == amp.scales[i] * (0.5 if i in skipped else 1.0)
    outcomes = [s for s in probe.seen if s[0] in ("skipped", "taken")]
    assert all(unchanged for kind, unchanged in outcomes if kind == "skipped")   # no update on a skipped step
    assert not any(unchanged for kind, unchanged in outcomes if kind == "taken")
    assert amp.scaler.steps_skipped == k and amp.scaler.steps_taken == 32 - k
    assert np.isfinite(history.loss).all()          # the History holds the true (unscaled) loss
    assert history.loss[-1] < 2.5


def test_mixed_precision_arguments():
    assert isinstance(P.MixedPrecision("fp16").scaler, P.GradScaler)
    assert P.MixedPrecision("bf16").scaler is None
    with pytest.raises(ValueError, match="MixedPrecision: unknown dtype"):
        P.MixedPrecision("fp8")
    with pytest.raises(TypeError, match="GradScaler"):
        P.MixedPrecision("fp16", scaler=2.0 ** 16)


def test_bf16_training_and_inference_stay_close_to_fp32_on_digits():
    X_train, y_train, X_test, y_test = mc.data.digits_split()
    acc = {}
    for mode in ("fp32", "bf16"):
        mc.manual_seed(2)
        m = mc.models.mlp()
        callbacks = [P.MixedPrecision(mode)] if mode != "fp32" else []
        mc.train.fit(m, (X_train, y_train), epochs=10, callbacks=callbacks, verbose=False)
        acc[mode] = mc.train.evaluate(m, (X_test, y_test))
        if mode == "fp32":
            acc["bf16 inference"] = mc.train.evaluate(P.LowPrecision(m, "bf16"), (X_test, y_test))
            acc["fp16 inference"] = mc.train.evaluate(P.LowPrecision(m, "fp16"), (X_test, y_test))
    assert acc["fp32"] > 0.9
    assert abs(acc["bf16 inference"] - acc["fp32"]) <= 1 / 360 + 1e-12     # at most one of 360 images
    assert abs(acc["fp16 inference"] - acc["fp32"]) <= 1 / 360 + 1e-12
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.02, acc
