"""Observers, FakeQuantize, LSQ and QConfig against independent references written here."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress.quant import (EntropyObserver, FakeQuantize, HistogramObserver, LearnableFakeQuantize, MSEObserver,
                                MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver,
                                PerChannelMinMaxObserver, QConfig, calc_qparams, dequantize, fake_quantize, quantize)
from minicompress.quant.qconfig import qconfig_for
from tests.strategies import arrays, shapes


def l2_error(x, lo, hi, qmin=0, qmax=255):
    s, z = calc_qparams(lo, hi, qmin, qmax)
    return float(np.mean((x - dequantize(quantize(x, s, z, qmin, qmax), s, z)) ** 2))


def heavy_tailed(seed=0, n=20000):
    r = np.random.default_rng(seed)
    x = r.standard_normal(n).astype(np.float32)
    x[:3] = [40.0, -25.0, 30.0]    # a few far outliers
    return x


@given(st.lists(arrays(shapes(max_dims=2, max_side=6), -10, 10, dtype=np.float32), min_size=1, max_size=4))
def test_minmax_and_moving_average_follow_their_formulas(batches):
    mm, ma = MinMaxObserver(), MovingAverageMinMaxObserver(averaging_constant=0.25)
    lo = hi = None
    for b in batches:
        assert mm(b) is b
        ma(b)
        if lo is None:
            lo, hi = np.float32(b.min()), np.float32(b.max())
        else:
            lo = np.float32(lo + np.float32(0.25) * (b.min() - lo))
            hi = np.float32(hi + np.float32(0.25) * (b.max() - hi))
    allx = np.concatenate([b.ravel() for b in batches])
    assert mm.min_val == allx.min() and mm.max_val == allx.max()
    assert mm.calculate_qparams() == calc_qparams(allx.min(), allx.max(), 0, 255)
    assert ma.min_val == lo and ma.max_val == hi


@given(arrays(st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3)), dtype=np.float32),
       st.integers(0, 2))
def test_per_channel_minmax_reduces_every_other_axis(x, axis):
    obs = PerChannelMinMaxObserver(ch_axis=axis)
    obs(x)
    obs(x * 0.5)
    other = tuple(i for i in range(3) if i != axis)
    lo = np.minimum(x.min(axis=other), (x * 0.5).min(axis=other))
    hi = np.maximum(x.max(axis=other), (x * 0.5).max(axis=other))
    np.testing.assert_array_equal(obs.min_val, lo)
    scale, zp = obs.calculate_qparams()
    ref_scale, ref_zp = calc_qparams(lo, hi, -128, 127, symmetric=True)
    np.testing.assert_array_equal(scale, ref_scale)
    np.testing.assert_array_equal(zp, ref_zp)


def test_histogram_and_mse_observers_clip_long_tails_and_beat_minmax():
    # 4 bits on a Laplace distribution: the L2-optimal clip is about 5b (Banner et al. 2019), far inside the max
    x = np.random.default_rng(0).laplace(size=20000).astype(np.float32)
    base = l2_error(x, x.min(), x.max(), 0, 15)
    for obs in (HistogramObserver(dtype="quint4"), MSEObserver(dtype="quint4")):
        obs(x[:10000])
        obs(x[10000:] * 1.2)    # a wider second batch exercises re-binning
        lo, hi = obs.chosen_range()
        assert hi < 0.8 * x.max() and lo > 0.8 * x.min()
        assert l2_error(x, lo, hi, 0, 15) < 0.6 * base, type(obs).__name__


def test_mse_observer_picks_the_best_factor_of_its_grid():
    x = np.random.default_rng(1).laplace(size=20000).astype(np.float32)
    obs = MSEObserver(grid=50, dtype="quint4")
    obs(x)
    lo, hi = obs.chosen_range()
    errors = [l2_error(x, a * x.min(), a * x.max(), 0, 15) for a in np.linspace(1 / 50, 1, 50)]
    # the observer scores on 2048-bin centres; on the raw data its choice is within 5% of the grid's best
    assert l2_error(x, lo, hi, 0, 15) <= 1.05 * min(errors)


def test_percentile_observer_matches_numpy_percentile():
    x = np.random.default_rng(2).uniform(-3, 5, 50000).astype(np.float32)
    obs = PercentileObserver(percentile=99.0)
    obs(x)
    lo, hi = obs.chosen_range()
    width = (x.max() - x.min()) / 2048
    assert abs(lo - np.percentile(x, 1.0)) < 2 * width and abs(hi - np.percentile(x, 99.0)) < 2 * width


def reference_kl_threshold(hist, n_levels, raw_hist, max_clip=0.01):
    """TensorRT's entropy calibration written as plain loops (independent of the library's vectorised one)."""
    kls = {}
    for i in range(n_levels, len(hist) + 1):
        if raw_hist[i:].sum() > max_clip * raw_hist.sum():
            continue
        ref = [float(v) for v in hist[:i]]
        ref[-1] += float(np.sum(hist[i:]))
        merged = i // n_levels
        q = [0.0] * i
        for j in range(n_levels):
            start = (j * i) // n_levels
            stop = ((j + 1) * i) // n_levels
            chunk = hist[start:stop]
            nz = sum(1 for v in chunk if v != 0)
            for k in range(start, stop):
                q[k] = float(chunk.sum()) / nz if hist[k] != 0 else 0.0
        del merged
        p = np.array(ref) / sum(ref)
        qa = np.array(q)
        if qa.sum() == 0:
            continue
        qa = qa / qa.sum()
        qa = np.where(qa == 0, 1e-12, qa)
        kls[i] = float(sum(pi * np.log(pi / qi) for pi, qi in zip(p, qa) if pi > 0))
    best = min(kls.values())
    return max(i for i, kl in kls.items() if kl <= best + 1e-9)     # ties: the widest threshold


def test_entropy_observer_matches_a_loop_reference_of_tensorrt_calibration():
    x = np.abs(heavy_tailed(3, 5000))
    obs = EntropyObserver(bins=64, quant_min=0, quant_max=15)
    obs(x)
    lo, hi = obs.chosen_range()
    hist = obs.histogram.copy()
    hist[0] = hist[1]                       # the zero spike is replaced by its neighbour (pytorch-quantization)
    i = reference_kl_threshold(hist, 16, obs.histogram)
    width = (float(obs.hist_max) - float(obs.hist_min)) / 64
    expected = float(obs.hist_min) + (i + 0.5) * width if i < 64 else float(obs.hist_max)
    assert lo == x.min() and abs(float(hi) - min(expected, float(x.max()))) < 1e-4
    assert hi < x.max()      # the outliers are clipped


def test_entropy_observer_keeps_the_full_range_of_discrete_data():
    x = np.random.default_rng(4).integers(0, 17, 4000).astype(np.float32) / 16    # pixel-like values k/16
    obs = EntropyObserver(dtype="quint4")
    obs(x)
    assert obs.chosen_range()[1] >= 15 / 16


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver,
                                 HistogramObserver, PercentileObserver, MSEObserver, EntropyObserver])
def test_observer_errors_and_repr(cls):
    obs = cls()
    with pytest.raises(ValueError, match="no data observed yet"):
        obs.calculate_qparams()
    assert "no data yet" in repr(obs)
    with pytest.raises(ValueError, match="NaN"):
        obs(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="inf"):
        obs(np.array([[1.0, np.inf]], np.float32))
    with pytest.raises(ValueError, match="empty"):
        obs(np.zeros((0, 2), np.float32))
    assert "no data yet" in repr(obs)       # a failed call records nothing
    obs(np.array([[-1.0, 2.0], [0.5, 1.0]], np.float32))
    text = repr(obs)
    assert "range=[" in text and "scale" in text and "zero_point" in text


def test_observer_argument_errors():
    with pytest.raises(ValueError, match="qscheme must be one of"):
        MinMaxObserver(qscheme="per_tensor")
    with pytest.raises(ValueError, match="per-tensor observer"):
        MinMaxObserver(qscheme="per_channel_affine")
    with pytest.raises(ValueError, match="dtype must look like"):
        MinMaxObserver(dtype="int8")
    with pytest.raises(ValueError, match="bits must be an int in 2..16"):
        MinMaxObserver(dtype="qint17")
    with pytest.raises(ValueError, match="bits must be an int in 2..16"):
        MinMaxObserver(dtype=None, bits=1)
    obs = MinMaxObserver(dtype="qint4", qscheme="per_tensor_symmetric")
    assert (obs.quant_min, obs.quant_max) == (-8, 7)
    assert (MinMaxObserver(reduce_range=True).quant_max, MinMaxObserver(quant_min=3, quant_max=90).quant_min) == (127, 3)
    pc = PerChannelMinMaxObserver()
    pc(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="saw 3 channels before"):
        pc(np.ones((5, 4), np.float32))


# ---- FakeQuantize --------------------------------------------------------------------------------------
def test_fake_quantize_module_switches():
    fq = FakeQuantize(observer=MinMaxObserver, dtype="quint8")
    x = mc.Tensor(np.linspace(-1, 3, 17, dtype=np.float32))
    y = fq(x)
    scale, zp = calc_qparams(-1.0, 3.0, 0, 255)
    np.testing.assert_array_equal(y.data, fake_quantize(x, scale, zp, 0, 255).data)
    fq.disable_observer()
    fq(x * 10)                                           # no longer observed: the range stays [-1, 3]
    assert fq.scale[0] == scale and fq.zero_point[0] == zp
    assert fq(x * 10).data.max() == np.float32((255 - zp) * scale)
    fq.disable_fake_quant()
    assert fq(x * 10) is not None and np.array_equal(fq(x * 10).data, (x * 10).data)
    fq.enable_observer().enable_fake_quant()
    fq(x * 10)
    assert fq.scale[0] > scale


def test_fake_quantize_per_channel_weights():
    w = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    fq = FakeQuantize(observer=PerChannelMinMaxObserver, dtype="qint8", qscheme="per_channel_symmetric", ch_axis=0)
    t = mc.Tensor(w, requires_grad=True)
    y = fq(t)
    s, z = calc_qparams(w.min(1), w.max(1), -128, 127, symmetric=True)
    np.testing.assert_array_equal(y.data, dequantize(quantize(w, s, z, -128, 127, axis=0), s, z, axis=0))
    y.sum().backward()
    code = np.rint(w * (np.float32(1) / s[:, None]))
    # symmetric int8 divides by 127.5: a channel's positive maximum lands on 127.5 -> 128 and is clipped (grad 0)
    np.testing.assert_array_equal(t.grad, ((code >= -128) & (code <= 127)).astype(np.float32))
    assert t.grad.sum() >= w.size - 4


# ---- LSQ -----------------------------------------------------------------------------------------------
def lsq_reference(x, s, qn, qp, g, grad_out):
    v = x / s
    y = np.clip(np.rint(v), qn, qp) * s
    dx = grad_out * ((v > qn) & (v < qp) | (v == qn) | (v == qp))
    ds_elem = np.where(v <= qn, qn, np.where(v >= qp, qp, np.rint(v) - v))
    return y, dx, ds_elem, g


@given(arrays(st.tuples(st.integers(1, 4), st.integers(1, 5)), -2, 2), st.sampled_from([None, 0]))
def test_lsq_forward_and_gradients_follow_the_paper(x, axis):
    lfq = LearnableFakeQuantize(bits=4, signed=True, ch_axis=axis, channels=x.shape[0])
    t = mc.Tensor(x, dtype=np.float64, requires_grad=True)
    lfq.double()
    y = lfq(t)
    s = lfq.scale.data.reshape(-1, 1) if axis == 0 else lfq.scale.data[0]
    qp = 7
    n = x.size if axis is None else x.shape[1]
    init = 2 * np.abs(x).mean(axis=None if axis is None else 1) / np.sqrt(qp)
    np.testing.assert_allclose(np.abs(lfq.scale.data), np.maximum(np.atleast_1d(init), np.finfo(np.float32).eps),
                               rtol=1e-6)
    g_out = np.cos(np.arange(x.size)).reshape(x.shape)
    y.backward(g_out)
    v = x / s
    np.testing.assert_allclose(y.data, np.clip(np.rint(v), -8, 7) * s)
    np.testing.assert_array_equal(t.grad, g_out * ((v > -8) & (v < 7)))
    ds = np.where(v <= -8, -8, np.where(v >= 7, 7, np.rint(v) - v)) * g_out
    expected = (ds.sum() if axis is None else ds.sum(axis=1)) / np.sqrt(n * qp)
    np.testing.assert_allclose(lfq.scale.grad.reshape(-1), np.atleast_1d(expected), rtol=1e-6, atol=1e-12)


# ---- QConfig -------------------------------------------------------------------------------------------
def test_qconfig_overrides_longest_prefix_wins():
    a, b = mc.quant.default_qconfig, mc.quant.int4_qconfig
    overrides = {"encoder": None, "encoder.layer1": b}
    assert qconfig_for("head", a, overrides) is a
    assert qconfig_for("encoder.layer0.linear", a, overrides) is None
    assert qconfig_for("encoder.layer1.linear", a, overrides) is b
    assert qconfig_for("encoder.layer10", a, overrides) is None      # prefixes are whole dotted names


def test_qconfig_needs_factories():
    with pytest.raises(TypeError, match="must be a factory"):
        QConfig(activation=MinMaxObserver(), weight=MinMaxObserver.with_args())
    qc = QConfig(activation=MinMaxObserver.with_args(dtype="qint8"), weight=None)
    assert qc.activation().dtype == "qint8" and qc.activation() is not qc.activation()
    assert "MinMaxObserver.with_args(dtype='qint8')" in repr(qc)
