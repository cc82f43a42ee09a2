"""Pruner (masks through fit's callbacks, optimisers, AGP, pattern lock), criteria, group lasso."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicompress as mc
from minicompress import nn
from minicompress.nn import functional as F
from minicompress.prune import (GroupLasso, Pruner, agp_sparsity, make_schedule, snip_scores, sparsity_report,
                                taylor_scores, TaylorAccumulator)
from tests.strategies import seeds


def small_mlp(seed=0, bn=False):
    mc.manual_seed(seed)
    layers = [nn.Linear(16, 32)] + ([nn.BatchNorm1d(32)] if bn else []) + [nn.ReLU(), nn.Linear(32, 8), nn.ReLU(),
                                                                          nn.Linear(8, 4)]
    return nn.Sequential(*layers)


def toy_data(seed=0, n=96):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 16)).astype(np.float32)
    y = (X[:, :4].argmax(axis=1)).astype(np.int64)
    return X, y


def weights(model):
    return {n: m.weight.data.copy() for n, m in model.named_modules() if isinstance(m, nn.Linear)}


class Recorder:
    """A callback placed after the Pruner: checks every step that pruned weights are 0."""

    def __init__(self, pruner):
        self.pruner, self.steps, self.grads_checked, self.revived = pruner, [], 0, 0

    def on_after_backward(self, state):
        for name, layer in self.pruner.layers.items():
            assert np.all(layer.weight.grad[~self.pruner.masks[name]] == 0)
        self.grads_checked += 1

    def on_step_end(self, state):
        row = {}
        previous = getattr(self, "previous", None)
        if previous is not None:  # once pruned, always pruned
            assert all(np.all(self.pruner.masks[n] <= previous[n]) for n in previous)
        self.previous = {n: m.copy() for n, m in self.pruner.masks.items()}
        for name, layer in self.pruner.layers.items():
            pruned = ~self.pruner.masks[name]
            self.revived += int(np.count_nonzero(layer.weight.data[pruned]))
            row[name] = pruned.sum() / pruned.size
        self.steps.append((state.step, row))


def sgd(model):
    return mc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def adam(model):
    return mc.optim.Adam(model.parameters(), lr=0.01)


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.7), ("4x1", 0.5), ("1x4", 0.25),
                                              ("channel", 0.5), ("2:4", None)])
def test_one_shot_exact_sparsity_per_layer_and_report(pattern, sparsity):
    model = small_mlp()
    before = weights(model)
    pruner = Pruner(model, sparsity, pattern).prune()
    target = 0.5 if sparsity is None else sparsity
    for row in pruner.report()[:-1]:
        w = model.get_submodule(row["layer"]).weight.data
        assert row["zeros"] == w.size - np.count_nonzero(w)  # independent count
        n_groups = {"unstructured": w.size, "4x1": w.size // 4, "1x4": w.size // 4, "channel": w.shape[0],
                    "2:4": w.size // 4}[pattern]
        if pattern == "2:4":
            assert row["zeros"] == 2 * n_groups
        else:
            assert row["zeros"] == round(target * n_groups) * (w.size // n_groups)
        kept = pruner.masks[row["layer"]]
        assert np.array_equal(w[kept], before[row["layer"]][kept])  # kept weights untouched
    overall = pruner.report()[-1]
    assert overall["zeros"] == sum(r["zeros"] for r in pruner.report()[:-1])
    assert [r["zeros"] for r in sparsity_report(model)] == [r["zeros"] for r in pruner.report()]
    assert "overall" in pruner.format_report()


@pytest.mark.parametrize("make_optimizer", [sgd, adam])
def test_masks_survive_momentum_and_adam(make_optimizer):
    model = small_mlp(1)
    X, y = toy_data(1)
    optimizer = make_optimizer(model)
    mc.manual_seed(2)
    mc.train.fit(model, (X, y), epochs=2, optimizer=optimizer, batch_size=16, verbose=False)  # momentum exists
    pruner = Pruner(model, 0.7)
    recorder = Recorder(pruner)
    mc.train.fit(model, (X, y), epochs=2, optimizer=optimizer, batch_size=16, verbose=False,
                 callbacks=[pruner, recorder])
    assert recorder.revived == 0 and recorder.grads_checked == len(recorder.steps) == 12
    masks = {n: m.copy() for n, m in pruner.masks.items()}
    for name, layer in pruner.layers.items():
        assert np.array_equal(layer.weight.data != 0, masks[name])


class GradientMaskOnly(Pruner):
    def on_step_end(self, state):  # a broken pruner: no re-application after the step
        pass


def test_without_reapplying_adam_revives_pruned_weights():
    """Control for the test above: masking gradients alone is not enough once Adam has momentum."""
    model = small_mlp(1)
    X, y = toy_data(1)
    optimizer = adam(model)
    mc.manual_seed(2)
    mc.train.fit(model, (X, y), epochs=2, optimizer=optimizer, batch_size=16, verbose=False)
    pruner = GradientMaskOnly(model, 0.7)
    pruner.prune()
    mc.train.fit(model, (X, y), epochs=1, optimizer=optimizer, batch_size=16, verbose=False, callbacks=[pruner])
    revived = sum(np.count_nonzero(layer.weight.data[~pruner.masks[n]]) for n, layer in pruner.layers.items())
    assert revived > 0


def test_agp_pruner_follows_the_schedule_step_by_step():
    model = small_mlp(3)
    X, y = toy_data(3)
    pruner = Pruner(model, 0.8, schedule=make_schedule("agp", begin_step=2, end_step=14, frequency=3))
    recorder = Recorder(pruner)
    mc.train.fit(model, (X, y), epochs=3, optimizer=sgd(model), batch_size=16, verbose=False,
                 callbacks=[pruner, recorder])
    assert len(recorder.steps) == 18
    for step, row in recorder.steps:
        for name, achieved in row.items():
            n = model.get_submodule(name).weight.data.size
            assert achieved == round(agp_sparsity(step, 2, 14, 0.0, 0.8, 3) * n) / n
    assert recorder.revived == 0


def test_global_scope_and_per_layer_targets():
    model = small_mlp(4)
    pruner = Pruner(model, 0.6, scope="global").prune()
    total = sum(m.weight.data.size for m in pruner.layers.values())
    assert pruner.report()[-1]["zeros"] == round(0.6 * total)
    all_w = np.concatenate([np.abs(weights(small_mlp(4))[n]).ravel() for n in pruner.layers])
    kept = np.concatenate([np.abs(m.weight.data).ravel() for m in pruner.layers.values()])
    assert np.sort(all_w)[round(0.6 * total):].min() == kept[kept > 0].min()  # one threshold
    model = small_mlp(4)
    pruner = Pruner(model, {"0": 0.5, "4": 0.25}).prune()
    assert set(pruner.layers) == {"0", "4"}
    assert pruner.report()[0]["sparsity"] == 0.5 and pruner.report()[1]["sparsity"] == 0.25
    assert np.count_nonzero(model.get_submodule("2").weight.data) == 32 * 8


def test_pattern_lock_keeps_zeros_and_trains_the_rest():
    model = small_mlp(5)
    X, y = toy_data(5)
    rng = np.random.default_rng(0)
    for layer in (model.get_submodule("0"), model.get_submodule("2")):
        layer.weight.data[rng.random(layer.weight.shape) < 0.5] = 0
    zeros_before = {n: w == 0 for n, w in weights(model).items()}
    before = weights(model)
    pruner = Pruner.lock_pattern(model)
    mc.train.fit(model, (X, y), epochs=2, optimizer=adam(model), batch_size=16, verbose=False, callbacks=[pruner])
    for name, w in weights(model).items():
        assert np.array_equal(w == 0, zeros_before[name])
        assert not np.allclose(w, before[name])  # the kept weights did train


def test_channel_lock_keeps_dead_channels_dead():
    model = small_mlp(11, bn=True)
    X, y = toy_data(11)
    lin, bn = model.get_submodule("0"), model.get_submodule("1")
    for arr in (lin.weight.data, lin.bias.data, bn.weight.data, bn.bias.data):
        arr[:5] = 0
    lin.weight.data[5] = 0  # only the filter: BatchNorm still gives this channel a value, it is alive
    pruner = Pruner.lock_pattern(model, layers=["0"], pattern="channel")
    assert pruner.masks["0"].all(axis=1).tolist() == [False] * 5 + [True] * 27
    mc.train.fit(model, (X, y), epochs=2, optimizer=adam(model), batch_size=16, verbose=False, callbacks=[pruner])
    for arr in (lin.weight.data, lin.bias.data, bn.weight.data, bn.bias.data):
        assert np.all(arr[:5] == 0) and np.all(arr[6:] != 0)
    with pytest.raises(ValueError, match="lock_pattern"):
        Pruner.lock_pattern(model, pattern="2:4")


def test_channel_pattern_masks_bias_and_following_batchnorm():
    model = small_mlp(6, bn=True)
    X, y = toy_data(6)
    pruner = Pruner(model, 0.5, "channel", layers=["0"])
    mc.train.fit(model, (X, y), epochs=1, optimizer=adam(model), batch_size=16, verbose=False, callbacks=[pruner])
    keep = pruner.masks["0"].all(axis=1)
    assert keep.sum() == 16
    lin, bn = model.get_submodule("0"), model.get_submodule("1")
    for arr in (lin.bias.data, bn.weight.data, bn.bias.data):
        assert np.all(arr[~keep] == 0) and np.all(arr[keep] != 0)
    model.eval()
    hidden = model[1](model[0](mc.Tensor(X))).data  # after the BatchNorm
    assert np.all(hidden[:, ~keep] == 0)


def test_pruner_bad_input_names_the_layer():
    model = small_mlp(bn=True)
    with pytest.raises(TypeError, match=r"'1' is a BatchNorm1d"):
        Pruner(model, 0.5, layers=["1"])
    with pytest.raises(ValueError, match=r"no layer named 'fc9'"):
        Pruner(model, 0.5, layers=["fc9"])
    with pytest.raises(ValueError, match=r"layer '5' weight of shape \(4, 8\).*'8x1'"):
        Pruner(model, 0.5, "8x1")
    with pytest.raises(ValueError, match=r"sparsity of layer '0' must be in \[0, 1\)"):
        Pruner(model, 1.0)
    with pytest.raises(ValueError, match="fixes the sparsity"):
        Pruner(model, None, "2:4", schedule=make_schedule("agp", end_step=5))
    with pytest.raises(ValueError, match="scope"):
        Pruner(model, 0.5, scope="model")


# ---- criteria -------------------------------------------------------------------------------------


def finite_difference_grad(model, layer, X, y, eps=1e-6):
    w = layer.weight.data
    grad = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        old = w[idx]
        w[idx] = old + eps
        up = float(F.cross_entropy(model(mc.Tensor(X)), y).data)
        w[idx] = old - eps
        down = float(F.cross_entropy(model(mc.Tensor(X)), y).data)
        w[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def tiny_double_model(seed):
    mc.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    return model.double()


@settings(max_examples=5)
@given(seeds())
def test_taylor_and_snip_against_finite_differences(seed):
    model = tiny_double_model(seed % 1000)
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    scores = taylor_scores(model, (X, y), batch_size=3)
    for name in ("0", "2"):
        layer = model.get_submodule(name)
        expected = sum(np.abs(layer.weight.data * finite_difference_grad(model, layer, X[i:i + 3], y[i:i + 3]))
                       for i in (0, 3))
        np.testing.assert_allclose(scores[name], expected, rtol=1e-5, atol=1e-9)
        assert layer.weight.grad is None  # the model's gradients were left alone
    snip = snip_scores(model, X, y)
    raw = {n: np.abs(model.get_submodule(n).weight.data * finite_difference_grad(model, model.get_submodule(n), X, y))
           for n in ("0", "2")}
    total = sum(r.sum() for r in raw.values())
    for name in raw:
        np.testing.assert_allclose(snip[name], raw[name] / total, rtol=1e-5, atol=1e-9)


def test_taylor_accumulator_equals_taylor_scores_on_full_batches():
    model = small_mlp(7)
    X, y = toy_data(7, n=32)
    acc = TaylorAccumulator(model)
    mc.train.fit(model, (X, y), epochs=2, optimizer=mc.optim.SGD(model.parameters(), lr=0.0), batch_size=32,
                 loss_fn=F.cross_entropy, verbose=False, callbacks=[acc])
    expected = taylor_scores(model, (X, y), batch_size=32)
    assert acc.batches == 2
    for name in expected:
        np.testing.assert_allclose(acc.scores[name], 2 * expected[name], rtol=1e-5, atol=1e-10)


def test_pruner_with_a_taylor_criterion():
    model = small_mlp(8)
    X, y = toy_data(8)
    scores = taylor_scores(model, (X, y))
    pruner = Pruner(model, 0.5, "channel", criterion=lambda m, names: taylor_scores(m, (X, y), layers=names))
    pruner.prune()
    for name, s in scores.items():
        filter_scores = s.sum(axis=1)
        keep = pruner.masks[name].all(axis=1)
        assert filter_scores[keep].min() >= filter_scores[~keep].max()


# ---- group lasso ----------------------------------------------------------------------------------


def test_group_lasso_penalty_value_and_gradient():
    model = small_mlp(9, bn=True).double()
    lasso = GroupLasso(model, 0.3, "channel")
    lin, bn = model.get_submodule("0"), model.get_submodule("1")
    lin.weight.data[3] = 0
    lin.bias.data[3] = 0
    bn.weight.data[3] = 0
    bn.bias.data[3] = 0  # a zero group: gradient 0 there, not NaN
    expected = 0.0
    for name in ("0", "3", "5"):
        layer = model.get_submodule(name)
        rows = [layer.weight.data.reshape(layer.weight.shape[0], -1), layer.bias.data[:, None]]
        if name == "0":
            rows += [bn.weight.data[:, None], bn.bias.data[:, None]]
        expected += np.sqrt((np.concatenate(rows, axis=1) ** 2).sum(axis=1)).sum()
    penalty = lasso.penalty()
    assert float(penalty.data) == pytest.approx(0.3 * expected, rel=1e-12)
    penalty.backward()
    norms = np.sqrt((lin.weight.data ** 2).sum(1) + lin.bias.data ** 2 + bn.weight.data ** 2 + bn.bias.data ** 2)
    safe = np.where(norms > 0, norms, 1)
    np.testing.assert_allclose(lin.weight.grad, 0.3 * lin.weight.data / safe[:, None], rtol=1e-12)
    np.testing.assert_allclose(bn.bias.grad, 0.3 * bn.bias.data / safe, rtol=1e-12)
    assert np.all(lin.weight.grad[3] == 0)


def test_group_lasso_block_gradient_matches_central_differences():
    mc.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6)).double()
    lasso = GroupLasso(model, 0.7, "2x2")
    w = model.get_submodule("0").weight
    lasso.penalty().backward()
    numeric = np.zeros_like(w.data)
    for idx in np.ndindex(w.shape):
        old = w.data[idx]
        w.data[idx] = old + 1e-6
        up = float(lasso.penalty().data)
        w.data[idx] = old - 1e-6
        down = float(lasso.penalty().data)
        w.data[idx] = old
        numeric[idx] = (up - down) / 2e-6
    np.testing.assert_allclose(w.grad, numeric, rtol=1e-6, atol=1e-9)


@given(st.floats(0.01, 2.0), st.floats(0.01, 1.0), seeds())
def test_proximal_step_is_the_group_soft_threshold(strength, lr, seed):
    mc.manual_seed(seed % 10000)
    model = nn.Sequential(nn.Linear(3, 5, bias=False)).double()
    w = model.get_submodule("0").weight
    w.data *= np.random.default_rng(seed).uniform(0, 3, size=(5, 1))
    before = w.data.copy()
    GroupLasso(model, strength, "channel").proximal_step(lr)
    for row in range(5):
        norm = np.linalg.norm(before[row])
        factor = max(0.0, 1 - lr * strength / norm)
        np.testing.assert_allclose(w.data[row], factor * before[row], rtol=1e-12, atol=1e-15)
        if norm <= lr * strength:
            assert np.all(w.data[row] == 0)


@given(st.floats(0.0, 2.0), seeds())
def test_group_soft_threshold_gives_the_bits_of_the_proximal_step(threshold, seed):
    # mc.prune.group_soft_threshold (exercise 6's reference) is the step GroupLasso.proximal_step takes
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(4, 6, bias=False))
    w = model.get_submodule("0").weight
    w.data[...] = (rng.standard_normal((6, 4)) * rng.uniform(0, 2, (6, 1))).astype(np.float32)
    expected = mc.prune.group_soft_threshold(w.data.copy(), threshold)
    GroupLasso(model, threshold, "channel").proximal_step(1.0)
    assert expected.dtype == np.float32
    np.testing.assert_array_equal(w.data, expected)


def test_group_lasso_training_zeroes_whole_channels():
    model = small_mlp(10, bn=True)
    X, y = toy_data(10, n=192)
    lasso = GroupLasso(model, 0.06, "channel", layers=["0"])
    losses = []

    class Watch:
        def on_loss(self, state):
            plain = float(F.cross_entropy(state.logits, state.y).data)
            losses.append(float(state.loss.data) - plain - float(lasso.penalty().data))

    mc.train.fit(model, (X, y), epochs=40, optimizer=mc.optim.SGD(model.parameters(), lr=0.2), batch_size=32,
                 loss_fn=F.cross_entropy, verbose=False, callbacks=[lasso, Watch()])
    zero = lasso.zero_groups()["0"]
    assert 0.3 <= zero.mean() < 1 and lasso.zero_fraction() == zero.mean()
    assert mc.train.evaluate(model, (X, y)) > 0.8
    assert np.all(model.get_submodule("0").weight.data[zero] == 0)
    assert np.all(model.get_submodule("1").bias.data[zero] == 0)
    assert len(losses) == 240 and max(abs(v) for v in losses) < 1e-5  # the loss shown is the full objective
    with pytest.raises(ValueError, match="strength"):
        GroupLasso(model, -1.0)
    with pytest.raises(ValueError, match="pattern"):
        GroupLasso(model, 0.1, "2:4")


def test_group_soft_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="threshold must be finite and >= 0"):
        mc.prune.group_soft_threshold(np.ones((2, 3), np.float32), -0.1)
    with pytest.raises(ValueError, match="must be 2-D"):
        mc.prune.group_soft_threshold(np.ones(3, np.float32), 0.1)
