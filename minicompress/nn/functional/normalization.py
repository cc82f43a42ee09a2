"""layer_norm and batch_norm: normalise, then scale and shift, with closed-form backward passes.

    x_hat = (x - mean) / sqrt(var + eps)        (var biased: divided by the count n)
    y     = weight * x_hat + bias
    backward (g = dL/dy, means over the normalised elements):
        dL/dbias   = sum g,     dL/dweight = sum g x_hat
        dL/dx      = weight / sqrt(var + eps) * (g - mean(g) - x_hat mean(g x_hat))

layer_norm (Ba, Kiros & Hinton, 2016): statistics over the last len(normalized_shape) axes of each sample;
    weight and bias have shape normalized_shape.
batch_norm (Ioffe & Szegedy, 2015): statistics per channel (axis 1) over the batch and every spatial axis;
    input (N, C), (N, C, L) or (N, C, H, W); weight, bias, running_mean, running_var have shape (C,).
    training=True: normalise with the batch statistics and update the running ones in place,
        running_mean <- (1 - momentum) running_mean + momentum mean
        running_var  <- (1 - momentum) running_var  + momentum var * n / (n - 1)   (unbiased, as PyTorch)
    training=False: normalise with running_mean / running_var (an affine map: dL/dx = g weight / sqrt(rv + eps)).
Function names "layer_norm" and "batch_norm".
"""
import numpy as np

from ...core import Function
from .utils import as_tensor, raw


def _normalize_backward(grad, x_hat, rstd, weight, axes, n):
    """dL/dx for y = weight x_hat + b with x_hat normalised over `axes` (n elements) -- see the docstring."""
    sum_g = grad.sum(axis=axes, keepdims=True)
    sum_gx = (grad * x_hat).sum(axis=axes, keepdims=True)
    scale = rstd if weight is None else rstd * weight
    return scale * (grad - sum_g / n - x_hat * (sum_gx / n))


def _affine(x_hat, weight, bias):
    """weight * x_hat + bias (either optional); never returns x_hat itself, which backward keeps."""
    if weight is None and bias is None:
        return x_hat.copy()
    out = x_hat if weight is None else x_hat * weight
    return out + bias if bias is not None else out


class LayerNormFn(Function):
    name = "layer_norm"

    @staticmethod
    def forward(ctx, x, weight, bias, n_axes, eps):
        axes = tuple(range(x.ndim - n_axes, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        centred = x - mean
        var = (centred * centred).mean(axis=axes, keepdims=True)
        rstd = 1 / np.sqrt(var + eps)
        x_hat = centred * rstd
        ctx.save_for_backward(x_hat, rstd, weight)
        ctx.axes = axes
        return _affine(x_hat, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x_hat, rstd, weight = ctx.saved
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        lead = tuple(range(grad.ndim - len(ctx.axes)))
        n = int(np.prod([grad.shape[a] for a in ctx.axes]))
        # the per-sample reduction runs over the normalised axes; weight broadcasts over the leading ones
        grad_x = None
        if need_x:
            g_hat = grad if weight is None else grad * weight
            grad_x = _normalize_backward(g_hat, x_hat, rstd, None, ctx.axes, n)
        grad_w = (grad * x_hat).sum(axis=lead) if need_w else None
        grad_b = grad.sum(axis=lead) if need_b else None
        return grad_x, grad_w, grad_b, None, None


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing `normalized_shape` axes; weight/bias (optional) have that shape."""
    x = as_tensor(x)
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} must match the trailing dimensions of the "
                         f"input, got input of shape {tuple(x.shape)}")
    for arg, value in (("weight", weight), ("bias", bias)):
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"layer_norm: {arg} has shape {tuple(value.shape)}, expected normalized_shape {shape}")
    return LayerNormFn.apply(x, weight, bias, k, float(eps))


class BatchNormFn(Function):
    name = "batch_norm"

    @staticmethod
    def forward(ctx, x, weight, bias, *, running_mean, running_var, training, momentum, eps):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if training:
            n = x.size // x.shape[1]
            mean = x.mean(axis=axes, keepdims=True)
            centred = x - mean
            var = (centred * centred).mean(axis=axes, keepdims=True)
            rstd = 1 / np.sqrt(var + eps)
            x_hat = centred * rstd
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean.reshape(-1).astype(running_mean.dtype, copy=False)
            if running_var is not None:
                running_var *= 1 - momentum
                running_var += (momentum * n / max(n - 1, 1)) * var.reshape(-1).astype(running_var.dtype, copy=False)
        else:
            mean = running_mean.astype(x.dtype, copy=False).reshape(shape)
            rstd = 1 / np.sqrt(running_var.astype(x.dtype, copy=False).reshape(shape) + eps)
            x_hat = (x - mean) * rstd
        w = None if weight is None else weight.reshape(shape)
        ctx.save_for_backward(x_hat, rstd, w)
        ctx.args = (axes, training)
        return _affine(x_hat, w, None if bias is None else bias.reshape(shape))

    @staticmethod
    def backward(ctx, grad):
        x_hat, rstd, w = ctx.saved
        axes, training = ctx.args
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = None
        if need_x:
            if training:
                n = grad.size // grad.shape[1]
                grad_x = _normalize_backward(grad, x_hat, rstd, w, axes, n)
            else:
                grad_x = grad * (rstd if w is None else rstd * w)
        grad_w = (grad * x_hat).sum(axis=axes) if need_w else None
        grad_b = grad.sum(axis=axes) if need_b else None
        return grad_x, grad_w, grad_b


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """PyTorch's F.batch_norm: running_mean/running_var (arrays, updated in place when training) may be None
    only when training (then the batch statistics are used and nothing is tracked)."""
    x = as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got shape {tuple(x.shape)}")
    c = x.shape[1]
    stats = (raw(running_mean), raw(running_var))
    for arg, value in zip(("running_mean", "running_var", "weight", "bias"), stats + (weight, bias)):
        if value is not None and tuple(value.shape) != (c,):
            raise ValueError(f"batch_norm: {arg} has shape {tuple(value.shape)}, expected ({c},) for an input "
                             f"of shape {tuple(x.shape)} (channels on axis 1)")
    if not training and (stats[0] is None or stats[1] is None):
        raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
    if training and x.data.size // max(c, 1) <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                         f"shape {tuple(x.shape)}")
    # the running statistics go by keyword: they are state updated in place, not inputs an op hook may round
    return BatchNormFn.apply(x, weight, bias, running_mean=stats[0], running_var=stats[1], training=bool(training),
                             momentum=float(momentum), eps=float(eps))
