"""fit / evaluate: the callback protocol (order, state, what each hook may change), the recipe defaults,
History and the progress line, the NaN-loss error (model left as before the step), determinism, errors.
Small models on a slice of the digits: every test here runs in well under a second."""
import math

import numpy as np
import pytest

import minicompress as mc
from minicompress import nn
from minicompress.nn import functional as F
from minicompress.optim import SGD
from minicompress.train import HOOKS, NonFiniteLossError, Recipe, evaluate, fit

X_ALL, Y_ALL = mc.data.load_digits()
X, Y = X_ALL[:40], Y_ALL[:40]


def small_model(batchnorm=False, seed=0):
    mc.manual_seed(seed)
    layers = [nn.Linear(64, 8)] + ([nn.BatchNorm1d(8)] if batchnorm else []) + [nn.ReLU(), nn.Linear(8, 10)]
    return nn.Sequential(*layers)


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


class Recorder:
    """Logs every hook with the state it saw, and checks what must hold at each point."""

    def __init__(self):
        self.log = []

    def __getattr__(self, name):
        if name not in HOOKS:
            raise AttributeError(name)

        def hook(state):
            grads = [p.grad for p in state.model.parameters()]
            self.log.append(dict(hook=name, epoch=state.epoch, step=state.step, weights=weights(state.model),
                                 has_grads=all(g is not None for g in grads),
                                 grads=[None if g is None else g.copy() for g in grads],
                                 x=state.x, y=state.y, logits=state.logits, loss=state.loss,
                                 training=state.model.training))
        return hook


def test_hooks_are_called_in_order_with_the_right_state():
    model = small_model()
    rec = Recorder()
    fit(model, (X[:10], Y[:10]), epochs=2, optimizer=SGD(model.parameters(), lr=0.1), batch_size=4,
        callbacks=[rec], verbose=False)
    step_hooks = ["on_step_begin", "on_loss", "on_after_backward", "on_step_end"]
    epoch = ["on_epoch_begin"] + step_hooks * 3 + ["on_epoch_end"]  # 10 rows, batches of 4: 3 steps
    assert [e["hook"] for e in rec.log] == ["on_train_begin"] + epoch * 2 + ["on_train_end"]
    steps = [e for e in rec.log if e["hook"] == "on_step_begin"]
    assert [e["step"] for e in steps] == list(range(6))
    assert [e["epoch"] for e in steps] == [0, 0, 0, 1, 1, 1]
    assert [len(e["y"]) for e in steps] == [4, 4, 2] * 2
    assert all(e["training"] for e in rec.log)
    for begin, loss, after, end in zip(*[iter([e for e in rec.log if e["hook"] in step_hooks])] * 4):
        assert isinstance(begin["x"], mc.Tensor) and begin["x"].shape == (len(begin["y"]), 64)
        assert loss["logits"].shape == (len(begin["y"]), 10) and loss["loss"].data.shape == ()
        np.testing.assert_allclose(loss["loss"].item(), F.cross_entropy(loss["logits"], begin["y"]).item())
        # rows of x still carry their labels: find each row in X and compare labels
        for row, label in zip(begin["x"].data, begin["y"]):
            assert label in Y[:10][np.all(X[:10] == row, axis=1)]
        assert after["has_grads"] and end["has_grads"]  # zero_grad before the step's forward
        assert not begin["has_grads"] and not loss["has_grads"]
        for k in begin["weights"]:
            np.testing.assert_array_equal(after["weights"][k], begin["weights"][k])  # no step before the hook
        # no buffers in this model: state_dict keys are the parameters, in parameters() order
        for k, g in zip(begin["weights"], after["grads"]):  # the SGD step: between these two hooks
            np.testing.assert_allclose(end["weights"][k], after["weights"][k] - 0.1 * g, rtol=1e-6, atol=1e-7)


def test_on_loss_replaces_the_loss_that_is_back_propagated():
    model = small_model()

    class OnlyWeightNorm:  # replace the task loss by 0.5 * ||W_0||^2: then SGD gives W <- W - lr W
        def on_loss(self, state):
            state.loss = (state.model[0].weight ** 2).sum() * 0.5

    w0, b0 = model[0].weight.data.copy(), model[2].bias.data.copy()
    fit(model, (X[:8], Y[:8]), epochs=1, optimizer=SGD(model.parameters(), lr=0.25), batch_size=8,
        callbacks=OnlyWeightNorm(), verbose=False)
    np.testing.assert_allclose(model[0].weight.data, 0.75 * w0, rtol=1e-6)
    np.testing.assert_array_equal(model[2].bias.data, b0)  # not in the replaced loss: no gradient, no change


def test_on_after_backward_can_edit_gradients_and_on_step_end_can_edit_weights():
    model = small_model()
    mask = np.zeros_like(model[0].weight.data)
    mask[:, :5] = 1

    class Masker:
        def on_after_backward(self, state):
            state.model[0].weight.grad *= mask

        def on_step_end(self, state):
            state.model[0].weight.data *= mask

    w0 = model[0].weight.data.copy()
    fit(model, (X, Y), epochs=2, batch_size=8, callbacks=[Masker()], verbose=False)
    assert np.all(model[0].weight.data[:, 5:] == 0)
    assert not np.allclose(model[0].weight.data[:, :5], w0[:, :5])


def test_stop_training_stops_after_the_current_step():
    model = small_model()

    class StopAtStep2:
        steps = 0

        def on_step_end(self, state):
            self.steps += 1
            state.stop_training = state.step == 2

    stopper = StopAtStep2()
    history = fit(model, (X, Y), epochs=5, batch_size=4, callbacks=[stopper], verbose=False)
    assert stopper.steps == 3 and len(history) == 1


def test_nan_loss_raises_naming_step_and_epoch_and_leaves_the_model_as_before_that_step():
    model = small_model(batchnorm=True)
    seen = {}

    class PoisonStep5:
        def on_step_begin(self, state):
            if state.step == 5:
                seen["weights"] = weights(state.model)

        def on_loss(self, state):
            if state.step == 5:
                state.loss = state.loss * float("nan")

    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 5") as info:
        fit(model, (X[:16], Y[:16]), epochs=3, batch_size=4, callbacks=[PoisonStep5()], verbose=False)
    assert isinstance(info.value, ValueError) and "nan" in str(info.value)
    after = weights(model)
    assert set(after) == set(seen["weights"]) and "1.running_mean" in after
    for k in after:  # weights AND BatchNorm's running statistics (changed by the forward) are restored
        np.testing.assert_array_equal(after[k], seen["weights"][k])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # inf * 0 in the matmul: the point
def test_inf_from_the_data_is_caught_too():
    model = small_model()
    Xbad = X[:8].copy()
    Xbad[3, 0] = np.inf
    with pytest.raises(NonFiniteLossError, match="epoch 0, step 0"):
        fit(model, (Xbad, Y[:8]), epochs=1, batch_size=8, verbose=False)


def test_history_loss_acc_and_val_acc_match_what_the_callbacks_saw():
    model = small_model()
    batches_seen = []

    class Watch:
        def on_loss(self, state):
            batches_seen.append((state.epoch, state.loss.item(), len(state.y),
                                 int((state.logits.data.argmax(1) == state.y).sum())))

        def on_epoch_end(self, state):
            batches_seen.append(("val", evaluate(state.model, (X_ALL[100:150], Y_ALL[100:150]))))

    history = fit(model, (X, Y), epochs=3, batch_size=16, callbacks=Watch(), val_data=(X_ALL[100:150],
                  Y_ALL[100:150]), verbose=False)
    assert history.epoch == [0, 1, 2] and len(history.time) == 3
    for e in range(3):
        rows = [b for b in batches_seen if b[0] == e]
        n = sum(r[2] for r in rows)
        assert math.isclose(history.loss[e], sum(r[1] * r[2] for r in rows) / n, rel_tol=1e-6)
        assert history.acc[e] == sum(r[3] for r in rows) / n
    assert history.val_acc == [b[1] for b in batches_seen if b[0] == "val"]
    assert set(history.as_dict()) == {"epoch", "loss", "acc", "val_acc", "lr", "time"}


def test_defaults_come_from_the_model_recipe_with_a_cosine_schedule():
    class Tiny(nn.Sequential):
        recipe = Recipe(epochs=4, lr=0.02, batch_size=20, weight_decay=0.0)

    mc.manual_seed(0)
    model = Tiny(nn.Linear(64, 10))
    steps = []
    history = fit(model, (X, Y), callbacks=[type("S", (), {"on_step_begin": lambda s, st: steps.append(st.step)})()],
                  verbose=False)
    assert len(history) == 4 and len(steps) == 4 * 2  # 40 rows / 20
    np.testing.assert_allclose(history.lr, [0.02 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    history = fit(model, (X, Y), epochs=2, optimizer=SGD(model.parameters(), lr=0.5), verbose=False)
    assert history.lr == [0.5, 0.5]  # a given optimizer: constant lr unless a scheduler is given


def test_label_smoothing_of_the_recipe_is_the_default_loss():
    logged = []

    class Log:
        def on_loss(self, state):
            logged.append((state.loss.item(), state.logits, state.y))

    class Smooth(nn.Sequential):
        recipe = Recipe(epochs=1, batch_size=40, label_smoothing=0.3)

    mc.manual_seed(0)
    fit(Smooth(nn.Linear(64, 10)), (X, Y), callbacks=[Log()], verbose=False)
    loss, logits, y = logged[0]
    z = logits.data.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    expected = np.mean(-(0.7 * logp[np.arange(len(y)), y] + 0.3 * logp.mean(1)))
    assert math.isclose(loss, expected, rel_tol=1e-5)


def test_progress_line_per_epoch_and_verbose_false_is_silent(capsys):
    model = small_model()
    fit(model, (X, Y), epochs=2, batch_size=16, val_data=(X, Y), verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2") and lines[1].startswith("epoch 2/2")
    for word in ("loss", "train acc", "val acc", "%", "s"):
        assert word in lines[1]
    fit(model, (X, Y), epochs=2, batch_size=16, verbose=False)
    assert capsys.readouterr().out == ""


def test_fit_is_deterministic_under_manual_seed():
    results = []
    for _ in range(2):
        model = small_model(batchnorm=True, seed=7)
        fit(model, (X, Y), epochs=2, batch_size=8, verbose=False)
        results.append(weights(model))
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k])


def test_fit_restores_the_mode_and_trains_batchnorm_in_train_mode():
    model = small_model(batchnorm=True).eval()
    modes = []
    fit(model, (X, Y), epochs=1, batch_size=8, verbose=False,
        callbacks=[type("M", (), {"on_loss": lambda s, st: modes.append(st.model[1].training)})()])
    assert all(modes) and not model.training and not model[1].training
    assert model[1].num_batches_tracked == 5  # the running statistics were updated once per batch


def test_modes_set_by_callbacks_survive_validation_and_are_restored_after_fit():
    model = small_model(batchnorm=True)
    seen = []

    class FreezeBatchNorm:
        def on_train_begin(self, state):
            state.model[1].eval()

        def on_loss(self, state):
            seen.append((state.model.training, state.model[1].training))

    fit(model, (X, Y), epochs=2, batch_size=20, val_data=(X, Y), callbacks=[FreezeBatchNorm()], verbose=False)
    assert seen == [(True, False)] * 4  # still frozen in epoch 2, after the validation of epoch 1
    assert model.training and model[1].training  # fit restores every module's own flag
    assert model[1].num_batches_tracked == 0
    model[1].eval()
    evaluate(model, (X, Y))
    assert model.training and not model[1].training  # so does evaluate


def test_regression_with_mse_has_no_accuracy():
    mc.manual_seed(0)
    model = nn.Linear(64, 1)
    target = (X @ np.linspace(-1, 1, 64, dtype=np.float32))[:, None]
    history = fit(model, (X, target), epochs=30, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9),
                  batch_size=10, loss_fn=F.mse_loss, verbose=False)
    assert history.acc == [None] * 30 and history.loss[-1] < 0.05 * history.loss[0]


def test_evaluate_is_argmax_accuracy_in_eval_mode_without_gradients():
    model = small_model(batchnorm=True)
    fit(model, (X, Y), epochs=2, batch_size=8, verbose=False)
    model.train()
    model.zero_grad()
    running = model[1].running_mean.copy()
    with mc.no_grad():
        model.eval()
        expected = np.mean(model(mc.Tensor(X_ALL[:300])).data.argmax(1) == Y_ALL[:300])
        model.train()
    assert evaluate(model, (X_ALL[:300], Y_ALL[:300])) == expected
    assert evaluate(model, (X_ALL[:300], Y_ALL[:300]), batch_size=7) == expected
    assert model.training  # mode restored
    np.testing.assert_array_equal(model[1].running_mean, running)  # eval mode: statistics untouched
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=2.0), ValueError, "epochs"),
    (dict(batch_size=-1), ValueError, "batch_size"),
    (dict(train_data=X), TypeError, "train_data"),
    (dict(train_data=(X, Y[:5])), ValueError, "train_data"),
    (dict(val_data=(X, Y[:3])), ValueError, "val_data"),
    (dict(callbacks=[object()]), TypeError, "callbacks"),
    (dict(loss_fn=lambda logits, y: logits), ValueError, "scalar"),
])
def test_fit_errors(kwargs, error, match):
    model = small_model()
    before = weights(model)
    args = dict(train_data=(X, Y), epochs=1, verbose=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit(model, args.pop("train_data"), **args)
    for k, v in weights(model).items():
        np.testing.assert_array_equal(v, before[k])


def test_evaluate_errors():
    model = small_model()
    with pytest.raises(ValueError, match="integer class labels"):
        evaluate(model, (X, Y.astype(np.float32)))
    with pytest.raises(ValueError, match="same"):
        evaluate(model, (X, Y[:3]))
    with pytest.raises(ValueError, match="logits"):
        evaluate(_Flat(), (X, Y))


class _Flat(nn.Module):
    def forward(self, x):
        return x.sum(axis=1)
