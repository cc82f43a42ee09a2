"""QAT: prepare_qat / ConvBn2d folding / freeze of BN statistics / convert of a QAT model, and the 4-bit bar."""
import numpy as np
import pytest

import minicompress as mc
from minicompress.core.gradcheck import gradcheck
from minicompress.train import Recipe

quant = mc.quant


def make_conv_bn(seed=0):
    mc.manual_seed(seed)
    conv, bn = mc.nn.Conv2d(2, 3, 3, padding=1), mc.nn.BatchNorm2d(3)
    bn.running_mean = mc.core.rng().standard_normal(3).astype(np.float32)
    bn.running_var = mc.core.rng().uniform(0.5, 2.0, 3).astype(np.float32)
    bn.weight.data = mc.core.rng().uniform(0.5, 1.5, 3).astype(np.float32)
    bn.bias.data = mc.core.rng().standard_normal(3).astype(np.float32)
    return conv, bn


def test_conv_bn_frozen_equals_the_folded_conv_and_training_equals_conv_then_bn():
    conv, bn = make_conv_bn()
    x = mc.Tensor(mc.core.rng().standard_normal((4, 2, 5, 5)))
    cb = quant.ConvBn2d(conv, bn).eval()
    folded = quant.fold_bn_into_conv(conv, bn)
    np.testing.assert_allclose(cb(x).data, folded(x).data, rtol=1e-4, atol=1e-5)
    # training, BN live: the conv output is un-scaled before a training-mode BN (batch statistics)
    cb.train()
    mean_before = bn.running_mean.copy()
    y = cb(x)
    ref_bn = mc.nn.BatchNorm2d(3)
    ref_bn.weight.data, ref_bn.bias.data = bn.weight.data.copy(), bn.bias.data.copy()
    ref_bn.running_mean, ref_bn.running_var = mean_before.copy(), bn.running_var.copy()
    ref_bn.train()
    np.testing.assert_allclose(y.data, ref_bn(conv(x)).data, rtol=1e-3, atol=1e-4)
    assert not np.allclose(bn.running_mean, mean_before)          # statistics moved


def test_freeze_bn_after_a_chosen_step():
    conv, bn = make_conv_bn(1)
    cb = quant.ConvBn2d(conv, bn, freeze_bn_step=2).train()
    x = mc.Tensor(mc.core.rng().standard_normal((4, 2, 5, 5)))
    cb(x)
    assert not cb.bn_frozen
    cb(x)
    assert cb.bn_frozen
    frozen_mean = bn.running_mean.copy()
    y = cb(x)                                                      # frozen: the folded graph, stats fixed
    np.testing.assert_array_equal(bn.running_mean, frozen_mean)
    np.testing.assert_allclose(y.data, quant.fold_bn_into_conv(conv, bn)(x).data, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_conv_bn_gradients(training):
    conv, bn = make_conv_bn(2)
    cb = quant.ConvBn2d(conv, bn).double().train(training)
    x = mc.Tensor(mc.core.rng().standard_normal((2, 2, 4, 4)), dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda t: cb(t), [x])
    cb.zero_grad()
    cb(x).sum().backward()
    assert conv.weight.grad is not None and bn.weight.grad is not None


def test_qat_mlp_4bit_and_integer_convert(pretrained_model, digits):
    X_train, y_train, X_test, y_test = digits
    model = pretrained_model("mlp")
    mc.manual_seed(0)
    qat = quant.prepare_qat(model, quant.int4_qat_qconfig)
    assert qat.training and any(isinstance(m, quant.FakeQuantize) for m in qat.modules())
    mc.train.fit(qat, (X_train, y_train), recipe=Recipe(epochs=2, lr=1e-3, weight_decay=0.0), verbose=False)
    qmodel = quant.convert(qat)
    base = mc.train.evaluate(model, (X_test, y_test))
    qat.apply(quant.disable_observer)         # evaluating must not move the moving-average ranges
    fake = mc.train.evaluate(qat.eval(), (X_test, y_test))
    acc = mc.train.evaluate(qmodel, (X_test, y_test))
    assert base - acc <= 0.01                                      # the 4-bit QAT bar: within 1.0 point
    assert abs(acc - fake) <= 1 / len(y_test) + 1e-9               # integer == fake-quantized (one sample at most)
    observers = [m for m in qat.modules() if isinstance(m, quant.FakeQuantize)]
    assert observers and all(not m.observer_enabled[0] for m in observers)
    assert "qint4 per_channel_symmetric" in repr(qmodel)


def test_qat_cnn_convert_uses_the_folded_weights(pretrained_model, digits):
    X_train, y_train, X_test, _ = digits
    model = pretrained_model("cnn")
    qat = quant.prepare_qat(model, quant.default_qat_qconfig, freeze_bn_step=3)
    assert type(qat[1].module).__name__ == "ConvBn2d" and type(qat[2]).__name__ == "Identity"
    mc.train.fit(qat, (X_train[:256], y_train[:256]), recipe=Recipe(epochs=1, lr=1e-4, weight_decay=0.0),
                 verbose=False)
    assert qat[1].module.bn_frozen
    qmodel = quant.convert(qat)
    sim = quant.simulate(qat)
    yq, ys = qmodel(mc.Tensor(X_test)).data, sim(mc.Tensor(X_test)).data
    step = qmodel[9].out_qp.scale
    assert np.mean(np.abs(yq - ys) <= step * (1 + 1e-4)) > 0.99


def test_lsq_qat_trains_and_converts(pretrained_model, digits):
    X_train, y_train, X_test, y_test = digits
    model = pretrained_model("mlp")
    qat = quant.prepare_qat(model, quant.lsq_qconfig(4))
    before = [m.scale.data.copy() for m in qat.modules() if isinstance(m, quant.LearnableFakeQuantize)]
    mc.train.fit(qat, (X_train[:512], y_train[:512]), recipe=Recipe(epochs=1, lr=1e-3, weight_decay=0.0),
                 verbose=False)
    after = [m.scale.data for m in qat.modules() if isinstance(m, quant.LearnableFakeQuantize)]
    assert len(after) > 0 and any(not np.array_equal(a, b) for a, b in zip(before, after))   # steps learned
    qmodel = quant.convert(qat)
    assert mc.train.evaluate(qmodel, (X_test, y_test)) > 0.9


def test_prepare_qat_errors(pretrained_model):
    with pytest.raises(TypeError, match="qconfig must be a QConfig"):
        quant.prepare_qat(pretrained_model("mlp"), None)
