"""Histogram observers: record a histogram of everything seen, then search the clipping range.

Clipping trades a larger rounding error (wide range, big scale) against clipping error (narrow range).
Each observer keeps a `bins`-bin histogram (default 2048) over [min seen, max seen]; when a later batch
widens the range the old counts are moved to the new bins by their bin centres (an approximation, as in
PyTorch's HistogramObserver). The candidate ranges are scored on the bin centres c_i with counts n_i:

    L2(lo, hi) = sum_i n_i (c_i - fake_quant(c_i; calc_qparams(lo, hi)))^2

    HistogramObserver   search lo over lower quantiles x upper quantiles for hi (an asymmetric grid of
                        (lo, hi) pairs), keep the L2-minimiser -- the spirit of torch's HistogramObserver
                        (`_non_linear_param_search`), vectorised instead of its greedy loop.
    MSEObserver         grid search of a common clip factor a in (0, 1]: range = a * [min, max] (NNCF / INC "mse").
    PercentileObserver  range = [percentile(100 - p), percentile(p)] of the data (p = 99.99 by default).
    EntropyObserver     TensorRT's INT8 calibration (Migacz, GTC 2017): histogram of |x| over [0, max |x|] (the
                        first bin, which holds the zeros of ReLU outputs, set to its neighbour's count), for each threshold
                        bin i: P = hist[:i] with the outliers folded into bin i-1, Q = P merged into the number
                        of quantization levels and expanded back; pick i minimising KL(P || Q);
                        threshold t = (i + 0.5) * bin_width, range = [max(min, -t), min(max, t)]. Ties within
                        1e-9 go to the widest threshold. Guard: a threshold may clip at most max_clip_fraction
                        (1%) of the values -- TensorRT instead starts at bin 128 of 2048; without a guard, discrete
                        data such as pixels (a few spikes) reaches KL ~ 0 with a window holding one spike.
"""
import numpy as np

from .observer import ObserverBase
from .qparams import calc_qparams


class _HistogramBase(ObserverBase):
    use_abs = False

    def __init__(self, bins=2048, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, **kwargs)
        if not isinstance(bins, (int, np.integer)) or bins < 16:
            raise ValueError(f"{type(self).__name__}: bins must be an int >= 16, got {bins!r}")
        self.bins = int(bins)
        self.register_buffer("histogram", np.zeros(self.bins, dtype=np.float64))
        self.register_buffer("min_val", np.array(np.inf, dtype=np.float32))
        self.register_buffer("max_val", np.array(-np.inf, dtype=np.float32))
        self.register_buffer("hist_min", np.array(np.inf, dtype=np.float32))
        self.register_buffer("hist_max", np.array(-np.inf, dtype=np.float32))

    def has_data(self):
        return bool(np.isfinite(self.min_val))

    def observe(self, arr):
        self.min_val = np.minimum(self.min_val, arr.min()).astype(np.float32)
        self.max_val = np.maximum(self.max_val, arr.max()).astype(np.float32)
        values = np.abs(arr) if self.use_abs else arr
        lo = 0.0 if self.use_abs else float(min(self.hist_min, values.min()))
        hi = float(max(self.hist_max, values.max()))
        hist = self.histogram
        if self.histogram.sum() > 0 and (lo < self.hist_min or hi > self.hist_max):
            hist = self._rebin(lo, hi)
        if hi > lo:
            hist = hist + np.histogram(values, bins=self.bins, range=(lo, hi))[0]
        else:
            hist = hist.copy()
            hist[0] += values.size
        self.histogram, self.hist_min, self.hist_max = hist, np.float32(lo), np.float32(hi)

    def _rebin(self, lo, hi):
        old_edges = np.linspace(float(self.hist_min), float(self.hist_max), self.bins + 1)
        centres = (old_edges[:-1] + old_edges[1:]) / 2
        return np.histogram(centres, bins=self.bins, range=(lo, hi), weights=self.histogram)[0]

    def _centres(self):
        edges = np.linspace(float(self.hist_min), float(self.hist_max), self.bins + 1)
        return (edges[:-1] + edges[1:]) / 2, edges

    def _l2_errors(self, lows, highs):
        """L2 quantization error on the histogram of each candidate range (lows[k], highs[k])."""
        centres, _ = self._centres()
        scale, zp = calc_qparams(np.asarray(lows), np.asarray(highs), self.quant_min, self.quant_max,
                                 self.symmetric)
        s, z = scale[:, None].astype(np.float64), zp[:, None]
        fq = (np.clip(np.rint(centres[None, :] / s) + z, self.quant_min, self.quant_max) - z) * s
        return ((centres[None, :] - fq) ** 2 * self.histogram[None, :]).sum(axis=1)

    def chosen_range(self):
        if float(self.hist_max) <= float(self.hist_min):
            return self.min_val, self.max_val
        return self.search_range()


class HistogramObserver(_HistogramBase):
    """L2-minimising (lo, hi) over a grid of lower x upper quantiles of the histogram."""

    def __init__(self, bins=2048, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, n_candidates=48, **kwargs):
        super().__init__(bins, dtype, qscheme, reduce_range, quant_min, quant_max, **kwargs)
        self.n_candidates = int(n_candidates)

    def search_range(self):
        _, edges = self._centres()
        cdf = np.concatenate([[0.0], np.cumsum(self.histogram)]) / self.histogram.sum()
        tails = np.concatenate([[0.0], np.geomspace(1e-6, 0.3, self.n_candidates - 1)])
        lows = np.interp(tails, cdf, edges)          # quantile(tail) by linear interpolation in the bins
        highs = np.interp(1 - tails, cdf, edges)
        lows[0], highs[0] = float(self.min_val), float(self.max_val)
        lo_grid, hi_grid = np.meshgrid(lows, highs, indexing="ij")
        lo_grid, hi_grid = lo_grid.ravel(), np.maximum(hi_grid.ravel(), lo_grid.ravel())
        best = int(np.argmin(self._l2_errors(lo_grid, hi_grid)))
        return np.float32(lo_grid[best]), np.float32(hi_grid[best])


class MSEObserver(_HistogramBase):
    """Grid search of a clip factor a: range = a * [min, max], a in linspace(1/grid, 1, grid)."""

    def __init__(self, grid=100, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, bins=2048, **kwargs):
        super().__init__(bins, dtype, qscheme, reduce_range, quant_min, quant_max, **kwargs)
        self.grid = int(grid)

    def search_range(self):
        factors = np.linspace(1.0 / self.grid, 1.0, self.grid)
        lows, highs = factors * float(self.min_val), factors * float(self.max_val)
        best = int(np.argmin(self._l2_errors(lows, highs)))
        return np.float32(lows[best]), np.float32(highs[best])


class PercentileObserver(_HistogramBase):
    """range = [percentile(100 - p), percentile(p)] from the histogram (linear within a bin)."""

    def __init__(self, percentile=99.99, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, bins=2048, **kwargs):
        super().__init__(bins, dtype, qscheme, reduce_range, quant_min, quant_max, **kwargs)
        if not 50 < percentile <= 100:
            raise ValueError(f"PercentileObserver: percentile must be in (50, 100], got {percentile}")
        self.percentile = float(percentile)

    def search_range(self):
        _, edges = self._centres()
        cdf = np.concatenate([[0.0], np.cumsum(self.histogram)]) / self.histogram.sum()
        p = self.percentile / 100
        return np.float32(np.interp(1 - p, cdf, edges)), np.float32(np.interp(p, cdf, edges))


class EntropyObserver(_HistogramBase):
    """KL-divergence calibration (TensorRT): the |x| threshold whose quantized distribution loses least."""

    use_abs = True

    def __init__(self, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False, quant_min=None,
                 quant_max=None, bins=2048, max_clip_fraction=0.01, **kwargs):
        super().__init__(bins, dtype, qscheme, reduce_range, quant_min, quant_max, **kwargs)
        self.max_clip_fraction = float(max_clip_fraction)

    def levels(self):
        """Quantization levels available on the |x| side: all of them for non-negative data in an unsigned
        range, half of them otherwise (TensorRT's 128 for int8)."""
        n = self.quant_max - self.quant_min + 1
        return n if (self.quant_min >= 0 and float(self.min_val) >= 0) else n // 2

    def search_range(self):
        hist, n_levels = self.histogram.copy(), self.levels()
        hist[0] = hist[1]  # the spike of exact zeros (ReLU outputs) would dominate P: as NVIDIA's pytorch-quantization
        bin_width = (float(self.hist_max) - float(self.hist_min)) / self.bins
        candidates = np.arange(min(n_levels, self.bins), self.bins + 1)
        clipped = 1 - np.cumsum(self.histogram)[candidates - 1] / self.histogram.sum()
        candidates = candidates[clipped <= self.max_clip_fraction]
        kls = np.array([kl_after_merge(hist, i, n_levels) for i in candidates])
        # ties (e.g. discrete data, where several windows give KL = 0) go to the widest threshold: less clipping
        best_i = int(candidates[np.nonzero(kls <= kls.min() + KL_TIE)[0][-1]]) if np.isfinite(kls.min()) else self.bins
        threshold = float(self.hist_min) + (best_i + 0.5) * bin_width if best_i < self.bins else float(self.hist_max)
        return (np.float32(max(float(self.min_val), -threshold)), np.float32(min(float(self.max_val), threshold)))


KL_TIE = 1e-9


def kl_after_merge(hist, i, n_levels):
    """KL(P || Q): P = hist[:i] with hist[i:] added to its last bin, Q = P merged into n_levels groups of bins
    and spread back evenly over the non-empty bins of each group (TensorRT's reference algorithm)."""
    p = hist[:i].astype(np.float64).copy()
    p[-1] += hist[i:].sum()
    sliced = hist[:i]
    starts = (np.arange(n_levels) * i) // n_levels
    merged = np.add.reduceat(sliced, starts)
    nonzero = np.add.reduceat((sliced != 0).astype(np.float64), starts)
    group = np.repeat(np.arange(n_levels), np.diff(np.append(starts, i)))
    q = np.where(sliced != 0, merged[group] / np.maximum(nonzero[group], 1), 0.0)
    if p.sum() == 0 or q.sum() == 0:
        return np.inf
    p, q = p / p.sum(), q / q.sum()
    mask = p > 0
    if np.any(q[mask] == 0):
        q = np.where(q == 0, 1e-12, q)  # outliers folded into the last bin can land where Q is empty
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
