"""Fused epilogues: what happens to an int32 accumulator tile before it leaves the cache, in one pass.

A GEMM kernel computes raw[m, n] = sum_k a[m, k] * w[n, k] for a 4 x 64 tile (a uint8, w int8) and hands the
tile to `epilogue_tile`, which in the same pass applies (Jacob et al. 2018, eq. 7; za, zw zero points):

    acc[m, n] = raw - za[m] * colsum_w[n] - zw[n] * (rowsum_a[m] - K * za[m]) + bias_int32[n]
              = sum_k (a[m, k] - za[m]) * (w[n, k] - zw[n]) + bias_int32[n]           (exact, int64)
then one of three outputs:
    "int32":   clamp(acc, int32) (after ReLU: max(acc, 0))
    "requant": clamp(requantize(acc, m0[n], shift[n]) + z_out, qmin, qmax)    gemmlowp rounding, as
               `kernels.requantize`; ReLU is folded into the clamp (qmin >= z_out) by the caller
               rounding="half_even": instead ONE rounding, half to even, of the exact 64-bit product
               round(acc * m0 / 2^(31 + shift)) = (p + 2^(s-1) - 1 + ((p >> s) & 1)) >> s,  p = acc * m0,
               s = 31 + shift (> 0; s = 0: p itself): the rounding of np.rint, so an integer model equals its
               fake-quantized twin (quant.integer_ops.requantize is its NumPy twin)
    "float":   float32(acc) * (a_scale[m] * w_scale[n]) + bias_float[n]  (then ReLU: max(., 0))
               the dequantizing epilogue of dynamic quantization (float bias, as PyTorch's dynamic Linear)

Per-row za / a_scale allow per-row (per-token) activation quantization; per-column parameters allow
per-channel weights. All parameters travel as one tuple of arrays (`make_epilogue`; `epilogue_per_tensor` builds
it inside Numba for the one-call dynamic Linear), so every call of a kernel has the same Numba signature and
compiles once. The requantized output is written as the low byte into a uint8 buffer and viewed as int8 when
the caller asked for int8 (two's complement: same bits).
"""
import numpy as np
from numba import njit

from .checks import check_array
from .requantize import INT32_MAX, INT32_MIN

MODES = {"int32": 0, "requant": 1, "float": 2}
ROUNDINGS = ("gemmlowp", "half_even")
REQUANT_HALF_EVEN = 3    # the mode number of output="requant", rounding="half_even"


def epilogue_columns(packed, *, output="int32", bias_int32=None, m0=None, shift=None, out_zero_point=0,
                     qmin=0, qmax=255, bias_float=None, relu=False, rounding="gemmlowp"):
    """The per-layer half of the epilogue (per output column), validated and padded once.

    Returns a dict: mode, bias_i, m0, left, right, w_scale, bias_f (arrays of n_padded) and out_zp, qmin,
    qmax, relu. A layer object builds it at construction; `epilogue_rows` adds the per-call half."""
    if output not in MODES:
        raise ValueError(f"output must be one of {sorted(MODES)}, got {output!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    mode = REQUANT_HALF_EVEN if output == "requant" and rounding == "half_even" else MODES[output]
    n_pad = packed.n_padded
    bias_i = np.zeros(n_pad, np.int64)
    if bias_int32 is not None:
        check_array("bias_int32", bias_int32, np.int32, ndim=1, contiguous=False)
        if bias_int32.shape[0] != packed.n:
            raise ValueError(f"bias_int32 must have shape ({packed.n},), got {bias_int32.shape}")
        bias_i[:packed.n] = bias_int32
    m0_arr, left, right = np.zeros(n_pad, np.int64), np.zeros(n_pad, np.int64), np.zeros(n_pad, np.int64)
    if output == "requant":
        if m0 is None or shift is None:
            raise ValueError("output='requant' needs m0 and shift (from kernels.quantize_multiplier)")
        m0_n = np.broadcast_to(np.asarray(m0, np.int64), (packed.n,))
        shift_n = np.broadcast_to(np.asarray(shift, np.int64), (packed.n,))
        if np.any(m0_n < 0) or np.any(m0_n > INT32_MAX) or np.any(shift_n < -31) or np.any(shift_n > 62):
            raise ValueError("m0 must be in [0, 2^31) and shift in [-31, 62]: use quantize_multiplier(M)")
        m0_arr[:packed.n] = m0_n
        if mode == REQUANT_HALF_EVEN:      # right = total shift s, left = the rounding offset 2^(s-1) - 1
            total = np.minimum(31 + shift_n, 63)        # s >= 63: |acc m0| < 2^62 rounds to 0 either way
            right[:packed.n] = total
            left[:packed.n] = np.where(total > 0, (np.int64(1) << np.maximum(total - 1, 0)) - 1, 0)
        else:
            left[:packed.n] = np.maximum(-shift_n, 0)
            right[:packed.n] = np.maximum(shift_n, 0)
    bias_f = np.zeros(n_pad, np.float32)
    if output == "float":
        if packed.scale is None:
            raise ValueError("output='float' needs a PackedWeight built with a scale")
        if bias_float is not None:
            bias_float = np.asarray(bias_float, dtype=np.float32)
            if bias_float.shape != (packed.n,):
                raise ValueError(f"bias must have shape ({packed.n},), got {bias_float.shape}")
            bias_f[:packed.n] = bias_float
    colsum, zw, w_scale = packed.epilogue_columns
    return {"mode": mode, "bias_i": bias_i, "m0": m0_arr, "left": left, "right": right,
            "w_scale": w_scale, "bias_f": bias_f, "out_zp": int(out_zero_point), "qmin": int(qmin),
            "qmax": int(qmax), "relu": int(bool(relu)), "colsum": colsum, "zw": zw,
            "weight_zero_point": bool(np.any(zw != 0)), "k": packed.k}


def epilogue_rows(columns, m_size, a_zero_point, a_row_sums=None, a_scale=None):
    """The per-call half: activation zero point(s) and scale(s), one per row or one for all; returns the
    tuple of arrays the kernels take."""
    za = _row_vector("a_zero_point", a_zero_point, m_size, np.int64)
    colsum, zw = columns["colsum"], columns["zw"]
    if columns["weight_zero_point"]:
        if a_row_sums is None:
            raise ValueError("a_row_sums is needed when the weight has a nonzero zero_point")
        rowterm = np.asarray(a_row_sums, dtype=np.int64) - columns["k"] * za
    else:
        rowterm = np.zeros(m_size, np.int64)
    if columns["mode"] == 2:
        if a_scale is None:
            raise ValueError("output='float' needs a_scale (the activation scale)")
        a_scale_arr = _row_vector("a_scale", a_scale, m_size, np.float32)
    else:
        a_scale_arr = np.zeros(m_size, np.float32)
    # the common case (one activation zero point, zero weight zero points) needs one add per output:
    # acc = raw + colterm[n], colterm = bias - za[0] * colsum; other rows add -(za[m] - za[0]) * colsum[n]
    # - zw[n] * rowterm[m] ("row_dependent")
    za_ref = za[0] if m_size else 0
    colterm = columns["bias_i"] - za_ref * colsum if za_ref else columns["bias_i"]
    za_delta = za - za_ref
    per_row_za = np.ndim(a_zero_point) > 0 and bool(np.any(za_delta != 0))
    row_dependent = int(columns["weight_zero_point"] or per_row_za)
    params = np.array([columns["mode"], columns["out_zp"], columns["qmin"], columns["qmax"], columns["relu"],
                       row_dependent], dtype=np.int64)
    return (za_delta, rowterm, a_scale_arr, colsum, zw, colterm, columns["m0"], columns["left"], columns["right"],
            columns["w_scale"], columns["bias_f"], params)


def per_tensor_columns(columns):
    """The per-layer half as the tuple `epilogue_per_tensor` takes inside Numba (no weight zero point)."""
    if columns["weight_zero_point"]:
        raise ValueError("epilogue_per_tensor needs a weight without zero point (symmetric weights)")
    params = np.array([columns["mode"], columns["out_zp"], columns["qmin"], columns["qmax"], columns["relu"], 0],
                      dtype=np.int64)
    return (columns["colsum"], columns["zw"], columns["bias_i"], columns["m0"], columns["left"], columns["right"],
            columns["w_scale"], columns["bias_f"], params)


@njit(cache=True)
def epilogue_per_tensor(columns, m_size, a_scale, a_zero_point):
    """epilogue_rows for one activation (scale, zero point) shared by all M rows and a weight without zero
    point, built inside Numba: acc = raw + (bias - za * colsum[n]), one add per output."""
    colsum, zw, bias_i, m0, left, right, w_scale, bias_f, params = columns
    zeros = np.zeros(m_size, np.int64)
    colterm = bias_i - a_zero_point * colsum
    return (zeros, zeros, np.full(m_size, a_scale, np.float32), colsum, zw, colterm, m0, left, right, w_scale,
            bias_f, params)


def make_epilogue(m_size, packed, a_zero_point=0, a_row_sums=None, *, output="int32", bias_int32=None,
                  m0=None, shift=None, out_zero_point=0, qmin=0, qmax=255, a_scale=None, bias_float=None,
                  relu=False, rounding="gemmlowp"):
    """Both halves at once: the tuple of arrays the kernels take (see module docstring)."""
    columns = epilogue_columns(packed, output=output, bias_int32=bias_int32, m0=m0, shift=shift,
                               out_zero_point=out_zero_point, qmin=qmin, qmax=qmax, bias_float=bias_float,
                               relu=relu, rounding=rounding)
    return epilogue_rows(columns, m_size, a_zero_point, a_row_sums, a_scale)


def _row_vector(name, value, m_size, dtype):
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full(m_size, arr, dtype=dtype)
    if arr.shape != (m_size,):
        raise ValueError(f"{name} must be a scalar or have one entry per row ({m_size},), got {arr.shape}")
    return arr.astype(dtype)


@njit(cache=True)
def epilogue_tile(tile, rows, row0, col0, n_cols, ep, out_i32, out_u8, out_f32):
    """Finish output rows row0 .. row0 + rows - 1, columns col0 .. col0 + n_cols - 1, from the raw int32
    accumulators tile[r * 64 + j]: one call per work item.

    The loops index the operands directly with unsigned offsets (c = col0 + j) instead of slicing views: a
    view in Numba is reference-counted (an increment and a decrement, calls in the generated code), and one
    view per row made this epilogue cost more than the GEMM on small layers (6-16 us for a 256 x 64 output).
    Unsigned indices also drop Numba's negative-index wraparound test, so LLVM vectorises the inner loops.
    Each mode writes out its own `acc = raw + colterm (- row terms)` line on purpose: moving it into a helper
    function (inlined or not) stopped the vectorisation and made the requantizing loops 5-10x slower."""
    za_delta, rowterm, a_scale, colsum, zw, colterm, m0, left, right, w_scale, bias_f, params = ep
    mode, out_zp, qmin, qmax, relu, row_dependent = params[0], params[1], params[2], params[3], params[4], params[5]
    low = np.int64(0) if relu != 0 else np.int64(INT32_MIN)         # ReLU as a clamp: no branch in the loops
    low_f = np.float32(0.0) if relu != 0 else np.float32(-np.inf)
    first, width = np.uint64(col0), np.uint64(n_cols)
    for r in range(rows):
        m = row0 + r
        t = np.uint64(r * 64)
        za_m, rowterm_m = za_delta[m], rowterm[m]
        if mode == 0:
            for j in range(width):
                c = first + j
                acc = np.int64(tile[t + j]) + colterm[c]
                if row_dependent != 0:
                    acc -= za_m * colsum[c] + zw[c] * rowterm_m
                out_i32[m, c] = min(max(acc, low), np.int64(INT32_MAX))
        elif mode == 1:
            for j in range(width):
                c = first + j
                acc = np.int64(tile[t + j]) + colterm[c]
                if row_dependent != 0:
                    acc -= za_m * colsum[c] + zw[c] * rowterm_m
                x = min(max(acc, np.int64(INT32_MIN)), np.int64(INT32_MAX))
                x = min(max(x << left[c], np.int64(INT32_MIN)), np.int64(INT32_MAX))
                prod = x * m0[c]                                           # SaturatingRoundingDoublingHighMul
                total = prod + (np.int64(1 << 30) if prod >= 0 else np.int64(1 - (1 << 30)))
                q = (total + (np.int64((1 << 31) - 1) if total < 0 else np.int64(0))) >> 31   # truncate to 0
                mask = (np.int64(1) << right[c]) - 1                       # RoundingDivideByPOT
                threshold = (mask >> 1) + (np.int64(1) if q < 0 else np.int64(0))
                q = (q >> right[c]) + (np.int64(1) if (q & mask) > threshold else np.int64(0))
                q = min(max(q + out_zp, qmin), qmax)
                out_u8[m, c] = np.uint8(q & 0xFF)
        elif mode == 3:                                                    # one rounding, half to even
            for j in range(width):
                c = first + j
                acc = np.int64(tile[t + j]) + colterm[c]
                if row_dependent != 0:
                    acc -= za_m * colsum[c] + zw[c] * rowterm_m
                prod = min(max(acc, np.int64(INT32_MIN)), np.int64(INT32_MAX)) * m0[c]       # |prod| < 2^62
                s = right[c]
                q = (prod + left[c] + ((prod >> s) & min(s, np.int64(1)))) >> s              # floor + round up
                q = min(max(q + out_zp, qmin), qmax)
                out_u8[m, c] = np.uint8(q & 0xFF)
        else:
            scale_m = a_scale[m]
            for j in range(width):
                c = first + j
                acc = np.int64(tile[t + j]) + colterm[c]
                if row_dependent != 0:
                    acc -= za_m * colsum[c] + zw[c] * rowterm_m
                y = np.float32(acc) * (scale_m * w_scale[c]) + bias_f[c]
                out_f32[m, c] = max(y, low_f)


def epilogue_reference(raw, ep, n):
    """NumPy twin of `epilogue_tile` on a whole raw product [M, N] (int64): returns the finished output
    (int32, uint8 holding the requantized bytes, or float32) for the same `ep` tuple."""
    za_delta, rowterm, a_scale, colsum, zw, colterm, m0, left, right, w_scale, bias_f, params = ep
    mode, out_zp, qmin, qmax, relu, _ = (int(v) for v in params)
    cols = slice(0, n)
    acc = (np.asarray(raw, np.int64) + colterm[None, cols] - za_delta[:, None] * colsum[None, cols]
           - zw[None, cols] * rowterm[:, None])
    if mode == 0:
        if relu:
            acc = np.maximum(acc, 0)
        return np.clip(acc, INT32_MIN, INT32_MAX).astype(np.int32)
    if mode == 1:
        x = np.clip(acc, INT32_MIN, INT32_MAX)
        x = np.clip(x << left[None, cols], INT32_MIN, INT32_MAX)
        prod = x * m0[None, cols]
        total = prod + np.where(prod >= 0, 1 << 30, 1 - (1 << 30))
        q = np.where(total >= 0, total >> 31, -((-total) >> 31))
        mask = (np.int64(1) << right[None, cols]) - 1
        q = (q >> right[None, cols]) + ((q & mask) > (mask >> 1) + (q < 0))
        return (np.clip(q + out_zp, qmin, qmax) & 0xFF).astype(np.uint8)
    if mode == REQUANT_HALF_EVEN:
        prod = np.clip(acc, INT32_MIN, INT32_MAX) * m0[None, cols]
        s = right[None, cols]
        q = (prod + left[None, cols] + ((prod >> s) & np.minimum(s, 1))) >> s
        return (np.clip(q + out_zp, qmin, qmax) & 0xFF).astype(np.uint8)
    y = acc.astype(np.float32) * (a_scale[:, None] * w_scale[None, cols]) + bias_f[None, cols]
    return np.maximum(y, np.float32(0)) if relu else y
