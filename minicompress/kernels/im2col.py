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
def _im2col_u8(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded):
    for item in prange(shape[0] * out_h):
        _im2col_row(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded, item)


@njit(cache=True)
def _im2col_u8_serial(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded):
    """_im2col_u8 on the calling thread (small inputs: no thread start-up)."""
    for item in range(shape[0] * out_h):
        _im2col_row(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded, item)


@njit(cache=True)
def _im2col_row(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded, item):
    """The OW rows of cols for one (image n, output row oh) = item, from the already padded input xp
    [N, C, HP, WP] (flat, like cols): plain index arithmetic, no bounds test and no array views per row
    (a view per window row costs more than the bytes it copies)."""
    channels, hp, wp = shape[1], shape[2], shape[3]
    k_size = channels * kh * kw
    n, oh = item // out_h, item % out_h
    for ow in range(out_w):
        dst = np.uint64(((n * out_h + oh) * out_w + ow) * k_padded)    # unsigned: no negative-index tests
        for c in range(channels):
            src_c = (n * channels + c) * hp * wp + ow * sw
            for i in range(kh):
                src = np.uint64(src_c + (oh * sh + i) * wp)
                for j in range(np.uint64(kw)):
                    cols[dst + j] = xp[src + j]
                dst += np.uint64(kw)
        for col in range(np.uint64(k_size), np.uint64(k_padded)):
            cols[dst + col - np.uint64(k_size)] = 0


def as_pair(value, name):
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def _geometry(x, channels_last, kernel_size, stride, padding, pad_value, k_padded):
    """Check the arguments of an im2col; return (batch, channels, height, width, kh, kw, sh, sw, ph, pw, out_h,
    out_w, k_padded) with K = C*kh*kw rounded up to a multiple of 4 unless k_padded is given."""
    check_array("x", x, np.uint8, ndim=4)
    kh, kw = as_pair(kernel_size, "kernel_size")
    sh, sw = as_pair(stride, "stride")
    ph, pw = as_pair(padding, "padding")
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"need kernel_size >= 1, stride >= 1, padding >= 0; got {kernel_size}, {stride}, {padding}")
    if not 0 <= int(pad_value) <= 255:
        raise ValueError(f"pad_value must be a uint8 value, got {pad_value}")
    if channels_last:
        batch, height, width, channels = x.shape
    else:
        batch, channels, height, width = x.shape
    out_h, out_w = conv_output_size(height, kh, sh, ph), conv_output_size(width, kw, sw, pw)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"kernel {kh}x{kw} (padding {ph},{pw}) is larger than the input {height}x{width}")
    k_size = channels * kh * kw
    k_padded = -(-k_size // 4) * 4 if k_padded is None else int(k_padded)
    if k_padded < k_size:
        raise ValueError(f"k_padded={k_padded} is smaller than C*kh*kw={k_size}")
    return batch, channels, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w, k_padded


PARALLEL_MIN_BYTES = 1 << 23     # below ~8 MB of columns one thread is faster than starting the others


def im2col_u8(x, kernel_size, stride=1, padding=0, pad_value=0, k_padded=None, parallel=None):
    """uint8 x [N, C, H, W] -> uint8 cols [N*OH*OW, k_padded] (see module docstring); returns (cols, OH, OW).

    parallel: None = threads only for at least PARALLEL_MIN_BYTES of columns; True / False forces."""
    (batch, channels, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w,
     k_padded) = _geometry(x, False, kernel_size, stride, padding, pad_value, k_padded)
    cols = np.empty((batch * out_h * out_w, k_padded), np.uint8)
    if ph or pw:                     # pad once with the zero point (real 0.0)
        xp = np.full((batch, channels, height + 2 * ph, width + 2 * pw), pad_value, np.uint8)
        xp[:, :, ph:ph + height, pw:pw + width] = x
    else:
        xp = x
    threaded = cols.size >= PARALLEL_MIN_BYTES if parallel is None else bool(parallel)
    (_im2col_u8 if threaded else _im2col_u8_serial)(np.ascontiguousarray(xp).reshape(-1), np.array(xp.shape, np.int64),
                                                    kh, kw, sh, sw, out_h, out_w, cols.reshape(-1), k_padded)
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


# ---- channels-last: each window row is one contiguous run of kw * C bytes ---------------------------------
@njit(cache=True)
def _im2col_nhwc_rows(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded, first, last):
    """cols[(n, oh, ow), (i, j, c)] = xp[n, oh * sh + i, ow * sw + j, c] for items (n, oh) in [first, last);
    xp [N, HP, WP, C] and cols flat: each (i) is one copy of kw * C consecutive bytes."""
    hp, wp, channels = shape[1], shape[2], shape[3]
    run = np.uint64(kw * channels)          # unsigned indices: no negative-index test, so LLVM vectorises
    for item in range(first, last):
        n, oh = item // out_h, item % out_h
        for ow in range(out_w):
            dst = np.uint64(((n * out_h + oh) * out_w + ow) * k_padded)
            for i in range(kh):
                src = np.uint64(((n * hp + oh * sh + i) * wp + ow * sw) * channels)
                for t in range(run):
                    cols[dst + t] = xp[src + t]
                dst += run
            for t in range(np.uint64(kh) * run, np.uint64(k_padded)):
                cols[dst + t - np.uint64(kh) * run] = 0


@njit(cache=True, parallel=True)
def _im2col_nhwc_parallel(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded):
    items = shape[0] * out_h
    for part in prange(4):
        _im2col_nhwc_rows(xp, shape, kh, kw, sh, sw, out_h, out_w, cols, k_padded, part * items // 4,
                          (part + 1) * items // 4)


def im2col_nhwc_u8(x, kernel_size, stride=1, padding=0, pad_value=0, k_padded=None, parallel=None):
    """uint8 x [N, H, W, C] (channels last) -> uint8 cols [N*OH*OW, k_padded] with K in (i, j, c) order, i.e.
    for a weight w[O, C, kh, kw] packed as w.transpose(0, 2, 3, 1).reshape(O, -1). Each window row is kw * C
    consecutive bytes on both sides (a vectorised copy), which makes this several times faster than the NCHW
    im2col for small kernels. Returns (cols, OH, OW)."""
    (batch, channels, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w,
     k_padded) = _geometry(x, True, kernel_size, stride, padding, pad_value, k_padded)
    if ph or pw:
        xp = np.full((batch, height + 2 * ph, width + 2 * pw, channels), pad_value, np.uint8)
        xp[:, ph:ph + height, pw:pw + width, :] = x
    else:
        xp = x
    cols = np.empty((batch * out_h * out_w, k_padded), np.uint8)
    threaded = cols.size >= PARALLEL_MIN_BYTES if parallel is None else bool(parallel)
    args = (np.ascontiguousarray(xp).reshape(-1), np.array(xp.shape, np.int64), kh, kw, sh, sw, out_h, out_w,
            cols.reshape(-1), k_padded)
    if threaded:
        _im2col_nhwc_parallel(*args)
    else:
        _im2col_nhwc_rows(*args, 0, batch * out_h)
    return cols, out_h, out_w


def im2col_nhwc_reference(x, kernel_size, stride=1, padding=0, pad_value=0):
    """NumPy twin of im2col_nhwc_u8 (unpadded K): the NCHW reference with K reordered to (i, j, c)."""
    kh, kw = as_pair(kernel_size, "kernel_size")
    cols = im2col_reference(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), (kh, kw), stride, padding, pad_value)
    return cols.reshape(cols.shape[0], x.shape[3], kh, kw).transpose(0, 2, 3, 1).reshape(cols.shape[0], -1)
