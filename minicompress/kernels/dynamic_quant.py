"""Dynamic activation quantization: float32 [M, K] -> uint8 [M, K_pad], per tensor or per row (NumPy + Numba).

Dynamic quantization (PyTorch's quantize_dynamic, the deck's BERT example) picks the activation's qparams at
run time from the batch itself:

    min_neg = min(min(x), 0), max_pos = max(max(x), 0)                       (over the tensor, or each row)
    scale   = max((max_pos - min_neg) / (qmax - qmin), eps_float32)          float32, qmin = 0
    zp      = clamp(qmin - rint(min_neg / scale), qmin, qmax)
    q       = clamp(rint(x * (1 / scale)) + zp, qmin, qmax)                  uint8; rint = half to even

the same float32 arithmetic as `quant.calc_qparams` / `quant.quantize` (and PyTorch: multiply by the float32
reciprocal). qmax = 255, or 127 with reduce_range=True (what PyTorch's x86 backend uses because its older
vpmaddubsw kernels saturate int16; VNNI does not, so 255 is safe here). Per row ("per token") gives each row
its own (scale, zp): better accuracy for rows of very different ranges, same cost.
The output rows are zero-padded to K_pad (a multiple of 4) so the VNNI kernel can read 4 bytes at a time.
Per row, the ranges come from NumPy's vectorised min / max; then one parallel Numba pass computes each row's
(scale, zp) and quantizes the row. Per tensor, `quantize_per_tensor_into` does it all in one Numba call: the
range from a vectorised pass over order-preserving integer keys of the floats (`float_range`), then the
quantization -- what a small dynamic Linear runs on every call (kernels.DynamicQLinear).
"""
import numpy as np
from numba import njit, prange

from .checks import check_array
from .epilogue import epilogue_per_tensor
from .packing import GROUP

FLOAT32_EPS = np.float32(np.finfo(np.float32).eps)
KEY_POS_INF = np.int32(0x7F800000)         # float_range's keys of +inf (bits 0x7F800000) and -inf
KEY_NEG_INF = np.int32(-0x7F800001)        # (bits 0xFF800000 -> key 0x807FFFFF as int32)


@njit(cache=True)
def _qparams(lo, hi, qmax):
    min_neg = min(lo, np.float32(0.0))
    max_pos = max(hi, np.float32(0.0))
    scale = max(np.float32(max_pos - min_neg) / np.float32(qmax), FLOAT32_EPS)
    zp = np.int64(-np.rint(min_neg / scale))
    return scale, min(max(zp, np.int64(0)), np.int64(qmax))


@njit(cache=True)
def _quantize_row(row, scale, zp, qmax, out_row):
    """out_row = clamp(rint(row * (1 / scale)) + zp, 0, qmax), in float32 (exact: all values are small
    integers), then zero padding up to out_row's width. Rows come in as 1-D slices: unit stride, vectorised."""
    inv_scale = np.float32(1.0) / scale
    zp_f, qmax_f = np.float32(zp), np.float32(qmax)
    for k in range(row.shape[0]):
        q = np.rint(row[k] * inv_scale) + zp_f
        out_row[k] = np.uint8(min(max(q, np.float32(0.0)), qmax_f))
    for k in range(row.shape[0], out_row.shape[0]):
        out_row[k] = 0


@njit(cache=True)
def _quantize_row_own_range(i, x, row_min, row_max, qmax, out, scales, zero_points):
    """Row i with its own (scale, zp) from [row_min[i], row_max[i]], written to scales / zero_points."""
    scale, zp = _qparams(row_min[i], row_max[i], qmax)
    scales[i], zero_points[i] = scale, zp
    _quantize_row(x[i], scale, zp, qmax, out[i])


@njit(cache=True, parallel=True)
def _quantize_rows_u8(x, row_min, row_max, qmax, out, scales, zero_points):
    for i in prange(x.shape[0]):
        _quantize_row_own_range(i, x, row_min, row_max, qmax, out, scales, zero_points)


@njit(cache=True)
def _quantize_rows_u8_serial(x, row_min, row_max, qmax, out, scales, zero_points):
    """_quantize_rows_u8 on the calling thread (small inputs: no thread start-up)."""
    for i in range(x.shape[0]):
        _quantize_row_own_range(i, x, row_min, row_max, qmax, out, scales, zero_points)


@njit(cache=True)
def _quantize_flat_u8(x, lo, hi, qmax, out):
    """Per tensor with K already a multiple of 4 (no padding): one (scale, zp), one flat pass (unsigned
    index: vectorised), the arithmetic of _quantize_row. Returns (scale, zp)."""
    scale, zp = _qparams(lo, hi, qmax)
    inv_scale = np.float32(1.0) / scale
    zp_f, qmax_f = np.float32(zp), np.float32(qmax)
    for k in range(np.uint64(x.shape[0])):
        q = np.rint(x[k] * inv_scale) + zp_f
        out[k] = np.uint8(min(max(q, np.float32(0.0)), qmax_f))
    return scale, zp


@njit(cache=True)
def float_range(x):
    """(min, max, finite) of a float32 array in one pass that LLVM vectorises.

    A loop of float `min()` does not vectorise (NaN semantics: it ran 5x slower than NumPy). Integers do: the
    bits b of a float32, read as int32, map to an order-preserving key
        key = b ^ ((b >> 31) & 0x7FFFFFFF)       (negative floats: flip the magnitude bits; -0.0 < +0.0)
    so min / max of the keys are the keys of min / max, and the map is its own inverse. NaNs land beyond the
    keys of +-inf, so `finite` is a comparison of the two extreme keys with those of +-inf."""
    bits = x.view(np.int32)
    lo, hi = np.int32(np.iinfo(np.int32).max), np.int32(np.iinfo(np.int32).min)
    for i in range(np.uint64(bits.shape[0])):
        b = bits[i]
        key = b ^ ((b >> 31) & np.int32(0x7FFFFFFF))
        lo, hi = min(lo, key), max(hi, key)
    keys = np.array([lo, hi], np.int32)
    values = (keys ^ ((keys >> 31) & 0x7FFFFFFF)).astype(np.int32).view(np.float32)   # its own inverse
    return values[0], values[1], KEY_NEG_INF < lo and hi < KEY_POS_INF


@njit(cache=True)
def quantize_per_tensor_into(x, qmax, out):
    """float32 x [M, K] -> out uint8 [M, K_pad] (zero padding) with one (scale, zp) from x's own range, in one
    call: (scale, zp, finite); nothing is written when x has a NaN or inf (finite = False)."""
    lo, hi, finite = float_range(x.reshape(-1))
    if not finite:
        return np.float32(0.0), np.int64(0), False
    if x.shape[1] == out.shape[1]:
        scale, zp = _quantize_flat_u8(x.reshape(-1), lo, hi, qmax, out.reshape(-1))
    else:
        scale, zp = _qparams(lo, hi, qmax)
        for i in range(x.shape[0]):
            _quantize_row(x[i], scale, zp, qmax, out[i])
    return scale, zp, True


@njit(cache=True)
def dynamic_linear_operands(x, qmax, k_groups, columns):
    """What a one-call dynamic Linear hands its GEMM: (q uint8 [M, GROUP k_groups], the epilogue, finite),
    x quantized per tensor (quantize_per_tensor_into) and the epilogue built for its (scale, zero point)
    (epilogue.epilogue_per_tensor with `columns` from epilogue.per_tensor_columns)."""
    q = np.empty((x.shape[0], k_groups * GROUP), np.uint8)
    scale, zero_point, finite = quantize_per_tensor_into(x, qmax, q)
    return q, epilogue_per_tensor(columns, x.shape[0], scale, zero_point), finite


PARALLEL_MIN_ELEMENTS = 1 << 20    # below this many inputs one thread is faster than starting the others


def quantize_dynamic_u8(x, per_row=False, reduce_range=False, k_padded=None, parallel=None):
    """float32 x [M, K] -> (q uint8 [M, k_padded], scale float32 [M], zero_point int32 [M]).

    parallel: None = threads only for at least PARALLEL_MIN_ELEMENTS inputs; True / False forces.
    Per tensor, every row gets the same (scale, zero_point). k_padded defaults to K rounded up to 4.
    The ranges come from NumPy's SIMD min / max (a Numba loop with `min()` does not vectorise: 5x slower);
    NaN and inf propagate into them, so checking the ranges checks the data."""
    check_array("x", x, np.float32, ndim=2)
    m_size, k_size = x.shape
    if m_size == 0 or k_size == 0:
        raise ValueError(f"x must not be empty, got shape {x.shape}")
    k_padded = -(-k_size // 4) * 4 if k_padded is None else int(k_padded)
    if k_padded < k_size:
        raise ValueError(f"k_padded={k_padded} is smaller than K={k_size}")
    if per_row:
        row_min, row_max = x.min(axis=1), x.max(axis=1)
        finite = np.isfinite(row_min).all() and np.isfinite(row_max).all()
    else:
        lo, hi = x.min(), x.max()
        finite = np.isfinite(lo) and np.isfinite(hi)
        row_min, row_max = np.full(m_size, lo, np.float32), np.full(m_size, hi, np.float32)
    if not finite:
        raise ValueError("x contains NaN or inf: dynamic quantization needs finite activations")
    qmax = 127 if reduce_range else 255
    out = np.empty((m_size, k_padded), np.uint8)
    if not per_row and k_padded == k_size and x.size < PARALLEL_MIN_ELEMENTS:
        scale, zp = _quantize_flat_u8(x.reshape(-1), lo, hi, np.int64(qmax), out.reshape(-1))
        return out, np.full(m_size, scale, np.float32), np.full(m_size, zp, np.int32)
    scales = np.empty(m_size, np.float32)
    zero_points = np.empty(m_size, np.int32)
    threaded = x.size >= PARALLEL_MIN_ELEMENTS if parallel is None else bool(parallel)
    (_quantize_rows_u8 if threaded else _quantize_rows_u8_serial)(x, row_min, row_max, np.int64(qmax), out, scales,
                                                                  zero_points)
    return out, scales, zero_points


def quantize_dynamic_u8_reference(x, per_row=False, reduce_range=False):
    """NumPy twin (unpadded q [M, K])."""
    x = np.asarray(x, np.float32)
    qmax = 127 if reduce_range else 255
    lo = x.min(axis=1) if per_row else np.full(x.shape[0], x.min(), np.float32)
    hi = x.max(axis=1) if per_row else np.full(x.shape[0], x.max(), np.float32)
    min_neg = np.minimum(lo, np.float32(0))
    max_pos = np.maximum(hi, np.float32(0))
    scale = np.maximum((max_pos - min_neg) / np.float32(qmax), FLOAT32_EPS).astype(np.float32)
    zp = np.clip(-np.rint(min_neg / scale), 0, qmax).astype(np.int64)
    inv = (np.float32(1) / scale).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]) + zp[:, None], 0, qmax).astype(np.uint8)
    return q, scale, zp.astype(np.int32)
