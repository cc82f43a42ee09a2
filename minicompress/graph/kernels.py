"""NumPy kernels the graph interpreter runs: one function per IR op, arrays in, one array out.

Every GEMM-like op (`linear`, `conv2d`) takes an *epilogue*: a short list of element-wise steps applied
in the GEMM's own output buffer, in place, with NumPy's `out=` ufuncs -- that is what "operator fusion"
buys on a CPU: the output is written once and then updated while it is still in cache, instead of each
activation allocating a new array and streaming the whole tensor through memory again.

    epilogue step         in-place update of y (the GEMM output, bias already added)
    ("relu",)             y = max(y, 0)
    ("add",) / ("mul",)   y = y + r / y * r      (r: the next extra operand, broadcast to y's shape)
    ("sigmoid",)          y = 1 / (1 + exp(-y))
    ("silu",)             y = y * sigmoid(y)
    ("hardtanh", lo, hi)  y = clip(y, lo, hi)
    ("elu", alpha)        y = y if y > 0 else alpha (exp(y) - 1)
    ("gelu", approximate) y = y Phi(y)   (erf form; "tanh": the tanh approximation)

conv2d is channels-last im2col + one GEMM, (N OH OW, kh kw C) @ (kh kw C, O), with the weight packed
once when the graph is compiled; bias and epilogue run on the GEMM buffer, returned as an NCHW view.
Shapes follow PyTorch (NCHW, weight OIHW).
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

SQRT_HALF = 1.0 / math.sqrt(2.0)


# ---- element-wise steps, in place --------------------------------------------------------------------
def sigmoid_(y):
    """Logistic function in place: y <- 1 / (1 + exp(-y)) (exp overflow gives 1/inf = 0, as it should)."""
    with np.errstate(over="ignore"):
        np.negative(y, out=y)
        np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)
    return y


def silu_(y):
    s = sigmoid_(y.copy())
    y *= s
    return y


def elu_(y, alpha=1.0):
    negative = np.minimum(y, 0)
    np.expm1(negative, out=negative)
    negative *= alpha
    np.maximum(y, 0, out=y)
    y += negative
    return y


def gelu_(y, approximate="none"):
    if approximate == "tanh":
        inner = y * y
        inner *= 0.044715
        inner += 1
        inner *= y
        inner *= math.sqrt(2.0 / math.pi)
        np.tanh(inner, out=inner)
    else:
        inner = y * SQRT_HALF
        erf(inner, out=inner)
    inner += 1
    inner *= 0.5
    y *= inner
    return y


def apply_epilogue(y, steps, operands=()):
    """Apply the epilogue `steps` to the fresh buffer `y` in place; `operands` feed the add/mul steps in order."""
    operands = iter(operands)
    for step in steps:
        kind = step[0]
        if kind == "relu":
            np.maximum(y, 0, out=y)
        elif kind == "add":
            np.add(y, next(operands), out=y)
        elif kind == "mul":
            np.multiply(y, next(operands), out=y)
        elif kind == "sigmoid":
            sigmoid_(y)
        elif kind == "silu":
            silu_(y)
        elif kind == "hardtanh":
            np.clip(y, step[1], step[2], out=y)
        elif kind == "elu":
            elu_(y, step[1])
        elif kind == "gelu":
            gelu_(y, step[1])
        else:
            raise ValueError(f"apply_epilogue: unknown epilogue step {step!r}")
    return y


# ---- GEMM ops -----------------------------------------------------------------------------------------
def linear(x, weight, bias=None, epilogue=(), operands=()):
    """y = x W^T + b, then the epilogue in the same buffer. x (..., in), W (out, in) -> (..., out)."""
    y = np.matmul(x, weight.T)
    if bias is not None:
        y += bias
    return apply_epilogue(y, epilogue, operands)


def windows(x, kernel, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), pad_value=0.0):
    """Receptive fields of x (N, C, H, W) as an array (N, C, OH, OW, kh, kw); a strided view unless padded.
    pads = (top, bottom, left, right)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    top, bottom, left, right = pads
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    view = sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def pack_conv_weight(weight, groups=1):
    """Per group, the weight as the right-hand GEMM operand: (O/g, C/g, kh, kw) -> (kh kw C/g, O/g), once."""
    og = weight.shape[0] // groups
    return [np.ascontiguousarray(weight[g * og:(g + 1) * og].transpose(2, 3, 1, 0).reshape(-1, og))
            for g in range(groups)]


def conv2d(x, weight, bias=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, epilogue=(),
           operands=(), packed=None):
    """2-D cross-correlation (torch.nn.functional.conv2d) as channels-last im2col + one GEMM per group.

    cols (N OH OW, kh kw C) @ packed (kh kw C, O) -> y (N OH OW, O): the bias and the epilogue run on this
    buffer in place; the result is returned as an (N, O, OH, OW) view of it (no copy), as in nn.functional.
    """
    n, c = x.shape[:2]
    out_channels, _, kh, kw = weight.shape
    packed = pack_conv_weight(weight, groups) if packed is None else packed
    (sh, sw), (dh, dw) = stride, dilation
    top, bottom, left, right = pads
    xt = x.transpose(0, 2, 3, 1)  # (N, H, W, C): a free view when x is the output of another conv here
    if top or bottom or left or right:
        xt = np.pad(xt, ((0, 0), (top, bottom), (left, right), (0, 0)))
    fields = sliding_window_view(xt, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    fields = fields[:, ::sh, ::sw, :, ::dh, ::dw]              # (N, OH, OW, C, kh, kw)
    oh, ow = fields.shape[1:3]
    cg = c // groups
    parts = []
    for g, w2 in enumerate(packed):
        cols = fields[:, :, :, g * cg:(g + 1) * cg].transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1)
        parts.append(cols @ w2)
    y = parts[0] if groups == 1 else np.concatenate(parts, axis=1)
    if bias is not None:
        y += bias
    y = y.reshape(n, oh, ow, out_channels)
    nchw = (n, out_channels, oh, ow)
    operands = [np.broadcast_to(r, nchw).transpose(0, 2, 3, 1) for r in operands]
    apply_epilogue(y, epilogue, operands)
    return y.transpose(0, 3, 1, 2)


# ---- pooling and normalisation ------------------------------------------------------------------------
def max_pool2d(x, kernel, stride, pads=(0, 0, 0, 0), dilation=(1, 1)):
    return windows(x, kernel, stride, pads, dilation, pad_value=-np.inf).max(axis=(-2, -1))


def avg_pool2d(x, kernel, stride, pads=(0, 0, 0, 0), divisor=None):
    """Window sums / divisor (divisor: kh*kw, or an (OH, OW) array of PyTorch's counts)."""
    total = windows(x, kernel, stride, pads).sum(axis=(-2, -1), dtype=x.dtype)
    total /= kernel[0] * kernel[1] if divisor is None else divisor
    return total


def batch_norm(x, running_mean, running_var, weight=None, bias=None, eps=1e-5):
    """Eval-mode BatchNorm over axis 1: (x - mean) / sqrt(var + eps) * gamma + beta."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = 1.0 / np.sqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    y = x * scale.reshape(shape).astype(x.dtype, copy=False)
    y += shift.reshape(shape).astype(x.dtype, copy=False)
    return y


def layer_norm_(y, normalized_ndim, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the last `normalized_ndim` axes of the fresh buffer y, in place (biased variance)."""
    axes = tuple(range(y.ndim - normalized_ndim, y.ndim))
    y -= y.mean(axis=axes, keepdims=True)
    var = np.mean(np.square(y), axis=axes, keepdims=True)
    var += eps
    np.sqrt(var, out=var)
    y /= var
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y


def layer_norm(x, normalized_ndim, weight=None, bias=None, eps=1e-5):
    return layer_norm_(np.array(x, copy=True), normalized_ndim, weight, bias, eps)


def add_layer_norm(a, b, normalized_ndim, weight=None, bias=None, eps=1e-5):
    """LayerNorm(a + b): the sum is normalised in its own buffer (one allocation instead of two)."""
    y = np.add(a, b)
    return layer_norm_(y, normalized_ndim, weight, bias, eps)


def softmax_(y, axis=-1):
    y -= y.max(axis=axis, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y


def softmax(x, axis=-1):
    return softmax_(np.array(x, copy=True), axis)


def log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


def scaled_masked_softmax(scores, divisor, mask=None, axis=-1):
    """softmax(scores / divisor + mask): divide into a new buffer, add the mask and normalise in place."""
    y = np.divide(scores, divisor)
    if y is scores or not isinstance(y, np.ndarray):
        y = np.array(y, copy=True)
    if mask is not None:
        np.add(y, mask, out=y)
    return softmax_(y, axis)


# ---- activations (not fused) --------------------------------------------------------------------------
def activation(x, step):
    """Apply one epilogue step to a copy of x (the unfused activation op)."""
    return apply_epilogue(np.array(x, copy=True), (step,))


def restride(x, steps):
    """A chain of reshape / permute steps as one op: NumPy copies at most once, at the reshape that needs it."""
    for kind, arg in steps:
        x = np.reshape(x, arg) if kind == "reshape" else np.transpose(x, arg)
    return x
