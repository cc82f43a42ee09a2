"""Integer-only arithmetic of quantized layers (Jacob et al., CVPR 2018), in one small file.

Every quantized layer calls the kernels only through these functions, so swapping in faster kernels
(packed weights, u8 x s8 VNNI, fused epilogues) is a change to this file alone.

    int_matmul(qx [M, K], zx, qw [N, K], zw [N])  -> int32 acc [M, N] = sum_k (qx - zx)(qw - zw)
        computed as G = gemm_s8s8s32(qx', qw'^T) on int8 operands, then the zero-point corrections
        acc = G - zx' colsum(qw') - zw rowsum(qx') + K zx' zw         (Jacob et al. eq. 7-8)
        uint8 activations are shifted to int8 first: qx' = qx - 128, zx' = zx - 128 (exact).
    int_linear(...)   acc + bias_q (int32, scale s_x s_w), then requantize to the output's (s_out, z_out)
    int_conv2d(...)   im2col (padding with the input zero point, i.e. real 0.0) + int_matmul + requantize
    requantize(acc, m0, shift, zp, qmin, qmax)   fixed point M = M0 2^-n, M0 in [0.5, 1), one rounding (half even)
    rescale(q, s_from, z_from, s_to, z_to)       move a quantized tensor to other qparams in integers
    int_add(qa, sa, za, qb, sb, zb, s_out, z_out)  residual add in integers (TFLite's left-shift-20 scheme)

Overflow: an int32 accumulator is exact only if K * max|qx - zx| * max|qw - zw| (+ |bias|) < 2^31; this is
checked before every product and a ValueError explains which layer would overflow.
"""
import numpy as np

from .. import kernels

INT32_MAX = 2 ** 31 - 1


def to_int8_operand(q, zero_point, who="activation"):
    """(q, zp) -> (int8 array, zp') with q - zp == q' - zp'; uint8 is shifted by 128, int8 kept."""
    zp = np.asarray(zero_point, dtype=np.int64)
    if q.dtype == np.int8:
        return q, zp
    if q.dtype == np.uint8:
        return (q.astype(np.int16) - 128).astype(np.int8), zp - 128
    raise TypeError(f"{who}: the integer path takes int8/uint8 (bits <= 8), got {q.dtype}")


def check_accumulator(k, max_x, max_w, bias_max=0, who="int_matmul"):
    worst = int(k) * int(max_x) * int(max_w) + int(bias_max)
    if worst > INT32_MAX:
        raise ValueError(f"{who}: the int32 accumulator could overflow: K={k} x max|q_x - z_x|={max_x} x "
                         f"max|q_w - z_w|={max_w} (+ |bias|={bias_max}) = {worst} > 2^31 - 1; use fewer bits "
                         f"or split the layer")


def prepare_weight(qw, zw):
    """Weight (N, K) int8 -> what int_matmul needs: (qw^T contiguous [K, N], zw [N] int64, colsum [N] int64)."""
    qw = np.asarray(qw)
    if qw.dtype != np.int8:
        raise TypeError(f"prepare_weight: weights must be int8, got {qw.dtype}")
    zw = np.broadcast_to(np.asarray(zw, dtype=np.int64), (qw.shape[0],)).copy()
    return np.ascontiguousarray(qw.T), zw, qw.astype(np.int64).sum(axis=1)


def int_matmul(qx, zx, packed_weight, who="int_matmul", bias_max=0):
    """Exact sum_k (qx - zx)(qw - zw) as int32 [M, N]; qx int8/uint8 [M, K], packed = prepare_weight(qw, zw).

    zx: a scalar, or one zero point per row ([M], dynamic per-row quantization)."""
    qw_t, zw, colsum = packed_weight
    xs, zxs = to_int8_operand(qx, zx, who)
    zxs = zxs.reshape(-1, 1) if zxs.ndim else zxs
    k = xs.shape[1]
    max_x = int(np.abs(xs.astype(np.int64) - zxs).max()) if xs.size else 0
    max_w = int(np.abs(qw_t.astype(np.int64) - zw[None, :]).max()) if qw_t.size else 0
    check_accumulator(k, max_x, max_w, bias_max, who)
    g = kernels.gemm_s8s8s32(np.ascontiguousarray(xs), qw_t).astype(np.int64)
    acc = g - zxs * colsum[None, :]
    if np.any(zw):
        acc -= zw[None, :] * xs.astype(np.int64).sum(axis=1, keepdims=True)
        acc += k * zxs * zw[None, :]
    return acc.astype(np.int32)


def quantize_multiplier(real_multiplier):
    """M -> (m0, shift) with M = m0 2^-31 2^-shift (M0 = m0 / 2^31 in [0.5, 1))."""
    return kernels.quantize_multiplier(real_multiplier)


def rounding_shift(product, total_shift):
    """round(product / 2^total_shift), half to even, on int64 (total_shift >= 0, per channel allowed)."""
    s = np.broadcast_to(np.asarray(total_shift, dtype=np.int64), product.shape[-1:])
    s = np.minimum(s, 63)
    floor = np.where(s >= 63, np.where(product < 0, -1, 0), product >> np.minimum(s, 62))
    rem = product - np.where(s >= 63, floor, floor << np.minimum(s, 62))
    half = np.where(s >= 1, np.int64(1) << np.maximum(np.minimum(s, 62) - 1, 0), 0)
    up = (s >= 1) & ((rem > half) | ((rem == half) & (floor % 2 == 1)))
    return floor + up


def requantize(acc, m0, shift, zero_point, qmin, qmax):
    """int32 acc [..., N] -> clamp(round(acc * M) + zero_point, qmin, qmax) as int8 / uint8.

    M = m0 2^-31 2^-shift (m0 in [2^30, 2^31): M0 = m0 / 2^31 in [0.5, 1)). One rounding, half to even, of the
    exact 64-bit product acc * m0 shifted right by 31 + shift -- the same rounding as np.rint in quantize, so the
    integer model agrees with its fake-quantized twin except within 2^-31 (relative) of a tie. (mc.kernels.requantize
    is gemmlowp's two-step rounding of Jacob et al.'s reference code, which can differ by one code, e.g. 1/16 of the
    elements at 4 bits; swap it in here to reproduce gemmlowp bit for bit.)
    """
    out_dtype = np.uint8 if qmin >= 0 else np.int8
    acc = np.asarray(acc, dtype=np.int64)
    m0 = np.broadcast_to(np.asarray(m0, dtype=np.int64), acc.shape[-1:])
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), acc.shape[-1:])
    left = np.maximum(-(31 + shift), 0)                 # M >= 2^31 never happens (quantize_multiplier refuses)
    q = rounding_shift((acc << left) * m0, np.maximum(31 + shift, 0))
    return np.clip(q + int(zero_point), int(qmin), int(qmax)).astype(out_dtype)


def int_linear(qx, zx, packed_weight, bias_q, m0, shift, z_out, qmin, qmax, who="int_linear"):
    """Quantized y = x W^T + b: qx [..., K] -> q_out [..., N] (int8/uint8), integer arithmetic only."""
    lead = qx.shape[:-1]
    bias_max = int(np.abs(bias_q).max()) if bias_q is not None else 0
    acc = int_matmul(qx.reshape(-1, qx.shape[-1]), zx, packed_weight, who, bias_max)
    if bias_q is not None:
        acc = acc + bias_q[None, :]
    return requantize(acc, m0, shift, z_out, qmin, qmax).reshape(lead + (acc.shape[-1],))


def im2col(x, kh, kw, stride, padding, pad_value):
    """x (N, C, H, W) -> columns (N * Ho * Wo, C * kh * kw) in the (c, i, j) order of a (O, C, kh, kw) weight."""
    n, c, h, w = x.shape
    (sh, sw), (ph, pw) = stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"im2col: input {(h, w)} is smaller than the kernel {(kh, kw)} after padding")
    s = x.strides
    windows = np.lib.stride_tricks.as_strided(
        x, shape=(n, ho, wo, c, kh, kw), strides=(s[0], s[2] * sh, s[3] * sw, s[1], s[2], s[3]), writeable=False)
    return windows.reshape(n * ho * wo, c * kh * kw), (n, ho, wo)


def int_conv2d(qx, zx, packed_weight, kernel_size, stride, padding, bias_q, m0, shift, z_out, qmin, qmax,
               who="int_conv2d"):
    """Quantized conv2d (groups=1): qx (N, C, H, W) -> q_out (N, O, Ho, Wo). Padding uses zx (real 0.0)."""
    cols, (n, ho, wo) = im2col(qx, kernel_size[0], kernel_size[1], stride, padding, zx)
    out = int_linear(cols, zx, packed_weight, bias_q, m0, shift, z_out, qmin, qmax, who)
    return np.ascontiguousarray(out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2))


def rescale(q, s_from, z_from, s_to, z_to, qmin, qmax):
    """q with (s_from, z_from) -> the same real values with (s_to, z_to), in integers (one requantization)."""
    m0, shift = quantize_multiplier(float(s_from) / float(s_to))
    acc = (q.astype(np.int32) - np.int32(z_from)).reshape(-1, 1)
    return requantize(acc, m0, shift, z_to, qmin, qmax).reshape(q.shape)


LEFT_SHIFT = 20


def int_add(qa, sa, za, qb, sb, zb, s_out, z_out, qmin, qmax):
    """Residual add in integers (TFLite's scheme): both inputs scaled to a common fine scale
    2 max(sa, sb) / 2^20 with fixed-point multipliers, added in int32, then requantized to (s_out, z_out)."""
    qa, qb = np.broadcast_arrays(qa, qb)
    twice_max = 2 * max(float(sa), float(sb))
    out = []
    for q, s, z in ((qa, sa, za), (qb, sb, zb)):
        m0, shift = quantize_multiplier(float(s) / twice_max)
        shifted = ((q.astype(np.int32) - np.int32(z)) << LEFT_SHIFT).reshape(-1, 1)
        out.append(rounding_shift(shifted.astype(np.int64) * m0, 31 + shift))
    m0, shift = quantize_multiplier(twice_max / ((1 << LEFT_SHIFT) * float(s_out)))
    total = (out[0].astype(np.int64) + out[1]).astype(np.int32)
    return requantize(total, m0, shift, z_out, qmin, qmax).reshape(qa.shape)
