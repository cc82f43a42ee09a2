"""Observers: modules that watch a tensor during calibration and then choose its (scale, zero_point).

    obs = MinMaxObserver(dtype="quint8")        # or bits=8, signed=False
    obs(x1); obs(x2)                            # record statistics (returns x unchanged)
    scale, zero_point = obs.calculate_qparams() # via calc_qparams on the chosen range [min_val, max_val]

The split (observer -> range -> qparams) is torch.ao.quantization's:
    MinMaxObserver               range = [min x, max x] over everything seen
    MovingAverageMinMaxObserver  min_t = min_{t-1} + c (min(x_t) - min_{t-1}), c = averaging_constant = 0.01
    PerChannelMinMaxObserver     one [min, max] per slice along ch_axis (weights: ch_axis=0, the output channel)
The histogram-based observers (Histogram, Percentile, MSE, Entropy) are in `histogram_observer.py`.

Arguments as PyTorch: dtype ("quint8", "qint8", "quint4", "qint4", ... "q[u]int<bits>") or bits + signed;
qscheme "per_tensor_affine" | "per_tensor_symmetric" | "per_channel_affine" | "per_channel_symmetric";
reduce_range; quant_min / quant_max (override the range). State (buffers, as torch): min_val, max_val.
"""
import functools
import re

import numpy as np

from ..core import Tensor
from ..nn.module import Module
from .qparams import as_float_array, calc_qparams, check_qrange, qrange

QSCHEMES = ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric")


def parse_dtype(dtype=None, bits=None, signed=None):
    """("quint8" | "qint4" | ..., or bits + signed) -> (bits, signed, name)."""
    if dtype is not None:
        m = re.fullmatch(r"q(u?)int(\d+)", str(dtype))
        if m is None:
            raise ValueError(f"dtype must look like 'quint8' / 'qint8' / 'qint4', got {dtype!r}")
        d_bits, d_signed = int(m.group(2)), m.group(1) == ""
        if bits is not None and bits != d_bits or signed is not None and signed != d_signed:
            raise ValueError(f"dtype={dtype!r} disagrees with bits={bits}, signed={signed}")
        bits, signed = d_bits, d_signed
    bits = 8 if bits is None else bits
    signed = False if signed is None else bool(signed)
    return bits, signed, f"q{'' if signed else 'u'}int{bits}"


class with_args:
    """`Observer.with_args(**kw)`: a factory (callable with no arguments) that remembers its arguments.

    A plain partial with a readable repr, as torch.ao.quantization's `_PartialWrapper`.
    """

    def __init__(self, cls, **kwargs):
        self.cls, self.kwargs = cls, kwargs
        functools.update_wrapper(self, cls, updated=())

    def __call__(self, **more):
        return self.cls(**{**self.kwargs, **more})

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.cls.__name__}.with_args({args})"


class ObserverBase(Module):
    """Common arguments, the (qmin, qmax) range and the qparams formula; subclasses record a range."""

    per_channel_ok = False

    def __init__(self, dtype=None, qscheme="per_tensor_affine", reduce_range=False, quant_min=None,
                 quant_max=None, *, bits=None, signed=None, narrow_range=False, ch_axis=None):
        super().__init__()
        name = type(self).__name__
        if qscheme not in QSCHEMES:
            raise ValueError(f"{name}: qscheme must be one of {QSCHEMES}, got {qscheme!r}")
        if qscheme.startswith("per_channel") and not self.per_channel_ok:
            raise ValueError(f"{name} is a per-tensor observer; use PerChannelMinMaxObserver for {qscheme!r}")
        try:
            self.bits, self.signed, self.dtype = parse_dtype(dtype, bits, signed)
            default = qrange(self.bits, self.signed, reduce_range, narrow_range)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        qmin = default[0] if quant_min is None else quant_min
        qmax = default[1] if quant_max is None else quant_max
        self.quant_min, self.quant_max = check_qrange(qmin, qmax, name)
        self.qscheme, self.reduce_range, self.ch_axis = qscheme, reduce_range, ch_axis
        self.symmetric = qscheme.endswith("symmetric")

    with_args = classmethod(with_args)

    @property
    def is_per_channel(self):
        return self.qscheme.startswith("per_channel")

    def forward(self, x):
        self.observe(as_float_array(x, type(self).__name__, "observed input").astype(np.float32, copy=False))
        return x

    def observe(self, arr):
        raise NotImplementedError

    def has_data(self):
        raise NotImplementedError

    def chosen_range(self):
        """The (min, max) the qparams are computed from (after any clipping search)."""
        raise NotImplementedError

    def calculate_qparams(self):
        if not self.has_data():
            raise ValueError(f"{type(self).__name__}: no data observed yet; run calibration batches through "
                             f"the model (or call the observer on an array) before calculate_qparams()")
        lo, hi = self.chosen_range()
        return calc_qparams(lo, hi, self.quant_min, self.quant_max, self.symmetric)

    def extra_repr(self):
        head = f"dtype={self.dtype}, qscheme={self.qscheme}, quant_range=[{self.quant_min}, {self.quant_max}]"
        if not self.has_data():
            return head + ", no data yet"
        lo, hi = self.chosen_range()
        scale, zp = self.calculate_qparams()
        if np.ndim(scale) == 0:
            return head + f", range=[{float(lo):.4g}, {float(hi):.4g}], scale={float(scale):.4g}, zero_point={zp}"
        return (head + f", channels={len(scale)}, range=[{np.min(lo):.4g}, {np.max(hi):.4g}], "
                f"scale in [{scale.min():.4g}, {scale.max():.4g}], zero_point in [{zp.min()}, {zp.max()}]")


class MinMaxObserver(ObserverBase):
    """range = [running min, running max] of everything observed."""

    def __init__(self, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False, quant_min=None,
                 quant_max=None, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, **kwargs)
        self.register_buffer("min_val", np.array(np.inf, dtype=np.float32))
        self.register_buffer("max_val", np.array(-np.inf, dtype=np.float32))

    def observe(self, arr):
        self.min_val = np.minimum(self.min_val, arr.min()).astype(np.float32)
        self.max_val = np.maximum(self.max_val, arr.max()).astype(np.float32)

    def has_data(self):
        return bool(np.all(np.isfinite(self.min_val)))

    def chosen_range(self):
        return self.min_val, self.max_val


class MovingAverageMinMaxObserver(MinMaxObserver):
    """min_t = min_{t-1} + c (min(x_t) - min_{t-1}) (same for max); the first batch sets the range."""

    def __init__(self, averaging_constant=0.01, dtype="quint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, **kwargs)
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"MovingAverageMinMaxObserver: averaging_constant must be in (0, 1], "
                             f"got {averaging_constant}")
        self.averaging_constant = float(averaging_constant)

    def observe(self, arr):
        lo, hi = arr.min(), arr.max()
        if not self.has_data():
            self.min_val, self.max_val = np.float32(lo), np.float32(hi)
            return
        c = np.float32(self.averaging_constant)
        self.min_val = np.float32(self.min_val + c * (lo - self.min_val))
        self.max_val = np.float32(self.max_val + c * (hi - self.max_val))


class PerChannelMinMaxObserver(ObserverBase):
    """One [min, max] per slice along ch_axis (reduce over every other axis); qparams are 1-D arrays."""

    per_channel_ok = True

    def __init__(self, ch_axis=0, dtype="qint8", qscheme="per_channel_symmetric", reduce_range=False,
                 quant_min=None, quant_max=None, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, ch_axis=ch_axis, **kwargs)
        if not self.is_per_channel:
            raise ValueError(f"PerChannelMinMaxObserver: qscheme must be per_channel_*, got {qscheme!r}")
        self.register_buffer("min_val", np.zeros(0, dtype=np.float32))
        self.register_buffer("max_val", np.zeros(0, dtype=np.float32))

    def observe(self, arr):
        if not -arr.ndim <= self.ch_axis < arr.ndim:
            raise ValueError(f"PerChannelMinMaxObserver: ch_axis={self.ch_axis} is out of range for an input "
                             f"of shape {arr.shape}")
        axes = tuple(i for i in range(arr.ndim) if i != self.ch_axis % arr.ndim)
        lo, hi = arr.min(axis=axes), arr.max(axis=axes)
        if self.min_val.size and self.min_val.shape != lo.shape:
            raise ValueError(f"PerChannelMinMaxObserver: saw {self.min_val.size} channels before, now an input "
                             f"of shape {arr.shape} with {lo.size} along ch_axis={self.ch_axis}")
        if self.min_val.size:
            lo, hi = np.minimum(self.min_val, lo), np.maximum(self.max_val, hi)
        self.min_val, self.max_val = lo.astype(np.float32), hi.astype(np.float32)

    def has_data(self):
        return self.min_val.size > 0

    def chosen_range(self):
        return self.min_val, self.max_val
