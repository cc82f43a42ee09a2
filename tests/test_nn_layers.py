"""nn layers: PyTorch's state_dict names and shapes (key lists written from PyTorch's documentation),
default initialisation (statistical range checks), train/eval behaviour of BatchNorm and Dropout, the
running-statistics update, forward/backward against NumPy formulas, and error messages naming the layer."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
import minicompress.nn as nn
import minicompress.nn.functional as F
from minicompress.core.gradcheck import gradcheck
from tests.strategies import seeds
from tests.test_nn_conv_pool import ref_conv2d, ref_conv2d_backward, ref_pool, ref_pool_backward


def T(a):
    return mc.Tensor(np.array(a, dtype=np.float64), dtype=np.float64, requires_grad=True)


def shapes_of(module):
    return {k: v.shape for k, v in module.state_dict().items()}


# ---- state_dict names and shapes (as torch.nn) ---------------------------------------------------------

def test_state_dict_keys_and_shapes_match_pytorch():
    assert shapes_of(nn.Conv2d(3, 8, 5)) == {"weight": (8, 3, 5, 5), "bias": (8,)}
    assert shapes_of(nn.Conv2d(3, 8, (2, 3), bias=False)) == {"weight": (8, 3, 2, 3)}
    assert shapes_of(nn.BatchNorm2d(6)) == {"weight": (6,), "bias": (6,), "running_mean": (6,), "running_var": (6,),
                                            "num_batches_tracked": ()}
    assert shapes_of(nn.BatchNorm1d(4, affine=False)) == {"running_mean": (4,), "running_var": (4,),
                                                          "num_batches_tracked": ()}
    assert shapes_of(nn.BatchNorm1d(4, track_running_stats=False)) == {"weight": (4,), "bias": (4,)}
    assert shapes_of(nn.LayerNorm((3, 4))) == {"weight": (3, 4), "bias": (3, 4)}
    assert shapes_of(nn.LayerNorm(5, bias=False)) == {"weight": (5,)}
    assert shapes_of(nn.LayerNorm(5, elementwise_affine=False)) == {}
    assert shapes_of(nn.Embedding(10, 3)) == {"weight": (10, 3)}
    assert shapes_of(nn.CrossEntropyLoss(weight=np.ones(4))) == {"weight": (4,)}
    assert shapes_of(nn.CrossEntropyLoss()) == {}
    for layer in (nn.ReLU(), nn.GELU(), nn.SiLU(), nn.Sigmoid(), nn.Tanh(), nn.ELU(), nn.Hardtanh(), nn.Softmax(1),
                  nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(), nn.Unflatten(1, (2, 2)), nn.Dropout(), nn.Identity(),
                  nn.MSELoss(), nn.KLDivLoss()):
        assert layer.state_dict() == {} and list(layer.parameters()) == []
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(72, 10))
    assert list(cnn.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                      "1.num_batches_tracked", "5.weight", "5.bias"]
    assert cnn.state_dict()["1.num_batches_tracked"].dtype == np.int64
    assert [n for n, _ in cnn.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]


def test_state_dict_round_trip_restores_running_stats():
    mc.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    bn(mc.Tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2))))
    fresh = nn.BatchNorm2d(3)
    fresh.load_state_dict(bn.state_dict())
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
    assert int(fresh.num_batches_tracked) == 1


# ---- default initialisation ----------------------------------------------------------------------------

def test_conv2d_default_init_is_uniform_within_one_over_sqrt_fan_in():
    mc.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    for p in (conv.weight.data, conv.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
    w = conv.weight.data
    assert np.abs(w).max() > 0.98 * bound  # fills the range (4608 draws)
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.05)  # std of U(-b, b)
    assert abs(w.mean()) < 4 * bound / math.sqrt(3) / math.sqrt(w.size)
    mc.manual_seed(0)
    np.testing.assert_array_equal(nn.Conv2d(16, 32, 3).weight.data, w)  # manual_seed repeats the init


def test_norm_and_embedding_default_init():
    bn, ln = nn.BatchNorm1d(5), nn.LayerNorm(5)
    for layer in (bn, ln):
        np.testing.assert_array_equal(layer.weight.data, 1)
        np.testing.assert_array_equal(layer.bias.data, 0)
    np.testing.assert_array_equal(bn.running_mean, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    mc.manual_seed(1)
    emb = nn.Embedding(400, 50, padding_idx=3)
    w = np.delete(emb.weight.data, 3, axis=0)
    assert abs(w.mean()) < 4 / math.sqrt(w.size) and abs(w.std() - 1) < 0.02  # N(0, 1)
    np.testing.assert_array_equal(emb.weight.data[3], 0)


# ---- Conv2d ---------------------------------------------------------------------------------------------

@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), seeds())
def test_conv2d_layer_matches_direct_convolution(cin, cout, k, stride, padding, seed):
    mc.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding).double()
    x = np.random.default_rng(seed).standard_normal((2, cin, 5, 4))
    xt = T(x)
    y = conv(xt)
    w, b = conv.weight.data, conv.bias.data
    np.testing.assert_allclose(y.data, ref_conv2d(x, w, b, (stride,) * 2, (padding,) * 2, (1, 1)), rtol=1e-10)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape)
    y.backward(g)
    dx, dw, db = ref_conv2d_backward(x, w, g, (stride,) * 2, (padding,) * 2, (1, 1))
    np.testing.assert_allclose(xt.grad, dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, dw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, db, rtol=1e-10, atol=1e-12)


def test_conv2d_layer_errors_name_the_layer_and_shapes():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4, kernel_size=\(3, 3\).*\(N, C, H, W\).*\(2, 27\)"):
        conv(mc.Tensor(np.zeros((2, 27))))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*input has 1 channels.*in_channels=3"):
        conv(mc.Tensor(np.zeros((2, 1, 8, 8))))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv(mc.Tensor(np.zeros((2, 3, 2, 2))))
    with pytest.raises(ValueError, match="groups=1"):
        nn.Conv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(4, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        nn.Conv2d(0, 4, 3)
    assert repr(nn.Conv2d(1, 8, 3, padding=1, bias=False)) == \
        "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"


# ---- BatchNorm ------------------------------------------------------------------------------------------

@given(st.sampled_from([(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)), (nn.BatchNorm2d, (3, 3, 2, 4))]),
       seeds(), st.sampled_from([0.1, 0.5, None]))
def test_batchnorm_running_stats_follow_the_update_formula(case, seed, momentum):
    cls, shape = case
    r = np.random.default_rng(seed)
    bn = cls(3, momentum=momentum)
    axes = (0,) + tuple(range(2, len(shape)))
    mean, var = np.zeros(3), np.ones(3)
    batch_means = []
    for step in range(1, 4):
        x = (r.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        y = bn(mc.Tensor(x))
        mu, v = x.astype(np.float64).mean(axis=axes), x.astype(np.float64).var(axis=axes)
        n = x.size // 3
        m = 1.0 / step if momentum is None else momentum  # None: cumulative average (PyTorch)
        mean = (1 - m) * mean + m * mu
        var = (1 - m) * var + m * v * n / (n - 1)
        batch_means.append(mu)
        bshape = (1, 3) + (1,) * (len(shape) - 2)
        np.testing.assert_allclose(y.data, (x - mu.reshape(bshape)) / np.sqrt(v.reshape(bshape) + 1e-5), rtol=1e-4,
                                   atol=1e-4)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-5)
    if momentum is None:
        np.testing.assert_allclose(bn.running_mean, np.mean(batch_means, axis=0), rtol=1e-5, atol=1e-5)
    assert int(bn.num_batches_tracked) == 3


def test_batchnorm_eval_uses_running_stats_and_does_not_update():
    r = np.random.default_rng(0)
    bn = nn.BatchNorm2d(2)
    bn.running_mean[...] = [1.0, -2.0]
    bn.running_var[...] = [4.0, 0.25]
    bn.weight.data[...] = [2.0, 3.0]
    bn.bias.data[...] = [0.5, -0.5]
    bn.eval()
    x = r.standard_normal((3, 2, 2, 2)).astype(np.float32)
    y = bn(mc.Tensor(x))
    g = np.array([2.0, 3.0]).reshape(1, 2, 1, 1)
    expected = (x - np.array([1.0, -2.0]).reshape(1, 2, 1, 1)) / np.sqrt(
        np.array([4.0, 0.25]).reshape(1, 2, 1, 1) + 1e-5) * g + np.array([0.5, -0.5]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(y.data, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.running_mean, [1.0, -2.0])
    assert int(bn.num_batches_tracked) == 0
    bn.train()
    bn(mc.Tensor(x))
    assert not np.allclose(bn.running_mean, [1.0, -2.0]) and int(bn.num_batches_tracked) == 1


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    bn = nn.BatchNorm1d(3, track_running_stats=False, affine=False).eval()
    np.testing.assert_allclose(bn(mc.Tensor(x)).data, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_layer_gradcheck(training):
    bn = nn.BatchNorm2d(2).double()
    bn.weight.data[...] = [1.5, -0.5]
    bn.running_var[...] = [2.0, 0.5]
    bn.train(training)
    x = np.random.default_rng(2).standard_normal((3, 2, 2, 2))
    assert gradcheck(lambda t, w, b: F.batch_norm(t, None if training else bn.running_mean,
                                                  None if training else bn.running_var, w, b, training),
                     [T(x), bn.weight, bn.bias])
    bn(T(x)).sum().backward()
    assert bn.weight.grad.shape == (2,) and bn.bias.grad.shape == (2,)


def test_batchnorm_bad_input_names_the_layer_and_changes_nothing():
    bn = nn.BatchNorm2d(3)
    before = bn.state_dict()
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3.*\(N, C, H, W\), got shape \(4, 3\)"):
        bn(mc.Tensor(np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3.*input has 2 channels.*num_features=3"):
        bn(mc.Tensor(np.zeros((4, 2, 2, 2))))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(mc.Tensor(np.zeros((1, 3, 1, 1))))
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match=r"BatchNorm1d\(2.*\(N, C\) or \(N, C, L\)"):
        nn.BatchNorm1d(2)(mc.Tensor(np.zeros((2, 2, 2, 2))))


# ---- LayerNorm, Dropout, Embedding ----------------------------------------------------------------------

def test_layernorm_layer_forward_backward_and_errors():
    r = np.random.default_rng(4)
    ln = nn.LayerNorm((2, 3)).double()
    ln.weight.data[...] = r.standard_normal((2, 3))
    ln.bias.data[...] = r.standard_normal((2, 3))
    x = r.standard_normal((4, 2, 3))
    mu = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(ln(T(x)).data, (x - mu) / np.sqrt(var + 1e-5) * ln.weight.data + ln.bias.data,
                               rtol=1e-10)
    assert gradcheck(lambda t: ln(t), [T(x)], atol=1e-4)
    with pytest.raises(ValueError, match=r"LayerNorm\(\(2, 3\).*\(4, 3, 2\)"):
        ln(T(x.reshape(4, 3, 2)))


def test_dropout_layer_train_and_eval():
    mc.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = mc.Tensor(np.ones((100, 100), dtype=np.float32))
    y = drop(x)
    assert 0.2 < (y.data == 0).mean() < 0.3
    np.testing.assert_allclose(y.data[y.data != 0], 1 / 0.75, rtol=1e-6)
    drop.eval()
    np.testing.assert_array_equal(drop(x).data, x.data)
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.2)
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1, inplace=False)"


def test_embedding_layer():
    emb = nn.Embedding(5, 2, padding_idx=0)
    idx = np.array([[0, 4], [4, 2]])
    y = emb(idx)
    np.testing.assert_array_equal(y.data, emb.weight.data[idx])
    y.backward(np.ones((2, 2, 2), dtype=np.float32))
    np.testing.assert_array_equal(emb.weight.grad, [[0, 0], [0, 0], [1, 1], [0, 0], [2, 2]])
    with pytest.raises(TypeError, match="integer"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"Embedding\(5, 2.*index 5 is out of range"):
        emb(np.array([5]))
    pre = nn.Embedding.from_pretrained(np.arange(6.0).reshape(3, 2))
    assert not pre.weight.requires_grad
    np.testing.assert_array_equal(pre(np.array([2])).data, [[4.0, 5.0]])


# ---- activations, shapes, losses as layers --------------------------------------------------------------

def test_activation_layers_apply_their_functional_op():
    x = mc.Tensor(np.linspace(-3, 3, 13).reshape(1, 13))
    pairs = [(nn.ReLU(), F.relu(x)), (nn.GELU(), F.gelu(x)), (nn.GELU("tanh"), F.gelu(x, "tanh")),
             (nn.SiLU(), F.silu(x)), (nn.Sigmoid(), F.sigmoid(x)), (nn.Tanh(), F.tanh(x)),
             (nn.ELU(0.5), F.elu(x, 0.5)), (nn.Hardtanh(-2, 2), F.hardtanh(x, -2, 2)), (nn.ReLU6(), F.relu6(x)),
             (nn.LeakyReLU(0.1), F.leaky_relu(x, 0.1)), (nn.Softmax(dim=1), F.softmax(x, dim=1)),
             (nn.LogSoftmax(dim=1), F.log_softmax(x, dim=1))]
    for layer, expected in pairs:
        np.testing.assert_array_equal(layer(x).data, expected.data)
    np.testing.assert_allclose(nn.Hardtanh(-2, 2)(x).data.min(), -2)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        np.testing.assert_array_equal(nn.Softmax()(x).data, F.softmax(x, dim=1).data)  # PyTorch's implicit dim
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def _sig(x):
    return 1 / (1 + np.exp(-x))


_PHI = np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))))

# layer -> (forward formula, derivative formula), written independently of the library
ACTIVATION_LAYERS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    (nn.GELU(), lambda x: x * _PHI(x), lambda x: _PHI(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    (nn.SiLU(), lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
    (nn.Sigmoid(), _sig, lambda x: _sig(x) * (1 - _sig(x))),
    (nn.Tanh(), np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    (nn.ELU(0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)), lambda x: np.where(x > 0, 1.0, 0.5 * np.exp(x))),
    (nn.Hardtanh(-2.0, 2.0), lambda x: np.clip(x, -2, 2), lambda x: ((x > -2) & (x < 2)) * 1.0),
    (nn.ReLU6(), lambda x: np.clip(x, 0, 6), lambda x: ((x > 0) & (x < 6)) * 1.0),
    (nn.LeakyReLU(0.1), lambda x: np.where(x > 0, x, 0.1 * x), lambda x: np.where(x > 0, 1.0, 0.1)),
]


@pytest.mark.parametrize("index", range(len(ACTIVATION_LAYERS)))
def test_activation_layers_forward_and_backward_match_formulas(index):
    layer, f, df = ACTIVATION_LAYERS[index]
    x = np.linspace(-7.3, 7.1, 29)  # no exact kinks
    xt = T(x)
    y = layer(xt)
    np.testing.assert_allclose(y.data, f(x), rtol=1e-12, atol=1e-14)
    g = np.cos(np.arange(29.0))
    y.backward(g)
    np.testing.assert_allclose(xt.grad, g * df(x), rtol=1e-10, atol=1e-14)


def test_softmax_layers_forward_and_backward():
    x = np.random.default_rng(6).standard_normal((3, 4))
    s = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    g = np.random.default_rng(7).standard_normal((3, 4))
    xt = T(x)
    nn.Softmax(dim=1)(xt).backward(g)
    np.testing.assert_allclose(xt.grad, s * (g - (g * s).sum(axis=1, keepdims=True)), rtol=1e-10)
    xt = T(x)
    out = nn.LogSoftmax(dim=1)(xt)
    np.testing.assert_allclose(out.data, np.log(s), rtol=1e-10)
    out.backward(g)
    np.testing.assert_allclose(xt.grad, g - s * g.sum(axis=1, keepdims=True), rtol=1e-10)


@pytest.mark.parametrize("layer, kind, geo", [
    (nn.MaxPool2d(2), "max", ((2, 2), (2, 2), (0, 0), False)),
    (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), "max", ((3, 3), (2, 2), (1, 1), True)),
    (nn.AvgPool2d(2), "avg", ((2, 2), (2, 2), (0, 0), False)),
    (nn.AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0)), "avg", ((3, 2), (1, 2), (1, 0), False)),
])
def test_pooling_layers_match_window_reference(layer, kind, geo):
    x = np.random.default_rng(8).standard_normal((2, 3, 7, 6))
    xt = T(x)
    y = layer(xt)
    expected, winners = ref_pool(x, *geo, kind)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12)
    g = np.random.default_rng(9).standard_normal(expected.shape)
    y.backward(g)
    np.testing.assert_allclose(xt.grad, ref_pool_backward(x, g, winners, kind), rtol=1e-12, atol=1e-14)


def test_adaptive_avg_pool_layer_is_global_average_for_one():
    x = np.random.default_rng(10).standard_normal((2, 3, 5, 7))
    xt = T(x)
    y = nn.AdaptiveAvgPool2d(1)(xt)
    np.testing.assert_allclose(y.data[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(xt.grad, np.full(x.shape, 1 / 35), rtol=1e-12)


def test_flatten_unflatten_identity():
    x = mc.Tensor(np.arange(24.0).reshape(2, 3, 4))
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    np.testing.assert_array_equal(nn.Unflatten(1, (2, 6))(nn.Flatten()(x)).data, x.data.reshape(2, 2, 6))
    assert nn.Identity(54, unused="x")(x) is x
    with pytest.raises(ValueError, match=r"cannot unflatten dimension 1 of size 12"):
        nn.Unflatten(1, (5, 2))(nn.Flatten()(x))
    with pytest.raises(ValueError, match="out of range"):
        nn.Flatten(3)(x)


def test_loss_layers_equal_functional():
    r = np.random.default_rng(5)
    z, y = r.standard_normal((6, 4)), r.integers(0, 4, 6)
    w = np.array([1.0, 2.0, 0.5, 1.0])
    ce = nn.CrossEntropyLoss(weight=w, label_smoothing=0.1, reduction="sum")
    np.testing.assert_allclose(ce(T(z), y).data, F.cross_entropy(T(z), y, w, reduction="sum", label_smoothing=0.1).data)
    np.testing.assert_allclose(nn.NLLLoss()(F.log_softmax(T(z), 1), y).data, F.cross_entropy(T(z), y).data)
    a, b = r.standard_normal(5), r.standard_normal(5)
    np.testing.assert_allclose(nn.MSELoss(reduction="sum")(T(a), T(b)).data, ((a - b) ** 2).sum())
    lq, p = F.log_softmax(T(z), 1), F.softmax(T(r.standard_normal((6, 4))), 1)
    np.testing.assert_allclose(nn.KLDivLoss(reduction="batchmean")(lq, p).data,
                               F.kl_div(lq, p, reduction="batchmean").data)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="deprecated"):
        nn.CrossEntropyLoss(size_average=True)


def test_a_small_cnn_learns_a_fixed_batch():
    """End to end: conv, BN, ReLU, pooling, flatten, dropout, linear and cross-entropy train together."""
    mc.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 3))
    r = np.random.default_rng(0)
    x = mc.Tensor(r.random((24, 64)).astype(np.float32))
    y = r.integers(0, 3, 24)
    losses = []
    for _ in range(60):
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        for p in model.parameters():
            p.data -= 0.1 * p.grad
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.dtype == np.float32 for p in model.parameters())
