"""Integer-only arithmetic of quantized layers (Jacob et al., CVPR 2018), in one small file.

Every quantized layer calls the kernels only through this file, so swapping in faster kernels is a change
here alone. The fast path (mc.kernels, VNNI where the CPU has it): weights packed ONCE into the layout of the
u8 x s8 GEMM, activations fed as uint8, and the zero-point corrections, the int32 bias, the requantization and
ReLU fused into the GEMM's epilogue (one pass over the output, while the tile is in L1):

    IntLinear(weight_int [N, K], weight_zp, in_zp, in_range, bias_int, m0, shift, out_zp, out_range, who)
        (q_x [M, K]) -> clamp(round_half_even(acc * m0 / 2^(31 + shift)) + z_out, qmin, qmax)
        acc = sum_k (q_x - z_x)(q_w - z_w) + bias_int        (int32, exact)
    IntConv2d(...)    the same GEMM on im2col columns (padded with z_x, i.e. real 0.0)
    DynamicIntLinear(weight_int, weight_zp, weight_scale, bias, per_row)
        (x float32 [M, K]) -> x quantized to uint8 per batch (or row) in one pass, GEMM, s_x s_w acc + b fused

The functional forms (the reference semantics; the graph executor and the tests call them):
    int_matmul(qx [M, K], zx, prepared, who)  -> int32 acc [M, N] = sum_k (qx - zx)(qw - zw)
        prepared = prepare_weight(qw [N, K], zw): the packed weight, or for K > 65793 (too large for the
        u8 x s8 kernels) the int8 operands of gemm_s8s8s32 with the corrections of Jacob et al. eq. 7-8:
        acc = G - zx' colsum(qw) - zw rowsum(qx') + K zx' zw, uint8 shifted to int8 (qx' = qx - 128)
    int_linear(...)   acc + bias_q (int32, scale s_x s_w), then requantize to the output's (s_out, z_out)
    int_conv2d(...)   im2col + the same
    requantize(acc, m0, shift, zp, qmin, qmax)   fixed point M = M0 2^-n, M0 in [0.5, 1), one rounding (half
                      even): the NumPy twin of the kernels' rounding="half_even" epilogue
    rescale(q, s_from, z_from, s_to, z_to)       move a quantized tensor to other qparams in integers
    int_add(qa, sa, za, qb, sb, zb, s_out, z_out)  residual add in integers (TFLite's left-shift-20 scheme)

Overflow: an int32 accumulator is exact only if K * max|qx - zx| * max|qw - zw| + max|bias| < 2^31. The layer
objects check it once, at construction, from the activation's quantization range (max|qx - zx| <=
max(zx - qmin, qmax - zx)) and the weight; int_matmul checks it from the data. Either raises a ValueError
naming the layer.
"""
import numpy as np

from .. import kernels
from .qparams import calc_qparams, quantize

INT32_MAX = 2 ** 31 - 1
MAX_K_PACKED = (2 ** 31 - 1) // (255 * 128)     # the u8 x s8 kernels' raw sums fit int32 up to this K
# A quantized layer uses the kernels' worker threads only from this many multiply-adds per call (M * N * K,
# padded). Layers of small models run one after another, each too short to pay for starting threads; on a
# shared machine a thread may also wait a whole scheduler slice for a core (measured: 5-12 ms per call with
# two other busy processes on 2 cores). Set NUMBA_NUM_THREADS=1 to never use threads.
LAYER_PARALLEL_MIN_MACS = 1 << 28


def quantize_input(x, scale, zero_point, qmin, qmax):
    """Float activations -> codes at a float boundary: quant.quantize's result (same dtype, same bits), by
    kernels.quantize_affine (one Numba pass) for finite float32 input, else by quant.quantize itself (which
    also raises the clear error for NaN / inf / empty input)."""
    if (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.size and -128 <= qmin and qmax <= 255
            and np.isfinite(x).all()):
        return kernels.quantize_affine(np.ascontiguousarray(x), scale, zero_point, qmin, qmax)
    return quantize(x, scale, zero_point, qmin, qmax)


def dequantize_output(q, scale, zero_point):
    """Codes -> float32 (q - zero_point) * scale: quant.dequantize's values (q - z is exact in int32 and in
    float32), with fewer passes."""
    return (q.astype(np.int32) - np.int32(zero_point)).astype(np.float32) * np.float32(scale)


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


class PreparedWeight:
    """An int8 weight [N, K] with its zero points, ready for int_matmul: packed once for the fast kernels
    (K <= MAX_K_PACKED), and the int8 operands of the reference path. Built by prepare_weight."""

    def __init__(self, qw, zw):
        self.weight, self.zero_point = qw, zw
        self.n, self.k = qw.shape
        self.max_abs = int(np.abs(qw.astype(np.int64) - zw[:, None]).max()) if qw.size else 0
        fits = self.k <= MAX_K_PACKED and bool(np.all((zw >= -128) & (zw <= 127)))
        self.packed = kernels.pack_weight(qw, zero_point=zw) if fits and qw.size else None
        self._layers = {}

    def reference_operands(self):
        """(qw^T contiguous [K, N] int8, zw [N] int64, colsum [N] int64) for the gemm_s8s8s32 path."""
        return np.ascontiguousarray(self.weight.T), self.zero_point, self.weight.astype(np.int64).sum(axis=1)


def prepare_weight(qw, zw):
    """Weight (N, K) int8 and its zero point(s) -> a PreparedWeight (packed once; reuse it for every call)."""
    qw = np.asarray(qw)
    if qw.dtype != np.int8 or qw.ndim != 2:
        raise TypeError(f"prepare_weight: weights must be a 2-D int8 array, got {qw.dtype} of shape {qw.shape}")
    zw = np.broadcast_to(np.asarray(zw, dtype=np.int64), (qw.shape[0],)).copy()
    return PreparedWeight(np.ascontiguousarray(qw), zw)


def _activation_zero_point_fits(qx, zx):
    lo, hi = (0, 255) if qx.dtype == np.uint8 else (-128, 127)
    return bool(np.all((zx >= lo) & (zx <= hi)))


def int_matmul(qx, zx, prepared, who="int_matmul", bias_max=0):
    """Exact sum_k (qx - zx)(qw - zw) as int32 [M, N]; qx int8/uint8 [M, K], prepared = prepare_weight(qw, zw).

    zx: a scalar, or one zero point per row ([M], dynamic per-row quantization)."""
    if isinstance(qx, np.ndarray) and qx.dtype not in (np.int8, np.uint8):
        raise TypeError(f"{who}: the integer path takes int8/uint8 (bits <= 8), got {qx.dtype}")
    zxs = np.asarray(zx, dtype=np.int64)
    k = qx.shape[1]
    if k != prepared.k:
        raise ValueError(f"{who}: input has K={k} columns, the weight has {prepared.k}")
    zcol = zxs.reshape(-1, 1) if zxs.ndim else zxs
    max_x = int(np.abs(qx.astype(np.int64) - zcol).max()) if qx.size else 0
    check_accumulator(k, max_x, prepared.max_abs, bias_max, who)
    if prepared.packed is not None and qx.size and _activation_zero_point_fits(qx, zxs):
        return kernels.gemm_u8s8s32(np.ascontiguousarray(qx), prepared.packed, zxs if zxs.ndim else int(zxs))
    return _int_matmul_reference(qx, zxs, prepared, who)


def _int_matmul_reference(qx, zx, prepared, who):
    """gemm_s8s8s32 on int8 operands + the zero-point corrections in int64 (any K, any zero point)."""
    qw_t, zw, colsum = prepared.reference_operands()
    xs, zxs = to_int8_operand(qx, zx, who)
    zxs = zxs.reshape(-1, 1) if zxs.ndim else zxs
    k = xs.shape[1]
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
    """round(product / 2^total_shift), half to even, on int64 (total_shift >= 0, per channel allowed).

    Shifts of 63 and more: |product| < 2^63, so the quotient is below 1 and rounds to 0 (or to +-1 when the
    shift is 63 and |product| > 2^62)."""
    s = np.broadcast_to(np.asarray(total_shift, dtype=np.int64), product.shape[-1:])
    s62 = np.minimum(s, 62)
    floor = product >> s62
    rem = product - (floor << s62)
    half = np.where(s62 >= 1, np.int64(1) << np.maximum(s62 - 1, 0), 0)
    up = (s62 >= 1) & ((rem > half) | ((rem == half) & (floor % 2 == 1)))
    big = np.where((s == 63) & (np.abs(product) > 2 ** 62), np.sign(product), 0)
    return np.where(s >= 63, big, floor + up)


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


def int_linear(qx, zx, prepared, bias_q, m0, shift, z_out, qmin, qmax, who="int_linear"):
    """Quantized y = x W^T + b: qx [..., K] -> q_out [..., N] (int8/uint8), integer arithmetic only.

    The functional form of IntLinear (its layer object is built on first use and kept in `prepared`);
    the input range for the overflow check is the full range of qx's dtype."""
    lo, hi = (0, 255) if qx.dtype == np.uint8 else (-128, 127)
    key = (int(zx), lo, np.asarray(m0).tobytes(), np.asarray(shift).tobytes(), int(z_out), int(qmin), int(qmax),
           None if bias_q is None else np.asarray(bias_q).tobytes())
    layer = prepared._layers.get(key)
    if layer is None:
        layer = IntLinear(prepared, None, zx, lo, hi, bias_q, m0, shift, z_out, qmin, qmax, who)
        if len(prepared._layers) >= 8:
            prepared._layers.clear()
        prepared._layers[key] = layer
    return layer(qx.reshape(-1, qx.shape[-1])).reshape(qx.shape[:-1] + (prepared.n,))


class IntLinear:
    """A static quantized Linear ready to run, built once per layer (at convert time):

        layer = IntLinear(weight_int [N, K] (or a PreparedWeight), weight_zero_point, in_zero_point, in_qmin,
                          in_qmax, bias_int [N] or None, m0, shift, out_zero_point, qmin, qmax, who)
        q_out = layer(q_x [M, K] uint8 / int8)      # -> [M, N], uint8 if qmin >= 0 else int8 (as requantize)

    q_out = clamp(round_half_even(acc * m0 / 2^(31 + shift)) + out_zero_point, qmin, qmax) with
    acc = sum_k (q_x - z_x)(q_w - z_w) + bias_int; fused ReLU = qmin raised to out_zero_point by the caller.
    Runs kernels.QLinear (packed weight, rounding="half_even") in one pass; the reference path (int_matmul
    + requantize) only where the kernels cannot (K > MAX_K_PACKED, a zero point outside the input's dtype).
    Raises a ValueError naming `who` when the int32 accumulator could overflow for inputs in [in_qmin, in_qmax].
    """

    def __init__(self, weight_int, weight_zero_point, in_zero_point, in_qmin, in_qmax, bias_int, m0, shift,
                 out_zero_point, qmin, qmax, who="int_linear"):
        prepared = weight_int if isinstance(weight_int, PreparedWeight) else prepare_weight(weight_int,
                                                                                             weight_zero_point)
        self.prepared, self.who = prepared, who
        self.in_zero_point, self.out_zero_point = int(in_zero_point), int(out_zero_point)
        self.qmin, self.qmax = int(qmin), int(qmax)
        self.bias = None if bias_int is None else np.asarray(bias_int, dtype=np.int32)
        self.m0, self.shift = m0, shift
        max_x = max(self.in_zero_point - int(in_qmin), int(in_qmax) - self.in_zero_point, 0)
        bias_max = int(np.abs(self.bias.astype(np.int64)).max()) if self.bias is not None and self.bias.size else 0
        check_accumulator(prepared.k, max_x, prepared.max_abs, bias_max, who)
        self.out_dtype = np.dtype(np.uint8 if self.qmin >= 0 else np.int8)
        out = np.iinfo(self.out_dtype)
        self.kernel = None
        if prepared.packed is not None and out.min <= self.qmin and self.qmax <= out.max \
                and out.min <= self.out_zero_point <= out.max:
            self.kernel = kernels.QLinear(prepared.packed, self.in_zero_point, m0, shift, self.out_zero_point,
                                          self.bias, out_dtype=self.out_dtype, rounding="half_even",
                                          qmin=self.qmin, qmax=self.qmax, parallel=LAYER_PARALLEL_MIN_MACS)
        self._kernel_u8 = self.kernel is not None and 0 <= self.in_zero_point <= 255
        self._kernel_s8 = self.kernel is not None and -128 <= self.in_zero_point <= 127

    def __call__(self, qx):
        if (self._kernel_u8 and qx.dtype == np.uint8) or (self._kernel_s8 and qx.dtype == np.int8):
            return self.kernel(qx)
        return self.reference(qx)

    def reference(self, qx):
        """The same result by int_matmul + requantize (NumPy), the twin the tests compare against."""
        if qx.dtype not in (np.uint8, np.int8):
            raise TypeError(f"{self.who}: the integer path takes int8/uint8 (bits <= 8), got {qx.dtype}")
        acc = _int_matmul_reference(qx, np.int64(self.in_zero_point), self.prepared, self.who)
        if self.bias is not None:
            acc = acc + self.bias[None, :]
        return requantize(acc, self.m0, self.shift, self.out_zero_point, self.qmin, self.qmax)


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


class IntConv2d:
    """A static quantized Conv2d (groups=1, dilation=1) ready to run, built once per layer:

        conv = IntConv2d(weight_int (O, C, kh, kw), weight_zero_point, stride, padding, in_zero_point, in_qmin,
                         in_qmax, bias_int, m0, shift, out_zero_point, qmin, qmax, who)
        q_out = conv(q_x (N, C, H, W))          # -> (N, O, Ho, Wo), the IntLinear of the im2col columns
    Channels last inside: the weight is packed with K in (i, j, c) order, the input moved to NHWC once, and
    kernels.im2col_nhwc_u8 copies each window row as kw * C consecutive bytes (padded with z_x, real 0.0)
    straight into the packed GEMM; the GEMM's [N*Ho*Wo, O] output is NHWC and is moved back to NCHW."""

    def __init__(self, weight_int, weight_zero_point, stride, padding, in_zero_point, in_qmin, in_qmax, bias_int,
                 m0, shift, out_zero_point, qmin, qmax, who="int_conv2d"):
        out_channels, self.in_channels, kh, kw = weight_int.shape
        self.kernel_size, self.stride, self.padding = (kh, kw), tuple(stride), tuple(padding)
        w_ijc = np.ascontiguousarray(weight_int.transpose(0, 2, 3, 1).reshape(out_channels, -1))
        self.linear = IntLinear(w_ijc, weight_zero_point, in_zero_point, in_qmin, in_qmax, bias_int, m0, shift,
                                out_zero_point, qmin, qmax, who)

    def __call__(self, qx):
        lin = self.linear
        x_nhwc = np.ascontiguousarray(qx.transpose(0, 2, 3, 1))
        if lin._kernel_u8 and qx.dtype == np.uint8:
            cols, ho, wo = kernels.im2col_nhwc_u8(x_nhwc, self.kernel_size, self.stride, self.padding,
                                                  pad_value=lin.in_zero_point, k_padded=lin.prepared.packed.k_padded,
                                                  parallel=False)
            flat = lin.kernel.run_rows(cols)
        else:
            cols, (_, ho, wo) = im2col(qx, self.kernel_size[0], self.kernel_size[1], self.stride, self.padding,
                                       lin.in_zero_point)
            c, (kh, kw) = self.in_channels, self.kernel_size
            flat = lin(np.ascontiguousarray(cols.reshape(-1, c, kh, kw).transpose(0, 2, 3, 1)).reshape(len(cols), -1))
        return np.ascontiguousarray(flat.reshape(qx.shape[0], ho, wo, -1).transpose(0, 3, 1, 2))


def int_conv2d(qx, zx, prepared, kernel_size, stride, padding, bias_q, m0, shift, z_out, qmin, qmax,
               who="int_conv2d"):
    """Quantized conv2d (groups=1): qx (N, C, H, W) -> q_out (N, O, Ho, Wo). Padding uses zx (real 0.0)."""
    cols, (n, ho, wo) = im2col(qx, kernel_size[0], kernel_size[1], stride, padding, zx)
    out = int_linear(cols, zx, prepared, bias_q, m0, shift, z_out, qmin, qmax, who)
    return np.ascontiguousarray(out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2))


class DynamicIntLinear:
    """A dynamically quantized Linear ready to run (int8 weight packed once with its per-channel scales):

        layer = DynamicIntLinear(weight_int [N, K], weight_zero_point, weight_scale [N], bias [N] float or None,
                                 per_row=False, act_qmin=0, act_qmax=255, who="")
        y = layer(x float32 [M, K])       # -> float32 [M, N]
    x is quantized to uint8 affine per batch (or per row) from its own range (calc_qparams' float32 formula),
    acc = sum_k (q_x - z_x)(q_w - z_w) in int32, y = float32(acc) * (s_x s_w) + bias, all but the range in
    Numba: kernels.DynamicQLinear (quantize_dynamic_u8 + packed GEMM with the dequantization fused). 8-bit
    (or 7-bit, reduce_range) float32 activations; other cases run `reference`, its NumPy twin."""

    def __init__(self, weight_int, weight_zero_point, weight_scale, bias, per_row=False, act_qmin=0, act_qmax=255,
                 who="", relu=False):
        self.prepared = prepare_weight(weight_int, weight_zero_point)
        self.weight_scale = np.asarray(weight_scale, dtype=np.float32)
        self.bias, self.per_row, self.who, self.relu = bias, bool(per_row), who, bool(relu)
        self.act_qmin, self.act_qmax = int(act_qmin), int(act_qmax)
        check_accumulator(self.prepared.k, self.act_qmax - self.act_qmin, self.prepared.max_abs, 0, who)
        self.kernel = None
        if self.prepared.packed is not None and self.act_qmin == 0 and self.act_qmax in (127, 255):
            packed = kernels.pack_weight(self.prepared.weight, scale=self.weight_scale,
                                         zero_point=self.prepared.zero_point)
            self.kernel = kernels.DynamicQLinear(packed, bias, per_row=self.per_row,
                                                 reduce_range=self.act_qmax == 127, relu=self.relu,
                                                 parallel=LAYER_PARALLEL_MIN_MACS)

    def __call__(self, x2):
        if self.kernel is not None and x2.dtype == np.float32 and x2.shape[0] > 0:
            try:
                return self.kernel(np.ascontiguousarray(x2))
            except ValueError as err:                     # e.g. NaN / inf in x: name the layer
                raise ValueError(f"{self.who}: {err}") from err
        return self.reference(x2)

    def reference(self, x2):
        """NumPy twin: calc_qparams / quantize (quant.qparams), int_matmul, dequantize, + bias."""
        lo, hi = (x2.min(axis=1), x2.max(axis=1)) if self.per_row else (x2.min(), x2.max())
        s, z = calc_qparams(lo, hi, self.act_qmin, self.act_qmax)
        qx = quantize(x2, s, z, self.act_qmin, self.act_qmax, axis=0 if self.per_row else None)
        acc = int_matmul(qx, z, self.prepared, self.who)
        s_x = s[:, None] if self.per_row else s
        y = acc.astype(np.float32) * (np.asarray(s_x, dtype=np.float32) * self.weight_scale[None, :]).astype(np.float32)
        if self.bias is not None:
            y = y + self.bias
        if self.relu:
            y = np.maximum(y, np.float32(0))
        return y.astype(np.float32)


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


# ---- batched matmul on codes (the two matmuls of attention) ------------------------------------------------------
def int_bmm(qa, za, qb, zb, who="int_bmm"):
    """acc[..., m, n] = sum_k (qa[..., m, k] - za)(qb[..., k, n] - zb), int32, exact; batched over the leading
    axes (e.g. (N, H)), which broadcast as in np.matmul. qa, qb: int8 / uint8 codes; za, zb: per-tensor ints.

    Exact by construction: the operands are small integers (|q - z| <= 255) and the products are summed in
    float64 only when K * max|qa - za| * max|qb - zb| < 2^31 (< 2^53: every partial sum is an integer float64
    holds exactly); a larger bound is the int32 overflow error of check_accumulator, naming `who`."""
    for name, q in (("first operand", qa), ("second operand", qb)):
        if not isinstance(q, np.ndarray) or q.dtype not in (np.uint8, np.int8):
            raise TypeError(f"{who}: the {name} must be int8/uint8 codes, got "
                            f"{getattr(q, 'dtype', type(q).__name__)}")
    if qa.ndim < 2 or qb.ndim < 2 or qa.shape[-1] != qb.shape[-2]:
        raise ValueError(f"{who}: shapes {qa.shape} and {qb.shape} do not chain as (..., M, K) @ (..., K, N)")
    a = qa.astype(np.float64) - float(int(za))
    b = qb.astype(np.float64) - float(int(zb))
    max_a = int(np.abs(a).max()) if a.size else 0
    max_b = int(np.abs(b).max()) if b.size else 0
    check_accumulator(qa.shape[-1], max_a, max_b, 0, who)
    return np.matmul(a, b).astype(np.int32)


def bmm_output_scale(scale_a, scale_b):
    """The scale of an int_bmm accumulator: float32(s_a s_b) (the product taken in float64, rounded once)."""
    return np.float32(np.float64(np.float32(scale_a)) * np.float64(np.float32(scale_b)))


def int_bmm_epilogue(acc, scale_a, scale_b, divisor=None, out_qparams=None):
    """acc (int32) -> float32(acc) * s_a s_b [/ divisor] [-> quantize(., s_out, z_out, qmin, qmax)].

    The steps of the unfused path dequantize -> bmm -> div -> quantize in the same float32 operations, applied
    in one pass after the integer GEMM (so a fused graph and the quantized attention agree bit for bit).
    out_qparams = (s_out, z_out, qmin, qmax) or None (float output)."""
    y = acc.astype(np.float32) * bmm_output_scale(scale_a, scale_b)
    if divisor is not None:
        y = y / np.float32(divisor)
    if out_qparams is None:
        return y
    s_out, z_out, qmin, qmax = out_qparams
    return quantize(y, np.float32(s_out), int(z_out), int(qmin), int(qmax))
