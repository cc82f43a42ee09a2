"""conv2d by im2col + one BLAS matrix product; the backward scatters with a col2im over kernel offsets.

    x: (N, C, H, W)   weight: (O, C, kh, kw)   bias: (O,)   ->   y: (N, O, Ho, Wo)
    Ho = (H + pad_top + pad_bottom - dh (kh - 1) - 1) // sh + 1        (likewise Wo)
    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x_pad[n, c, i sh + p dh, j sw + q dw]

im2col (Chellapilla et al., 2006): gather every receptive field into one row of a matrix
    cols: (N Ho Wo, kh kw C),  rows ordered (n, i, j), columns ordered (p, q, c)
so that the convolution is ONE matrix product with the weight laid out the same way, W2: (O, kh kw C):
    y2 = cols @ W2^T + b                                       (N Ho Wo, O)
Backward (g2 = dL/dy laid out like y2):
    dL/dW2 = g2^T @ cols      dL/db = sum over rows of g2      dL/dcols = g2 @ W2
    dL/dx  = col2im(dL/dcols): for each of the kh*kw kernel offsets (p, q), add the (N, Ho, Wo, C) slab
             of dL/dcols into the strided window x_pad[:, p dh :: sh, q dw :: sw, :]   (kh*kw NumPy adds)
Layout: the gather reads the input channels-last (N, H, W, C), so every receptive-field row is copied in
runs of C contiguous floats; the output is returned as a (N, O, Ho, Wo) view of a channels-last array,
which the next conv reads without a copy. Only groups=1 is supported. Function name "conv2d".
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...core import Function
from .utils import as_tensor, pair


def conv_output_size(size, kernel, stride, pad_before, pad_after, dilation=1):
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def pad_channels_last(x, pads):
    """x (N, C, H, W) -> zero-padded channels-last array (N, H + top + bottom, W + left + right, C)."""
    top, bottom, left, right = pads
    xt = x.transpose(0, 2, 3, 1)
    if not (top or bottom or left or right):
        return xt
    n, h, w, c = xt.shape
    xp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    xp[:, top:top + h, left:left + w, :] = xt
    return xp


def im2col(xp, kernel, stride, dilation, out_hw):
    """Channels-last padded input (N, Hp, Wp, C) -> cols (N*Ho*Wo, kh*kw*C): one copy, no Python loop."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    n, _, _, c = xp.shape
    s0, s1, s2, s3 = xp.strides
    windows = as_strided(xp, shape=(n, ho, wo, kh, kw, c), strides=(s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3),
                         writeable=False)
    return windows.reshape(n * ho * wo, kh * kw * c)


def col2im(dcols, padded_shape, kernel, stride, dilation, out_hw):
    """The adjoint of im2col: sum every row of dcols back into its receptive field (kh*kw strided adds)."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    n, hp, wp, c = padded_shape
    d6 = dcols.reshape(n, ho, wo, kh, kw, c)
    dxp = np.zeros(padded_shape, dtype=dcols.dtype)
    for p in range(kh):
        for q in range(kw):
            r, s = p * dh, q * dw
            dxp[:, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw, :] += d6[:, :, :, p, q, :]
    return dxp


class Conv2dFn(Function):
    name = "conv2d"

    @staticmethod
    def forward(ctx, x, weight, bias=None, *, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)):
        n, _, h, w = x.shape
        o, c, kh, kw = weight.shape
        ho = conv_output_size(h, kh, stride[0], pads[0], pads[1], dilation[0])
        wo = conv_output_size(w, kw, stride[1], pads[2], pads[3], dilation[1])
        xp = pad_channels_last(x, pads)
        cols = im2col(xp, (kh, kw), stride, dilation, (ho, wo))
        w2 = weight.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)
        out = cols @ w2.T
        if bias is not None:
            out += bias
        ctx.save_for_backward(cols, w2)
        ctx.args = (x.shape, xp.shape, weight.shape, (kh, kw), stride, pads, dilation, (ho, wo), bias is not None)
        return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        cols, w2 = ctx.saved
        x_shape, padded_shape, w_shape, kernel, stride, pads, dilation, out_hw, has_bias = ctx.args
        need_x, need_w = ctx.needs_input_grad[:2]
        need_b = has_bias and ctx.needs_input_grad[2]
        o, c, kh, kw = w_shape
        g2 = grad.transpose(0, 2, 3, 1).reshape(-1, o)
        grad_w = grad_b = grad_x = None
        if need_w:
            grad_w = np.ascontiguousarray((g2.T @ cols).reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
        if need_b:
            grad_b = g2.sum(axis=0)
        if need_x:
            dxp = col2im(g2 @ w2, padded_shape, kernel, stride, dilation, out_hw)
            top, _, left, _ = pads
            h, w = x_shape[2], x_shape[3]
            grad_x = dxp[:, top:top + h, left:left + w, :].transpose(0, 3, 1, 2)
        return grad_x, grad_w, grad_b


def conv_padding(padding, kernel, stride, dilation, op):
    """PyTorch's padding argument (int, pair, "valid" or "same") -> (top, bottom, left, right)."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"{op}: padding='same' needs stride=1 (as PyTorch), got stride={stride}")
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]  # an odd total puts the extra row at the bottom/right
        return tuple(pads)
    ph, pw = pair(padding, "padding", op)
    return ph, ph, pw, pw


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as PyTorch). x (N, C, H, W) or unbatched (C, H, W)."""
    x, weight = as_tensor(x), as_tensor(weight)
    if groups != 1:
        raise ValueError(f"conv2d: only groups=1 is supported in minicompress, got groups={groups}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must have shape (out_channels, in_channels, kh, kw), "
                         f"got {tuple(weight.shape)}")
    if x.ndim not in (3, 4):
        raise ValueError(f"conv2d: expected input of shape (N, C, H, W) (or unbatched (C, H, W)), "
                         f"got shape {tuple(x.shape)}")
    o, c, kh, kw = weight.shape
    c_in = x.shape[-3]
    if c_in != c:
        raise ValueError(f"conv2d: input has {c_in} channels (shape {tuple(x.shape)}) but weight of shape "
                         f"{tuple(weight.shape)} expects in_channels={c}")
    if bias is not None and tuple(bias.shape) != (o,):
        raise ValueError(f"conv2d: bias has shape {tuple(bias.shape)}, expected ({o},)")
    stride = pair(stride, "stride", "conv2d", minimum=1)
    dilation = pair(dilation, "dilation", "conv2d", minimum=1)
    pads = conv_padding(padding, (kh, kw), stride, dilation, "conv2d")
    h, w = x.shape[-2:]
    eff_h, eff_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if h + pads[0] + pads[1] < eff_h or w + pads[2] + pads[3] < eff_w:
        raise ValueError(f"conv2d: kernel size ({eff_h}, {eff_w}) is larger than the padded input "
                         f"({h + pads[0] + pads[1]}, {w + pads[2] + pads[3]}) (input shape {tuple(x.shape)}, "
                         f"padding {padding!r})")
    if x.ndim == 3:  # unbatched: run as a batch of one
        out = Conv2dFn.apply(x.reshape(1, *x.shape), weight, bias, stride=stride, pads=pads, dilation=dilation)
        return out.reshape(out.shape[1:])
    return Conv2dFn.apply(x, weight, bias, stride=stride, pads=pads, dilation=dilation)
