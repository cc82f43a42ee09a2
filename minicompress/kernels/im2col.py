"""im2col for integer convolution: every receptive field becomes one row of a GEMM operand.

    cols[(n, oh, ow), (c, i, j)] = x[n, c, oh * s_h + i - p_h, ow * s_w + j - p_w]     (pad_value outside)
    conv(x, w)[n, o, oh, ow]     = (cols @ w.reshape(O, C*kh*kw).T)[(n, oh, ow), o]

x is uint8 [N, C, H, W] (NCHW, PyTorch's layout); cols is uint8 [N*OH*OW, K_pad] with K = C*kh*kw in the
order of `weight.reshape(O, -1)` and zero columns up to K_pad (a multiple of 4, for the packed kernels).
OH = (H + 2 p_h - kh) // s_h + 1, likewise OW.

The padding value matters: padding means real 0.0, and real 0.0 is the integer `zero_point` of the input,
not the integer 0 (Jacob et al. 2018, section 2.2: zero must be exactly representable for this reason).
So the integer convolution pads with `pad_value = x_zero_point`; padding with 0 would add -zp * w terms.
"""
import numpy as np
from numba import njit, prange

from .checks import check_array


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


@njit(cache=True, parallel=True)
def _im2col_u8(x, kh, kw, sh, sw, ph, pw, pad_value, out_h, out_w, cols):
    batch, channels, height, width = x.shape
    k_size = channels * kh * kw
    for item in prange(batch * out_h):
        n, oh = item // out_h, item % out_h
        for ow in range(out_w):
            row = cols[(n * out_h + oh) * out_w + ow]
            col = 0
            for c in range(channels):
                for i in range(kh):
                    y = oh * sh + i - ph
                    for j in range(kw):
                        xx = ow * sw + j - pw
                        if 0 <= y < height and 0 <= xx < width:
                            row[col] = x[n, c, y, xx]
                        else:
                            row[col] = pad_value
                        col += 1
            for col in range(k_size, cols.shape[1]):
                row[col] = 0


def as_pair(value, name):
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def im2col_u8(x, kernel_size, stride=1, padding=0, pad_value=0, k_padded=None):
    """uint8 x [N, C, H, W] -> uint8 cols [N*OH*OW, k_padded] (see module docstring); returns (cols, OH, OW)."""
    check_array("x", x, np.uint8, ndim=4)
    kh, kw = as_pair(kernel_size, "kernel_size")
    sh, sw = as_pair(stride, "stride")
    ph, pw = as_pair(padding, "padding")
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"need kernel_size >= 1, stride >= 1, padding >= 0; got {kernel_size}, {stride}, {padding}")
    if not 0 <= int(pad_value) <= 255:
        raise ValueError(f"pad_value must be a uint8 value, got {pad_value}")
    batch, channels, height, width = x.shape
    out_h, out_w = conv_output_size(height, kh, sh, ph), conv_output_size(width, kw, sw, pw)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"kernel {kh}x{kw} (padding {ph},{pw}) is larger than the input {height}x{width}")
    k_size = channels * kh * kw
    k_padded = -(-k_size // 4) * 4 if k_padded is None else int(k_padded)
    if k_padded < k_size:
        raise ValueError(f"k_padded={k_padded} is smaller than C*kh*kw={k_size}")
    cols = np.empty((batch * out_h * out_w, k_padded), np.uint8)
    _im2col_u8(x, kh, kw, sh, sw, ph, pw, np.uint8(pad_value), out_h, out_w, cols)
    return cols, out_h, out_w


def im2col_reference(x, kernel_size, stride=1, padding=0, pad_value=0):
    """NumPy twin: pad, then gather each window with fancy indexing (unpadded K)."""
    kh, kw = as_pair(kernel_size, "kernel_size")
    sh, sw = as_pair(stride, "stride")
    ph, pw = as_pair(padding, "padding")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    batch, channels = x.shape[:2]
    out_h = conv_output_size(x.shape[2], kh, sh, ph)
    out_w = conv_output_size(x.shape[3], kw, sw, pw)
    rows = (np.arange(out_h) * sh)[:, None] + np.arange(kh)[None, :]          # [OH, kh]
    cols = (np.arange(out_w) * sw)[:, None] + np.arange(kw)[None, :]          # [OW, kw]
    patches = xp[:, :, rows[:, None, :, None], cols[None, :, None, :]]        # [N, C, OH, OW, kh, kw]
    return patches.transpose(0, 2, 3, 1, 4, 5).reshape(batch * out_h * out_w, channels * kh * kw)
