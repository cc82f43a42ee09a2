"""Element-wise activations, each one fused Function (forward and derivative in closed form).

    relu(x)      = max(x, 0)                               relu'      = [x > 0]
    gelu(x)      = x Phi(x) = x/2 (1 + erf(x / sqrt 2))    gelu'      = Phi(x) + x phi(x)     (Hendrycks & Gimpel, 2016)
    gelu_tanh(x) = x/2 (1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715 x^3)
    silu(x)      = x sigmoid(x)                            silu'      = s (1 + x (1 - s))     (Elfwing et al., 2018)
    sigmoid(x)   = 1 / (1 + e^-x)                          sigmoid'   = s (1 - s)
    tanh(x)                                                tanh'      = 1 - tanh^2
    elu(x)       = x if x > 0 else alpha (e^x - 1)         elu'       = 1 if x > 0 else alpha e^x (Clevert et al., 2016)
    hardtanh(x)  = clamp(x, min_val, max_val)              hardtanh'  = [min_val < x < max_val]
    leaky_relu   = x if x > 0 else slope x                 relu6 = hardtanh(x, 0, 6)
Shapes: any -> the same shape. relu, sigmoid and tanh are core's ops (Function names "relu", "sigmoid",
"tanh"); the others are named "gelu", "silu", "elu", "hardtanh", "leaky_relu" for autocast's lists.
"""
import math

import numpy as np
from scipy.special import erf

from ...core import Function
from .utils import as_tensor

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _sigmoid(x):
    """Overflow-free logistic function (exp of non-positive numbers only), same dtype as x."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class GELUFn(Function):
    name = "gelu"

    @staticmethod
    def forward(ctx, x, approximate="none"):
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        if approximate == "tanh":
            t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            ctx.t = t
            return 0.5 * x * (1 + t)
        cdf = 0.5 * (1 + erf(x * _INV_SQRT2))
        ctx.cdf = cdf
        return x * cdf

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        if ctx.approximate == "tanh":
            t = ctx.t
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du), None
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
        return grad * (ctx.cdf + x * pdf), None


class SiLUFn(Function):
    name = "silu"

    @staticmethod
    def forward(ctx, x):
        s = _sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved
        return (grad * (s * (1 + x * (1 - s))),)


class ELUFn(Function):
    name = "elu"

    @staticmethod
    def forward(ctx, x, alpha=1.0):
        expm1 = alpha * np.expm1(np.minimum(x, 0))  # exp only of non-positive numbers: no overflow
        ctx.save_for_backward(x, expm1)
        ctx.alpha = alpha
        return np.where(x > 0, x, expm1)

    @staticmethod
    def backward(ctx, grad):
        x, expm1 = ctx.saved
        return grad * np.where(x > 0, 1, expm1 + ctx.alpha).astype(grad.dtype, copy=False), None


class HardtanhFn(Function):
    name = "hardtanh"

    @staticmethod
    def forward(ctx, x, min_val=-1.0, max_val=1.0):
        ctx.save_for_backward(x)
        ctx.bounds = (min_val, max_val)
        return np.clip(x, min_val, max_val)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        lo, hi = ctx.bounds
        return grad * ((x > lo) & (x < hi)), None, None


class LeakyReLUFn(Function):
    name = "leaky_relu"

    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        ctx.save_for_backward(x)
        ctx.slope = negative_slope
        return np.where(x > 0, x, x * negative_slope)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return np.where(x > 0, grad, grad * ctx.slope), None


def relu(x):
    return as_tensor(x).relu()


def sigmoid(x):
    return as_tensor(x).sigmoid()


def tanh(x):
    return as_tensor(x).tanh()


def gelu(x, approximate="none"):
    """GELU, exact erf form by default (PyTorch's default); approximate="tanh" for the tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELUFn.apply(as_tensor(x), approximate)


def silu(x):
    return SiLUFn.apply(as_tensor(x))


def elu(x, alpha=1.0):
    return ELUFn.apply(as_tensor(x), float(alpha))


def hardtanh(x, min_val=-1.0, max_val=1.0):
    if not min_val < max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) must be smaller than max_val ({max_val})")
    return HardtanhFn.apply(as_tensor(x), float(min_val), float(max_val))


def relu6(x):
    return hardtanh(x, 0.0, 6.0)


def leaky_relu(x, negative_slope=0.01):
    return LeakyReLUFn.apply(as_tensor(x), float(negative_slope))
