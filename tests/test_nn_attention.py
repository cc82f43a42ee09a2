"""MultiheadAttention and TransformerEncoderLayer against NumPy formulas written here, gradients by
central differences, PyTorch's state_dict names, masks and errors; the zoo's tiny transformer shapes."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress import nn
from minicompress.core.gradcheck import gradcheck


def np_softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_mha(q_in, k_in, v_in, W, b, Wo, bo, heads, mask=None):
    """Reference: batch-first (N, L, E); mask additive (N, H, L, S) or broadcastable."""
    n, L, E = q_in.shape
    S, D = k_in.shape[1], E // heads
    q, k, v = (t @ W[i * E:(i + 1) * E].T + b[i * E:(i + 1) * E] for i, t in enumerate((q_in, k_in, v_in)))
    split = lambda t, length: t.reshape(n, length, heads, D).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(q, L), split(k, S), split(v, S)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)
    if mask is not None:
        scores = scores + mask
    a = np_softmax(scores)
    out = (a @ v).transpose(0, 2, 1, 3).reshape(n, L, E) @ Wo.T + bo
    return out, a


@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.sampled_from([(4, 1), (4, 2), (6, 3)]),
       st.booleans(), st.integers(0, 2**16))
def test_mha_matches_numpy_reference(n, L, S, e_h, batch_first, seed):
    E, H = e_h
    mc.manual_seed(seed)
    m = nn.MultiheadAttention(E, H, batch_first=batch_first)
    rng = np.random.default_rng(seed)
    q, kv = rng.standard_normal((n, L, E)), rng.standard_normal((n, S, E))
    ref, a = np_mha(q, kv, kv, m.in_proj_weight.data, m.in_proj_bias.data, m.out_proj.weight.data,
                    m.out_proj.bias.data, H)
    to = (lambda t: t) if batch_first else (lambda t: t.transpose(1, 0, 2))
    out, w = m(mc.Tensor(to(q)), mc.Tensor(to(kv)), mc.Tensor(to(kv)))
    np.testing.assert_allclose(out.data, to(ref), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w.data, a.mean(axis=1), rtol=1e-4, atol=1e-6)
    _, w_heads = m(mc.Tensor(to(q)), mc.Tensor(to(kv)), mc.Tensor(to(kv)), average_attn_weights=False)
    np.testing.assert_allclose(w_heads.data, a, rtol=1e-4, atol=1e-6)


def test_self_attention_fast_path_equals_general_path():
    mc.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = mc.Tensor(np.random.default_rng(0).standard_normal((2, 5, 8)))
    fast, _ = m(x, x, x)                      # one packed GEMM for Q, K, V
    general, _ = m(x, mc.Tensor(x.data.copy()), mc.Tensor(x.data.copy()))  # three projections
    np.testing.assert_allclose(fast.data, general.data, rtol=1e-5, atol=1e-6)


def test_masks_block_positions():
    mc.manual_seed(1)
    E, H, n, L = 4, 2, 2, 3
    m = nn.MultiheadAttention(E, H, batch_first=True)
    x = np.random.default_rng(1).standard_normal((n, L, E))
    causal = np.triu(np.ones((L, L), dtype=bool), k=1)             # True = may not attend
    padding = np.array([[False, False, True], [False, False, False]])
    out, w = m(mc.Tensor(x), mc.Tensor(x), mc.Tensor(x), attn_mask=causal, key_padding_mask=padding,
               average_attn_weights=False)
    add = np.where(causal, -np.inf, 0)[None, None] + np.where(padding, -np.inf, 0)[:, None, None, :]
    W, b = m.in_proj_weight.data, m.in_proj_bias.data
    ref, a = np_mha(x, x, x, W, b, m.out_proj.weight.data, m.out_proj.bias.data, H, add)
    np.testing.assert_allclose(out.data, ref, rtol=1e-4, atol=1e-5)
    assert np.all(w.data[:, :, causal] == 0) and np.all(w.data[0, :, :, 2] == 0)
    float_mask = np.where(causal, -np.inf, 0.0).astype(np.float32)
    out2, _ = m(mc.Tensor(x), mc.Tensor(x), mc.Tensor(x), attn_mask=float_mask, key_padding_mask=padding)
    np.testing.assert_allclose(out2.data, out.data, rtol=1e-6)


def test_mha_gradients_match_finite_differences():
    mc.manual_seed(2)
    m = nn.MultiheadAttention(4, 2, batch_first=True).double()
    x = mc.Tensor(np.random.default_rng(2).standard_normal((2, 3, 4)), dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda t: m(t, t, t)[0], [x])
    # gradcheck perturbs the parameter's array in place, so the closure needs no argument of its own
    assert gradcheck(lambda _w: m(x, x, x)[0], [m.in_proj_weight])
    assert gradcheck(lambda _w: m(x, x, x)[0], [m.out_proj.weight])


def test_mha_state_dict_names_as_pytorch():
    m = nn.MultiheadAttention(8, 2)
    assert {k: v.shape for k, v in m.state_dict().items()} == {
        "in_proj_weight": (24, 8), "in_proj_bias": (24,), "out_proj.weight": (8, 8), "out_proj.bias": (8,)}


def test_mha_bad_input_names_shapes():
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    with pytest.raises(ValueError, match=r"query has shape \(2, 5, 6\).*E = embed_dim = 8"):
        m(mc.Tensor(np.zeros((2, 5, 6))))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        nn.MultiheadAttention(6, 4)
    x = mc.Tensor(np.zeros((2, 5, 8)))
    with pytest.raises(ValueError, match="attn_mask has shape"):
        m(x, attn_mask=np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        m(x, key_padding_mask=np.zeros((2, 4), dtype=bool))
    with pytest.raises(TypeError, match="boolean or floating"):
        m(x, attn_mask=np.zeros((5, 5), dtype=np.int64))


def np_layer_norm(x, w, b, eps=1e-5):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_numpy(norm_first, activation):
    from scipy.special import erf
    mc.manual_seed(3)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first).eval()
    x = np.random.default_rng(3).standard_normal((2, 4, 8))
    p = {k: v for k, v in layer.state_dict().items()}
    act = (lambda z: np.maximum(z, 0)) if activation == "relu" else (lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2))))
    sa = lambda h: np_mha(h, h, h, p["self_attn.in_proj_weight"], p["self_attn.in_proj_bias"],  # noqa: E731
                          p["self_attn.out_proj.weight"], p["self_attn.out_proj.bias"], 2)[0]
    ff = lambda h: act(h @ p["linear1.weight"].T + p["linear1.bias"]) @ p["linear2.weight"].T + p["linear2.bias"]  # noqa: E731
    n1 = lambda h: np_layer_norm(h, p["norm1.weight"], p["norm1.bias"])  # noqa: E731
    n2 = lambda h: np_layer_norm(h, p["norm2.weight"], p["norm2.bias"])  # noqa: E731
    if norm_first:
        h = x + sa(n1(x))
        ref = h + ff(n2(h))
    else:
        h = n1(x + sa(x))
        ref = n2(h + ff(h))
    np.testing.assert_allclose(layer(mc.Tensor(x)).data, ref, rtol=1e-4, atol=1e-5)


def test_encoder_state_dict_names_and_independent_copies():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2)
    keys = list(enc.state_dict())
    for k in ("layers.0.self_attn.in_proj_weight", "layers.1.linear1.weight", "layers.1.norm2.bias",
              "layers.0.self_attn.out_proj.bias", "layers.1.linear2.weight", "layers.0.norm1.weight"):
        assert k in keys
    enc.layers[0].linear1.weight.data[...] = 0
    assert np.any(enc.layers[1].linear1.weight.data != 0)  # deep copies, not shared parameters
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")


def test_tiny_transformer_shapes_and_errors():
    mc.manual_seed(0)
    model = mc.models.tiny_transformer()
    x = mc.Tensor(np.random.default_rng(0).random((5, 64)))
    assert model(x).shape == (5, 10)
    with pytest.raises(ValueError, match=r"expected \(N, 64\)"):
        model(mc.Tensor(np.zeros((5, 8, 8))))
    assert sum(p.numel() for p in model.parameters()) < 30_000
