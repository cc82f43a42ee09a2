"""Feature / attention distillation against hand-computed references, student construction, and the
Distiller callback inside fit: loss composition, unlabelled rows, projections trained, composition with a
masking callback, and a small version of the few-labels demonstration (the full one is tutorial 08)."""
import types

import numpy as np
import pytest

import minicompress as mc
from minicompress import distill as D
from minicompress.nn import functional as F


def mlp(sizes, seed):
    mc.manual_seed(seed)
    layers = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [mc.nn.Linear(n_in, n_out), mc.nn.ReLU()]
    return mc.nn.Sequential(*layers, mc.nn.Linear(sizes[-2], sizes[-1]))


def X(n=6, d=8, seed=0):
    return mc.Tensor(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32))


# ---- feature distillation (FitNets) -----------------------------------------------------------------
def test_feature_distiller_projects_student_features_and_matches_a_manual_mse():
    teacher, student = mlp([8, 12, 6, 3], 0), mlp([8, 5, 3], 1)
    fd = D.FeatureDistiller(student, teacher, {"0": "0"}).attach()     # widths 5 -> 12: a projection
    assert len(fd.projections) == 1 and fd.projections[0].weight.shape == (12, 5)
    x = X()
    with mc.no_grad():
        teacher(x)
    student(x)
    loss = fd.loss()
    h_s = x.data @ student[0].weight.data.T + student[0].bias.data
    h_t = x.data @ teacher[0].weight.data.T + teacher[0].bias.data
    expected = np.mean((h_s @ fd.projections[0].weight.data.T - h_t) ** 2)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    loss.backward()
    assert fd.projections[0].weight.grad is not None and student[0].weight.grad is not None
    assert teacher[0].weight.grad is None
    assert not any(p is q for p in fd.parameters() for q in student.parameters())   # only the projection
    fd.detach()
    student(x)
    with pytest.raises(RuntimeError, match="attach"):
        fd.loss()


def test_feature_distiller_on_conv_features_projects_channels():
    mc.manual_seed(0)
    teacher = mc.nn.Sequential(mc.nn.Conv2d(1, 6, 3, padding=1))
    student = mc.nn.Sequential(mc.nn.Conv2d(1, 2, 3, padding=1))
    fd = D.FeatureDistiller(student, teacher, {"0": "0"}).attach()
    x = mc.Tensor(np.random.default_rng(1).normal(size=(2, 1, 4, 4)).astype(np.float32))
    with mc.no_grad():
        h_t = teacher(x).data
    h_s = student(x).data
    projected = np.einsum("oc,nchw->nohw", fd.projections[0].weight.data, h_s)   # a 1x1 convolution
    np.testing.assert_allclose(fd.loss().item(), np.mean((projected - h_t) ** 2), rtol=1e-5)


def test_feature_distiller_errors_name_the_layer():
    teacher, student = mlp([8, 12, 3], 0), mlp([8, 5, 3], 1)
    with pytest.raises(ValueError, match="no submodule 'fc9'"):
        D.FeatureDistiller(student, teacher, {"fc9": "0"})
    with pytest.raises(ValueError, match="widths="):
        D.FeatureDistiller(student, teacher, {"1": "1"})             # ReLU: width unknown
    fd = D.FeatureDistiller(student, teacher, {"1": "1"}, widths={"1": (5, 12)}).attach()
    assert fd.projections[0].weight.shape == (12, 5)
    with pytest.raises(ValueError, match="pairs"):
        D.FeatureDistiller(student, teacher, {})


# ---- attention maps -------------------------------------------------------------------------------
def ref_attention(mha, x):
    """Head-averaged softmax(Q K^T / sqrt(d)) from the packed projection, in NumPy (batch_first input)."""
    E, H = mha.embed_dim, mha.num_heads
    qkv = x @ mha.in_proj_weight.data.T.astype(np.float64) + mha.in_proj_bias.data
    q, k = qkv[..., :E], qkv[..., E:2 * E]
    n, L, _ = x.shape
    q = q.reshape(n, L, H, E // H).transpose(0, 2, 1, 3)
    k = k.reshape(n, L, H, E // H).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(E // H)
    a = np.exp(s - s.max(-1, keepdims=True))
    return (a / a.sum(-1, keepdims=True)).mean(axis=1)


def test_attention_distiller_catches_attention_maps_and_computes_kl():
    mc.manual_seed(0)
    teacher = mc.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    student = mc.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)   # fewer heads
    for m in (teacher, student):
        m.eval()
    ad = D.AttentionDistiller(student, teacher, {"self_attn": "self_attn"}).attach()
    x = np.random.default_rng(2).normal(size=(3, 5, 16)).astype(np.float32)
    catch = {}
    norm_hooks = [m.norm1.register_forward_hook(lambda mod, args, out, k=k: catch.__setitem__(k, args[0].data))
                  for k, m in (("t", teacher), ("s", student))]
    with mc.no_grad():
        teacher(mc.Tensor(x))
    student(mc.Tensor(x))
    for h in norm_hooks:
        h.remove()
    # post-norm layers: self-attention sees the raw input x
    a_t, a_s = ref_attention(teacher.self_attn, x), ref_attention(student.self_attn, x)
    expected = np.sum(a_t * (np.log(a_t) - np.log(a_s))) / (3 * 5)
    loss = ad.loss()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-3, atol=1e-6)
    loss.backward()
    assert student.self_attn.in_proj_weight.grad is not None
    assert np.abs(student.self_attn.in_proj_weight.grad).sum() > 0
    with pytest.raises(TypeError, match="MultiheadAttention"):
        D.AttentionDistiller(student, teacher, {"linear1": "self_attn"})


def test_attention_map_loss_values():
    r = np.random.default_rng(3)
    a = r.random((2, 3, 4))
    a /= a.sum(-1, keepdims=True)
    b = r.random((2, 3, 4))
    b /= b.sum(-1, keepdims=True)
    A = mc.Tensor(a, dtype=np.float64, requires_grad=True)
    assert abs(D.attention_map_loss(mc.Tensor(b, dtype=np.float64), b).item()) < 1e-6
    np.testing.assert_allclose(D.attention_map_loss(A, b).item(), np.sum(b * np.log(b / a)) / 6, rtol=1e-6)
    np.testing.assert_allclose(D.attention_map_loss(A, b, kind="mse").item(), np.mean((a - b) ** 2), rtol=1e-12)
    assert mc.gradcheck(lambda t: D.attention_map_loss(t, b), [A])
    with pytest.raises(ValueError, match="same shape"):
        D.attention_map_loss(A, b[:, :2])
    with pytest.raises(ValueError, match="kind"):
        D.attention_map_loss(A, b, kind="l1")


# ---- building students ----------------------------------------------------------------------------
def test_smaller_mlp_shapes_recipe_and_errors():
    teacher = mc.models.mlp()
    s = D.smaller_mlp(teacher, width=0.25)
    shapes = [tuple(p.shape) for n, p in s.named_parameters() if n.endswith("weight")]
    assert shapes == [(32, 64), (16, 32), (10, 16)]
    assert s.recipe == teacher.recipe
    s1 = D.smaller_mlp(teacher, width=0.5, depth=1)
    assert [tuple(p.shape) for n, p in s1.named_parameters() if n.endswith("weight")] == [(64, 64), (10, 64)]
    assert isinstance(s1[1], mc.nn.ReLU)
    assert D.smaller_mlp(teacher, depth=0)(X(2, 64)).shape == (2, 10)          # logistic regression
    for kwargs in ({"width": 0}, {"depth": 3}, {"depth": -1}):
        with pytest.raises(ValueError, match=list(kwargs)[0]):
            D.smaller_mlp(teacher, **kwargs)
    with pytest.raises(TypeError, match="Sequential"):
        D.smaller_mlp(mc.models.tiny_transformer())


def test_distilbert_init_takes_every_other_layer_as_independent_copies():
    mc.manual_seed(0)
    teacher = mc.models.tiny_transformer(num_layers=4)
    student = D.distilbert_init(teacher)
    assert len(student.encoder.layers) == 2 and student.encoder.num_layers == 2
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for k, v in s_state.items():
        src = k.replace("encoder.layers.1.", "encoder.layers.2.")
        np.testing.assert_array_equal(v, t_state[src])
    assert not any(k.startswith("encoder.layers.2") for k in s_state)
    student.head.weight.data[...] = 0                                          # a copy, not shared
    assert np.abs(teacher.head.weight.data).sum() > 0
    assert student(X(3, 64)).shape == (3, 10)
    kept = D.distilbert_init(teacher, keep=[1, 3])
    np.testing.assert_array_equal(kept.state_dict()["encoder.layers.0.linear1.weight"],
                                  t_state["encoder.layers.1.linear1.weight"])
    with pytest.raises(ValueError, match="no submodule 'blocks'"):
        D.distilbert_init(teacher, layers="blocks")
    with pytest.raises(ValueError, match="keep"):
        D.distilbert_init(teacher, keep=[0, 4])


# ---- the Distiller callback -----------------------------------------------------------------------
def test_distiller_on_loss_composes_soft_and_hard_terms():
    teacher, student = mlp([8, 12, 4], 0), mlp([8, 3, 4], 1)
    x = X()
    y = np.array([0, 1, 2, 3, 0, 1])
    logits = student(x)
    hard = F.cross_entropy(logits, y)
    state = types.SimpleNamespace(x=x, y=y, logits=logits, loss=hard)
    D.Distiller(teacher, temperature=3.0, alpha=0.25).on_loss(state)
    with mc.no_grad():
        t_logits = teacher(x).data
    expected = 0.25 * D.kd_loss(logits, t_logits, 3.0).item() + 0.75 * hard.item()
    np.testing.assert_allclose(state.loss.item(), expected, rtol=1e-6)
    # unlabelled rows (-100) get only the soft term; a batch with no label uses the soft term alone
    y_none = np.full(6, D.UNLABELLED)
    state = types.SimpleNamespace(x=x, y=y_none, logits=logits, loss=F.cross_entropy(logits, y_none))
    assert np.isnan(state.loss.item())                       # what fit's loss alone would be
    D.Distiller(teacher, temperature=3.0, alpha=0.25).on_loss(state)
    np.testing.assert_allclose(state.loss.item(), D.kd_loss(logits, t_logits, 3.0).item(), rtol=1e-6)
    for kwargs, word in (({"alpha": 2}, "alpha"), ({"temperature": 0}, "temperature"), ({"soft": "l1"}, "soft")):
        with pytest.raises(ValueError, match=word):
            D.Distiller(teacher, **kwargs)


class KeepMask:
    """A minimal pruning callback: zero the first half of the student's first-layer weights after each step."""

    def __init__(self, layer):
        self.layer = layer
        self.mask = np.ones(layer.weight.shape, dtype=bool)
        self.mask[: layer.weight.shape[0] // 2] = False

    def on_step_end(self, state):
        self.layer.weight.data *= self.mask


def digits_few_labels(n_labels, seed):
    X_train, y_train, X_test, y_test = mc.data.digits_split()
    r = np.random.default_rng(seed)
    idx = np.concatenate([r.choice(np.flatnonzero(y_train == c), n_labels // 10, replace=False) for c in range(10)])
    y_partial = np.full_like(y_train, D.UNLABELLED)
    y_partial[idx] = y_train[idx]
    return X_train, y_train, X_test, y_test, idx, y_partial


def test_distiller_in_fit_with_features_and_a_mask_and_the_few_labels_effect():
    X_train, y_train, X_test, y_test, idx, y_partial = digits_few_labels(50, seed=0)
    mc.manual_seed(0)
    teacher = mc.models.mlp()
    mc.train.fit(teacher, (X_train, y_train), epochs=12, verbose=False)
    teacher_acc = mc.train.evaluate(teacher, (X_test, y_test))
    teacher_state = {k: v.copy() for k, v in teacher.state_dict().items()}
    plain, kd = [], []
    for seed in (0, 1):
        mc.manual_seed(seed)
        student = D.smaller_mlp(teacher, width=0.5)
        fit_steps = 8 * len(X_train) // 64
        mc.train.fit(student, (X_train[idx], y_train[idx]), epochs=fit_steps, verbose=False)
        plain.append(mc.train.evaluate(student, (X_test, y_test)))
        mc.manual_seed(seed)
        student = D.smaller_mlp(teacher, width=0.5)
        fd = D.FeatureDistiller(student, teacher, {"0": "0"})                  # 64 -> 128: projected
        proj_before = fd.projections[0].weight.data.copy()
        mask = KeepMask(student[0])
        distiller = D.Distiller(teacher, temperature=4.0, alpha=0.9, extra_losses=[fd], extra_weights=[0.1])
        mc.train.fit(student, (X_train, y_partial), epochs=8, callbacks=[distiller, mask], verbose=False)
        kd.append(mc.train.evaluate(student, (X_test, y_test)))
        assert not np.array_equal(fd.projections[0].weight.data, proj_before)  # the projection was trained
        assert (student[0].weight.data[:32] == 0).all()                        # the mask held
        assert set(distiller.last_terms) == {"soft", "hard", "extra_0"}
        assert not teacher._forward_hooks and not student[0]._forward_hooks    # hooks removed
    for k, v in teacher.state_dict().items():
        np.testing.assert_array_equal(v, teacher_state[k])                     # the teacher is frozen
    assert teacher_acc > 0.9
    # 50 labels alone vs 50 labels + the teacher's soft labels on the other 1387 training images
    assert np.mean(kd) > np.mean(plain) + 0.05, (plain, kd)
