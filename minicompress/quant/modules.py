"""Modules that live in a *prepared* model (between prepare() and convert()).

    Observed(module, qconfig, input_observer, relu)     a Linear / Conv2d (+ fused ReLU) with three watchers:
        x -> input_observer -> op(x, weight_observer(W), b) -> [relu] -> output_observer -> y
    With observers (PTQ) the watchers only record ranges and the model computes in float. With FakeQuantize
    watchers (QAT, prepare_qat) the same forward *is* fake-quantized training. The input observer is shared
    with the previous layer's output observer inside a Sequential, so both sides agree on one (scale, zp).

    FixedFakeQuantize(scale, zero_point, qmin, qmax, axis)  fake quantization with frozen qparams: simulate()
        puts these in place of the observers to get the fake-quantized twin of the integer model.
    FloatFunctional: `add(a, b)` for residual connections, observable (so convert can make it an integer add).
    Identity: a placeholder left where a BatchNorm was folded into its conv or a ReLU fused into its layer.
"""
import numpy as np

from ..core import Tensor
from ..nn.module import Module
from .qparams import fake_quantize


class Identity(Module):
    def __init__(self, note=""):
        super().__init__()
        self.note = note

    def forward(self, x):
        return x

    def extra_repr(self):
        return self.note


class FixedFakeQuantize(Module):
    """x -> (clamp(rint(x/s) + zp, qmin, qmax) - zp) * s with fixed qparams (per-tensor or per-channel on axis)."""

    def __init__(self, scale, zero_point, qmin, qmax, axis=None):
        super().__init__()
        self.scale, self.zero_point, self.qmin, self.qmax, self.axis = scale, zero_point, qmin, qmax, axis

    def forward(self, x):
        return fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax, axis=self.axis)

    def calculate_qparams(self):
        return self.scale, self.zero_point


def _conv_args(conv):
    return dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)


class Observed(Module):
    """A quantizable layer in a prepared model (see module docstring)."""

    def __init__(self, module, qconfig, input_observer, relu=False, name=""):
        super().__init__()
        self.module = module
        self.input_observer = input_observer
        self.weight_observer = qconfig.weight()
        self.output_observer = qconfig.activation()
        self.relu = bool(relu)
        self.qconfig = qconfig
        self.layer_name = name
        self.bias_scale = None  # set by simulate(): the bias is then rounded to the int32 grid s_x * s_w

    def float_op(self, x, weight):
        """The layer's own op with a (possibly fake-quantized) weight (and bias, in simulate())."""
        from ..nn import functional as F
        bias = self.module.bias
        if bias is not None and self.bias_scale is not None:
            bias = Tensor((np.rint(bias.data.astype(np.float64) / self.bias_scale) * self.bias_scale)
                          .astype(bias.data.dtype))
        if type(self.module).__name__ == "Linear":
            return F.linear(x, weight, bias)
        return F.conv2d(x, weight, bias, **_conv_args(self.module))

    def forward(self, x):
        x = self.input_observer(x)
        if hasattr(self.module, "folded"):     # ConvBn2d: it fake-quantizes its own BN-folded weight
            y = self.module(x, self.weight_observer)
            return self.output_observer(y.relu() if self.relu else y)
        w = self.weight_observer(self.module.weight)
        y = self.module(x) if w is self.module.weight and self.bias_scale is None else self.float_op(x, w)
        if self.relu:
            y = y.relu()
        return self.output_observer(y)

    def extra_repr(self):
        return f"relu={self.relu}"


class FloatFunctional(Module):
    """Residual add as a module, so that quantization can observe it: `self.skip = FloatFunctional()`,
    then `out = self.skip.add(x, y)` in forward (torch.ao.nn.quantized.FloatFunctional)."""

    def __init__(self):
        super().__init__()
        self.activation_post_process = Identity()

    def forward(self, x):
        raise RuntimeError("FloatFunctional: call .add(a, b), not the module itself")

    def add(self, a, b):
        return self.activation_post_process(a + b)


class ObservedAdd(Module):
    """FloatFunctional.add with observers on both inputs and the output (prepared form)."""

    def __init__(self, qconfig, name=""):
        super().__init__()
        self.observer_a, self.observer_b = qconfig.activation(), qconfig.activation()
        self.output_observer = qconfig.activation()
        self.layer_name = name

    def forward(self, x):
        raise RuntimeError("ObservedAdd: call .add(a, b)")

    def add(self, a, b):
        a, b = (t.dequantize() if hasattr(t, "dequantize") and not isinstance(t, Tensor) else t for t in (a, b))
        return self.output_observer(self.observer_a(a) + self.observer_b(b))
