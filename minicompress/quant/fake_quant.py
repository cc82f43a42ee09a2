"""Fake quantization modules for quantization-aware training (QAT).

FakeQuantize (as torch.ao.quantization.FakeQuantize): an observer that keeps updating the range, then
quantize-dequantize in float with the straight-through estimator (see qparams.fake_quantize):

    forward(x):  if observer_enabled:   observer(x); scale, zp = observer.calculate_qparams()
                 if fake_quant_enabled: x = (clamp(rint(x / scale) + zp, qmin, qmax) - zp) * scale
    switches:    enable_observer(flag) / disable_observer(), enable_fake_quant(flag) / disable_fake_quant()

LearnableFakeQuantize: LSQ, "Learned Step Size Quantization" (Esser et al., ICLR 2020). The step s is a
Parameter; with v = x / s and x_hat = clamp(rint(v), Qn, Qp) * s (zero point 0):

    d x_hat / d x = 1 if Qn <= v <= Qp else 0
    d x_hat / d s = -v + rint(v)  if Qn < v < Qp;   Qn if v <= Qn;   Qp if v >= Qp
    and the gradient of s is multiplied by g = 1 / sqrt(N * Qp), N = elements per step (weights: per
    channel; activations: per sample feature count), so the step learns at the weights' pace.
Initialisation (paper): s = 2 mean(|x|) / sqrt(Qp) from the first batch.
"""
import math

import numpy as np

from ..core import Function, Tensor
from ..nn.module import Module
from ..nn.parameter import Parameter
from .observer import MovingAverageMinMaxObserver, with_args
from .qparams import as_float_array, check_qrange, fake_quantize, qrange


class FakeQuantize(Module):
    """observer + fake quantization, with on/off switches for each (torch.ao FakeQuantize)."""

    def __init__(self, observer=MovingAverageMinMaxObserver, quant_min=None, quant_max=None, **observer_kwargs):
        super().__init__()
        if quant_min is not None:
            observer_kwargs["quant_min"] = quant_min
        if quant_max is not None:
            observer_kwargs["quant_max"] = quant_max
        self.activation_post_process = observer(**observer_kwargs)
        obs = self.activation_post_process
        self.quant_min, self.quant_max = obs.quant_min, obs.quant_max
        self.ch_axis = obs.ch_axis if obs.is_per_channel else None
        self.register_buffer("fake_quant_enabled", np.array([1], dtype=np.uint8))
        self.register_buffer("observer_enabled", np.array([1], dtype=np.uint8))
        self.register_buffer("scale", np.array([1.0], dtype=np.float32))
        self.register_buffer("zero_point", np.array([0], dtype=np.int64))

    with_args = classmethod(with_args)

    @property
    def observer(self):
        return self.activation_post_process

    def enable_fake_quant(self, enabled=True):
        self.fake_quant_enabled = np.array([int(enabled)], dtype=np.uint8)
        return self

    def disable_fake_quant(self):
        return self.enable_fake_quant(False)

    def enable_observer(self, enabled=True):
        self.observer_enabled = np.array([int(enabled)], dtype=np.uint8)
        return self

    def disable_observer(self):
        return self.enable_observer(False)

    def calculate_qparams(self):
        return self.activation_post_process.calculate_qparams()

    def forward(self, x):
        if self.observer_enabled[0]:
            self.activation_post_process(x.detach() if isinstance(x, Tensor) else x)
            scale, zp = self.calculate_qparams()
            self.scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            self.zero_point = np.atleast_1d(np.asarray(zp, dtype=np.int64))
        if not self.fake_quant_enabled[0]:
            return x
        if not self.activation_post_process.has_data():
            raise ValueError("FakeQuantize: fake quantization is enabled but no range was ever observed "
                             "(enable the observer for at least one batch first)")
        if self.ch_axis is None:
            return fake_quantize(x, self.scale[0], int(self.zero_point[0]), self.quant_min, self.quant_max)
        return fake_quantize(x, self.scale, self.zero_point, self.quant_min, self.quant_max, axis=self.ch_axis)

    def extra_repr(self):
        flags = f"fake_quant_enabled={int(self.fake_quant_enabled[0])}, observer_enabled={int(self.observer_enabled[0])}"
        return f"{flags}, quant_range=[{self.quant_min}, {self.quant_max}], scale={self.scale}, zero_point={self.zero_point}"


# ---- switches for model.apply (as torch.ao.quantization.disable_observer & co.) ---------------------------
def disable_observer(module):
    """`qat_model.apply(disable_observer)`: freeze every FakeQuantize's qparams (e.g. before evaluating)."""
    if isinstance(module, FakeQuantize):
        module.disable_observer()


def enable_observer(module):
    if isinstance(module, FakeQuantize):
        module.enable_observer()


def disable_fake_quant(module):
    if isinstance(module, (FakeQuantize, LearnableFakeQuantize)):
        module.disable_fake_quant()


def enable_fake_quant(module):
    if isinstance(module, (FakeQuantize, LearnableFakeQuantize)):
        module.enable_fake_quant()


# ---- LSQ -------------------------------------------------------------------------------------------------
class LSQFn(Function):
    """x_hat = clamp(rint(x/s), qmin, qmax) * s with LSQ's gradients (module docstring); s broadcasts to x."""
    name = "lsq_fake_quantize"

    @staticmethod
    def forward(ctx, x, scale, qmin, qmax, grad_scale, reduce_axes):
        v = x / scale
        ctx.save_for_backward(v)
        ctx.qmin, ctx.qmax, ctx.grad_scale, ctx.reduce_axes = qmin, qmax, grad_scale, reduce_axes
        return (np.clip(np.rint(v), qmin, qmax) * scale).astype(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved
        low, high = v <= ctx.qmin, v >= ctx.qmax
        inside = ~(low | high)
        d_scale = np.where(low, ctx.qmin, np.where(high, ctx.qmax, np.rint(v) - v))
        g_scale = (grad * d_scale).sum(axis=ctx.reduce_axes, keepdims=True) * ctx.grad_scale
        return grad * inside, g_scale, None, None, None, None


def lsq_fake_quantize(x, scale, qmin, qmax, grad_scale=1.0, axis=None):
    """LSQ quantize-dequantize. scale: a Tensor with one element (axis=None) or x.shape[axis] elements."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    n = 1 if axis is None else x.shape[axis]
    if scale.data.size != n:
        raise ValueError(f"lsq_fake_quantize: scale must have {n} element(s) for axis={axis} and input shape "
                         f"{x.shape}, got shape {scale.shape}")
    view = [1] * x.ndim
    if axis is not None:
        view[axis % x.ndim] = n
    reduce_axes = tuple(i for i in range(x.ndim) if axis is None or i != axis % x.ndim)
    s = scale.reshape(view) if x.ndim else scale.reshape(())
    return LSQFn.apply(x, s, qmin, qmax, grad_scale, reduce_axes)


class LearnableFakeQuantize(Module):
    """LSQ fake quantizer: a learnable step `scale` (per tensor, or per channel along ch_axis), zero point 0."""

    def __init__(self, bits=8, signed=True, ch_axis=None, channels=1, quant_min=None, quant_max=None):
        super().__init__()
        default = qrange(bits, signed)
        self.quant_min, self.quant_max = check_qrange(default[0] if quant_min is None else quant_min,
                                                      default[1] if quant_max is None else quant_max,
                                                      "LearnableFakeQuantize")
        self.ch_axis = ch_axis
        self.dtype = f"q{'' if signed else 'u'}int{bits}"
        self.qscheme = "per_channel_symmetric" if ch_axis is not None else "per_tensor_symmetric"
        self.is_per_channel = ch_axis is not None
        self.scale = Parameter(np.ones(channels if ch_axis is not None else 1, dtype=np.float32))
        self.register_buffer("initialized", np.array([0], dtype=np.uint8))
        self.register_buffer("fake_quant_enabled", np.array([1], dtype=np.uint8))

    with_args = classmethod(with_args)

    def enable_fake_quant(self, enabled=True):
        self.fake_quant_enabled = np.array([int(enabled)], dtype=np.uint8)
        return self

    def disable_fake_quant(self):
        return self.enable_fake_quant(False)

    def _init_scale(self, arr):
        qp = max(self.quant_max, 1)
        if self.ch_axis is None:
            init = np.array([2 * np.abs(arr).mean() / math.sqrt(qp)])
        else:
            axes = tuple(i for i in range(arr.ndim) if i != self.ch_axis % arr.ndim)
            init = 2 * np.abs(arr).mean(axis=axes) / math.sqrt(qp)
        self.scale.data = np.maximum(init, np.finfo(np.float32).eps).astype(self.scale.data.dtype)
        self.initialized = np.array([1], dtype=np.uint8)

    def forward(self, x):
        if not self.fake_quant_enabled[0]:
            return x
        arr = as_float_array(x, "LearnableFakeQuantize")
        if not self.initialized[0]:
            self._init_scale(arr)
        per_step = arr.size if self.ch_axis is None else arr.size // arr.shape[self.ch_axis]
        grad_scale = 1.0 / math.sqrt(per_step * max(self.quant_max, 1))
        return lsq_fake_quantize(x, self.scale, self.quant_min, self.quant_max, grad_scale, self.ch_axis)

    def has_data(self):
        return bool(self.initialized[0])

    def calculate_qparams(self):
        if not self.has_data():
            raise ValueError("LearnableFakeQuantize: the step is not initialised yet (no data seen)")
        scale = np.abs(self.scale.data).astype(np.float32)
        zp = np.zeros(scale.shape, dtype=np.int64)
        return (scale, zp) if self.ch_axis is not None else (np.float32(scale[0]), 0)

    def extra_repr(self):
        return f"quant_range=[{self.quant_min}, {self.quant_max}], ch_axis={self.ch_axis}, lsq=True"
