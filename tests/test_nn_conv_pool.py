"""conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d: forward and backward against direct nested-loop
references written here (one output position at a time, PyTorch's index rules), plus float64 gradchecks
under hypothesis-generated geometries (strides, paddings, dilations, ceil_mode, non-square kernels)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
import minicompress.nn.functional as F
from minicompress.core.gradcheck import gradcheck
from tests.strategies import conv_geometry, pool_geometry, seeds


def T(a):
    return mc.Tensor(np.array(a, dtype=np.float64), dtype=np.float64, requires_grad=True)


# ---- conv2d ---------------------------------------------------------------------------------------------

def ref_conv2d(x, w, b, stride, padding, dilation):
    """y[n, o, i, j] = b[o] + sum_{c,p,q} w[o, c, p, q] x_pad[n, c, i sh + p dh, j sw + q dw], one (i, j) at a time."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, _, kh, kw = w.shape
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((x.shape[0], o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            y[:, :, i, j] = np.einsum("ncpq,ocpq->no", patch, w)
    return y + (0 if b is None else b[None, :, None, None])


def ref_conv2d_backward(x, w, g, stride, padding, dilation):
    """dL/dx, dL/dw, dL/db by scattering each output position's gradient back through its receptive field."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw_ = np.zeros_like(xp), np.zeros_like(w)
    _, _, kh, kw = w.shape
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
            dxp[:, :, rows, cols] += np.einsum("no,ocpq->ncpq", g[:, :, i, j], w)
            dw_ += np.einsum("no,ncpq->ocpq", g[:, :, i, j], xp[:, :, rows, cols])
    dx = dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    return dx, dw_, g.sum(axis=(0, 2, 3))


@given(conv_geometry(), seeds(), st.booleans())
def test_conv2d_matches_direct_convolution_forward_and_backward(geo, seed, with_bias):
    r = np.random.default_rng(seed)
    x, w = r.standard_normal(geo["x_shape"]), r.standard_normal(geo["w_shape"])
    b = r.standard_normal(geo["w_shape"][0]) if with_bias else None
    kw = dict(stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"])
    xt, wt, bt = T(x), T(w), (T(b) if with_bias else None)
    y = F.conv2d(xt, wt, bt, **kw)
    expected = ref_conv2d(x, w, b, geo["stride"], geo["padding"], geo["dilation"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-10)
    g = r.standard_normal(expected.shape)
    y.backward(g)
    dx, dw, db = ref_conv2d_backward(x, w, g, geo["stride"], geo["padding"], geo["dilation"])
    np.testing.assert_allclose(xt.grad, dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad, dw, rtol=1e-10, atol=1e-10)
    if with_bias:
        np.testing.assert_allclose(bt.grad, db, rtol=1e-10, atol=1e-10)


@given(conv_geometry(max_side=4), seeds())
def test_conv2d_gradcheck(geo, seed):
    r = np.random.default_rng(seed)
    x, w, b = (r.standard_normal(s) for s in (geo["x_shape"], geo["w_shape"], geo["w_shape"][:1]))
    kw = dict(stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"])
    assert gradcheck(lambda a, c, d: F.conv2d(a, c, d, **kw), [T(x), T(w), T(b)])


def test_conv2d_same_padding_unbatched_and_float32():
    r = np.random.default_rng(0)
    x, w = r.standard_normal((2, 3, 5, 6)), r.standard_normal((4, 3, 2, 3))
    y = F.conv2d(x, w, padding="same")  # even kernel height: PyTorch pads the extra row at the bottom
    xp = np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 1)))
    np.testing.assert_allclose(y.data, ref_conv2d(xp, w, None, (1, 1), (0, 0), (1, 1)), rtol=1e-5, atol=1e-5)
    assert y.shape == (2, 4, 5, 6) and y.dtype == np.float32
    single = F.conv2d(mc.Tensor(x[0]), mc.Tensor(w), stride=2)
    np.testing.assert_allclose(single.data, F.conv2d(x[:1], w, stride=2).data[0], rtol=1e-6)
    assert F.conv2d(x, w, padding="valid").shape == (2, 4, 4, 4)


def test_conv2d_errors_name_shapes():
    x = mc.Tensor(np.zeros((2, 3, 5, 5)))
    w = mc.Tensor(np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"input has 2 channels.*\(4, 3, 3, 3\).*in_channels=3"):
        F.conv2d(mc.Tensor(np.zeros((2, 2, 5, 5))), w)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*got shape \(2, 75\)"):
        F.conv2d(mc.Tensor(np.zeros((2, 75))), w)
    with pytest.raises(ValueError, match="kernel size .* larger than the padded input"):
        F.conv2d(mc.Tensor(np.zeros((2, 3, 2, 2))), w)
    with pytest.raises(ValueError, match="groups=1"):
        F.conv2d(x, w, groups=3)
    with pytest.raises(ValueError, match="bias has shape"):
        F.conv2d(x, w, mc.Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="same"):
        F.conv2d(x, w, stride=2, padding="same")


# ---- pooling --------------------------------------------------------------------------------------------

def out_size(size, k, s, p, ceil_mode):
    """PyTorch's pooling_output_shape (written out again here)."""
    if ceil_mode:
        n = -(-(size + 2 * p - k) // s) + 1
        if (n - 1) * s >= size + p:
            n -= 1
        return n
    return (size + 2 * p - k) // s + 1


def ref_pool(x, kernel, stride, padding, ceil_mode, kind, count_include_pad=True):
    """One window at a time, as PyTorch's CPU kernels: max (first maximum wins) or average with its divisor."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, ph, ceil_mode), out_size(w, kw, sw, pw, ceil_mode)
    y = np.zeros((n, c, ho, wo))
    winners = {}
    for i in range(ho):
        for j in range(wo):
            h0, w0 = i * sh - ph, j * sw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
            pool_size = (h1 - h0) * (w1 - w0)
            hs, ws, he, we = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            win = x[:, :, hs:he, ws:we].reshape(n, c, -1)
            if kind == "max":
                arg = win.argmax(axis=2)
                y[:, :, i, j] = win.max(axis=2)
                winners[i, j] = (hs + arg // (we - ws), ws + arg % (we - ws))
            else:
                div = pool_size if count_include_pad else (he - hs) * (we - ws)
                y[:, :, i, j] = win.sum(axis=2) / div
                winners[i, j] = (slice(hs, he), slice(ws, we), div)
    return y, winners


def ref_pool_backward(x, g, winners, kind):
    dx = np.zeros_like(x)
    n, c = x.shape[:2]
    nn_, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for (i, j), where in winners.items():
        if kind == "max":
            np.add.at(dx, (nn_, cc, where[0], where[1]), g[:, :, i, j])
        else:
            rows, cols, div = where
            dx[:, :, rows, cols] += g[:, :, i, j][:, :, None, None] / div
    return dx


@given(pool_geometry(), seeds(), st.booleans())
def test_pools_match_window_by_window_reference(geo, seed, include_pad):
    r = np.random.default_rng(seed)
    x = r.standard_normal(geo["x_shape"])
    args = (geo["kernel_size"], geo["stride"], geo["padding"])
    for kind in ("max", "avg"):
        xt = T(x)
        if kind == "max":
            y = F.max_pool2d(xt, *args, ceil_mode=geo["ceil_mode"])
        else:
            y = F.avg_pool2d(xt, *args, ceil_mode=geo["ceil_mode"], count_include_pad=include_pad)
        expected, winners = ref_pool(x, *args, geo["ceil_mode"], kind, include_pad)
        assert y.shape == expected.shape
        np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
        g = r.standard_normal(expected.shape)
        y.backward(g)
        np.testing.assert_allclose(xt.grad, ref_pool_backward(x, g, winners, kind), rtol=1e-12, atol=1e-12)


@given(pool_geometry(max_side=5), seeds())
def test_pools_gradcheck(geo, seed):
    x = np.random.default_rng(seed).permutation(np.prod(geo["x_shape"])).reshape(geo["x_shape"]) * 0.1  # no ties
    args = (geo["kernel_size"], geo["stride"], geo["padding"])
    assert gradcheck(lambda t: F.max_pool2d(t, *args, ceil_mode=geo["ceil_mode"]), [T(x)])
    assert gradcheck(lambda t: F.avg_pool2d(t, *args, ceil_mode=geo["ceil_mode"], count_include_pad=False), [T(x)])


def test_max_pool_ties_route_to_the_first_maximum_and_nan_propagates():
    x = T(np.ones((1, 1, 2, 2)))
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 0], [0, 0]])
    y = F.max_pool2d(np.array([[[[1.0, np.nan], [3.0, 2.0]]]]), 2)
    assert np.isnan(y.data).all()


def test_max_pool_return_indices_and_dilation():
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5)).astype(np.float32)
    y, idx = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    flat = x.reshape(2, 3, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, idx.reshape(2, 3, -1), axis=2).reshape(y.shape), y.data)
    yd = F.max_pool2d(T(x), 2, stride=1, dilation=2)
    ref = np.maximum.reduce([x[:, :, p:p + 4, q:q + 3] for p in (0, 2) for q in (0, 2)])
    np.testing.assert_allclose(yd.data, ref)


def test_avg_pool_divisor_override_and_adaptive():
    x = np.arange(2 * 1 * 5 * 7, dtype=np.float64).reshape(2, 1, 5, 7)
    y = F.avg_pool2d(x, 2, divisor_override=3)
    np.testing.assert_allclose(y.data, (x[:, :, 0:4:2, 0:6:2] + x[:, :, 1:5:2, 0:6:2] + x[:, :, 0:4:2, 1:7:2]
                                        + x[:, :, 1:5:2, 1:7:2]) / 3, rtol=1e-6)
    out = F.adaptive_avg_pool2d(T(x), (3, 4))
    for i in range(3):
        for j in range(4):
            rows = slice(i * 5 // 3, -(-(i + 1) * 5 // 3))
            cols = slice(j * 7 // 4, -(-(j + 1) * 7 // 4))
            np.testing.assert_allclose(out.data[:, :, i, j], x[:, :, rows, cols].mean(axis=(2, 3)))
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 4)), [T(x)])
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1).data[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-6)


def test_pool_errors():
    x = mc.Tensor(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.avg_pool2d(x, 5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        F.max_pool2d(mc.Tensor(np.zeros((4, 4))), 2)
    with pytest.raises(ValueError, match="kernel_size"):
        F.max_pool2d(x, (2, 2, 2))
