"""max_pool2d and avg_pool2d over (N, C, H, W), with PyTorch's padding, dilation and ceil_mode rules.

    Ho = floor_or_ceil((H + 2 pad - d (k - 1) - 1) / s) + 1        (ceil_mode: a last window must start
                                                                     inside the input or the left padding)
    max:  y[n, c, i, j] = max_{p, q} x_pad[n, c, i s + p d, j s + q d]      (padding is -inf)
          backward: the gradient goes to the first maximum of each window (argmax routing, as PyTorch);
          the forward keeps only the maxima, the backward finds each window's first element equal to it
    avg:  y = sum_{p, q} x_pad[...] / divisor,  divisor = kh kw (count_include_pad=True; windows are clipped
          to the padded input in ceil mode) or the number of real (non-padding) elements, or divisor_override
          backward: each input element gets g / divisor from every window that covers it
Both loop over the kh*kw kernel offsets with whole-array NumPy ops (never over pixels). Inputs may also be
unbatched (C, H, W). Function names "max_pool2d" and "avg_pool2d".
"""
import numpy as np

from ...core import Function, stack
from .utils import as_tensor, pair


def pool_output_size(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling_output_shape."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _window(xp, p, q, geometry):
    """The strided view x_pad[:, :, p dh :: sh, q dw :: sw] of the kernel offset (p, q), shape (N, C, Ho, Wo)."""
    (sh, sw), (dh, dw), (ho, wo) = geometry
    r, s = p * dh, q * dw
    return xp[:, :, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw]


def _pad(x, pads, value):
    """Pad H by (top, bottom) and W by (left, right) with `value` (no copy when nothing is padded)."""
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    xp = np.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    xp[:, :, top:top + h, left:left + w] = x
    return xp


def window_max(xp, kernel, geometry):
    """The maximum of every window: kh*kw element-wise np.maximum passes (NaN propagates, as PyTorch)."""
    kh, kw = kernel
    out = _window(xp, 0, 0, geometry).copy()
    for k in range(1, kh * kw):
        np.maximum(out, _window(xp, k // kw, k % kw, geometry), out=out)
    return out


def first_max_hits(xp, out, kernel, geometry):
    """For each kernel offset k = p * kw + q in order, the mask of windows whose FIRST maximum sits at k
    (ties go to the first offset, as PyTorch's argmax; a NaN counts as the maximum)."""
    kh, kw = kernel
    nan_out = np.isnan(out)
    check_nan = nan_out.any()
    taken = np.zeros(out.shape, dtype=bool)
    for k in range(kh * kw):
        v = _window(xp, k // kw, k % kw, geometry)
        hit = v == out
        if check_nan:
            hit |= np.isnan(v) & nan_out
        np.greater(hit, taken, out=hit)  # hit and not yet taken
        taken |= hit
        yield k, hit


class MaxPool2dFn(Function):
    name = "max_pool2d"

    @staticmethod
    def forward(ctx, x, *, kernel, stride, pads, dilation, out_hw):
        xp = _pad(x, pads, -np.inf)
        geometry = (stride, dilation, out_hw)
        out = window_max(xp, kernel, geometry)
        ctx.save_for_backward(xp, out)  # the argmax is recovered in backward (cheaper than tracking it here)
        ctx.args = (x.shape, pads, kernel, geometry)
        return out

    @staticmethod
    def backward(ctx, grad):
        xp, out = ctx.saved
        x_shape, pads, (kh, kw), geometry = ctx.args
        dxp = np.zeros(xp.shape, dtype=grad.dtype)
        for k, hit in first_max_hits(xp, out, (kh, kw), geometry):
            _window(dxp, k // kw, k % kw, geometry)[...] += grad * hit
        top, _, left, _ = pads
        return (dxp[:, :, top:top + x_shape[2], left:left + x_shape[3]],)


class AvgPool2dFn(Function):
    name = "avg_pool2d"

    @staticmethod
    def forward(ctx, x, *, kernel, stride, pads, dilation, out_hw, divisor):
        xp = _pad(x, pads, 0)
        geometry = (stride, dilation, out_hw)
        kh, kw = kernel
        out = _window(xp, 0, 0, geometry).copy()
        for k in range(1, kh * kw):
            out += _window(xp, k // kw, k % kw, geometry)
        out /= divisor
        ctx.args = (x.shape, xp.shape, pads, kernel, geometry, divisor)
        return out

    @staticmethod
    def backward(ctx, grad):
        x_shape, padded_shape, pads, (kh, kw), geometry, divisor = ctx.args
        share = grad / divisor
        dxp = np.zeros(padded_shape, dtype=grad.dtype)
        for k in range(kh * kw):
            _window(dxp, k // kw, k % kw, geometry)[...] += share
        top, _, left, _ = pads
        return (dxp[:, :, top:top + x_shape[2], left:left + x_shape[3]],)


def _geometry(x, kernel_size, stride, padding, dilation, ceil_mode, op):
    """Check the arguments and work out the output size and the (top, bottom, left, right) padding."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected input of shape (N, C, H, W) (or unbatched (C, H, W)), "
                         f"got shape {tuple(x.shape)}")
    kernel = pair(kernel_size, "kernel_size", op, minimum=1)
    stride = kernel if stride is None or stride == () else pair(stride, "stride", op, minimum=1)
    pad = pair(padding, "padding", op)
    dilation = pair(dilation, "dilation", op, minimum=1)
    h, w = x.shape[-2:]
    out_hw, pads = [], []
    for size, k, s, p, d, axis in zip((h, w), kernel, stride, pad, dilation, ("height", "width")):
        eff = d * (k - 1) + 1
        if 2 * p > eff:
            raise ValueError(f"{op}: padding {p} should be at most half of the effective kernel size {eff} "
                             f"(kernel_size={kernel_size}, dilation={dilation})")
        n_out = pool_output_size(size, k, s, p, d, ceil_mode)
        if n_out < 1:
            raise ValueError(f"{op}: kernel size {eff} is larger than the padded input {axis} {size + 2 * p} "
                             f"(input shape {tuple(x.shape)})")
        out_hw.append(n_out)
        extra = max(0, (n_out - 1) * s + eff - (size + 2 * p))  # ceil mode: windows hanging off the end
        pads += [p, p + extra]
    return kernel, stride, tuple(pads), dilation, tuple(out_hw)


def _batched(x, fn):
    """Run fn on a 4-D tensor; unbatched (C, H, W) inputs go through as a batch of one."""
    if x.ndim == 3:
        out = fn(x.reshape(1, *x.shape))
        return out.reshape(out.shape[1:])
    return fn(x)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over kh x kw windows (stride defaults to kernel_size). return_indices=True also returns, as
    PyTorch, the flat index (row * W + col) into each input plane of every window's maximum."""
    x = as_tensor(x)
    kernel, stride, pads, dilation, out_hw = _geometry(x, kernel_size, stride, padding, dilation, ceil_mode,
                                                       "max_pool2d")
    out = _batched(x, lambda t: MaxPool2dFn.apply(t, kernel=kernel, stride=stride, pads=pads, dilation=dilation,
                                                  out_hw=out_hw))
    if not return_indices:
        return out
    return out, _flat_indices(x, kernel, stride, pads, dilation, out_hw)


def _flat_indices(x, kernel, stride, pads, dilation, out_hw):
    """PyTorch's return_indices: row * W + col of each window's (first) maximum in its input plane."""
    data = x.data if x.ndim == 4 else x.data[None]
    xp = _pad(data, pads, -np.inf)
    geometry = (stride, dilation, out_hw)
    argmax = np.zeros((data.shape[0], data.shape[1]) + out_hw, dtype=np.int64)
    for k, hit in first_max_hits(xp, window_max(xp, kernel, geometry), kernel, geometry):
        argmax[hit] = k
    p, q = argmax // kernel[1], argmax % kernel[1]
    rows = np.arange(out_hw[0]).reshape(-1, 1) * stride[0] - pads[0] + p * dilation[0]
    cols = np.arange(out_hw[1]).reshape(1, -1) * stride[1] - pads[2] + q * dilation[1]
    indices = rows * x.shape[-1] + cols
    return indices if x.ndim == 4 else indices[0]


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over kh x kw windows (stride defaults to kernel_size); divisor rules in the module docstring."""
    x = as_tensor(x)
    kernel, stride, pads, dilation, out_hw = _geometry(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("avg_pool2d: divisor_override must not be zero")
        divisor = float(divisor_override)
    else:
        h, w = x.shape[-2:]
        rows = _window_counts(h, kernel[0], stride[0], pads[0], out_hw[0], count_include_pad)
        cols = _window_counts(w, kernel[1], stride[1], pads[2], out_hw[1], count_include_pad)
        divisor = (rows[:, None] * cols[None, :]).astype(x.dtype)
    return _batched(x, lambda t: AvgPool2dFn.apply(t, kernel=kernel, stride=stride, pads=pads, dilation=dilation,
                                                   out_hw=out_hw, divisor=divisor))


def _window_counts(size, kernel, stride, pad, n_out, include_pad):
    """How many elements of each window count for the divisor, along one axis (PyTorch's rule)."""
    start = np.arange(n_out) * stride - pad
    end = np.minimum(start + kernel, size + pad)   # windows are clipped to the padded input
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


def adaptive_avg_pool2d(x, output_size):
    """Average over the PyTorch adaptive windows rows [floor(i H / Ho), ceil((i + 1) H / Ho)) (likewise columns).
    Equal windows (H % Ho == 0 and W % Wo == 0) run as one avg_pool2d; otherwise one mean per output cell."""
    x = as_tensor(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"adaptive_avg_pool2d: expected input of shape (N, C, H, W) (or unbatched (C, H, W)), "
                         f"got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    ho, wo = (h if sizes[0] is None else sizes[0]), (w if sizes[1] is None else sizes[1])
    if not all(isinstance(s, (int, np.integer)) and s >= 1 for s in (ho, wo)):
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive ints, got {output_size!r}")
    if h % ho == 0 and w % wo == 0:
        return avg_pool2d(x, (h // ho, w // wo))
    cells = [x[..., (i * h) // ho:-((-(i + 1) * h) // ho), (j * w) // wo:-((-(j + 1) * w) // wo)].mean(axis=(-2, -1))
             for i in range(ho) for j in range(wo)]
    out = stack(cells, axis=-1)
    return out.reshape(out.shape[:-1] + (ho, wo))
