"""Uniform (affine) quantization: integer ranges, scale / zero-point, quantize, dequantize, fake quantize.

    q     = clamp(rint(x / scale) + zero_point, qmin, qmax)          (quantize; rint = half to even)
    x_hat = (q - zero_point) * scale                                 (dequantize)

Quantization parameters from a range [min_val, max_val] that is first widened to contain 0
(min_neg = min(min_val, 0), max_pos = max(max_val, 0)) so that 0.0 is exactly representable:

    affine:     scale = (max_pos - min_neg) / (qmax - qmin)
                zero_point = clamp(qmin - rint(min_neg / scale), qmin, qmax)
    symmetric:  scale = max(-min_neg, max_pos) / ((qmax - qmin) / 2)
                zero_point = 0 (signed range) or (qmin + qmax + 1) // 2 (unsigned range)
    scale is never below float32 eps, so a constant tensor never divides by zero.

Bit-exactness with PyTorch. Everything is computed in float32, as torch's observers and kernels do:
the range arithmetic and the division are float32, and quantize multiplies by the float32 reciprocal
`x * (1 / scale)` exactly as `torch.quantize_per_tensor` / `torch.fake_quantize_per_tensor_affine`
(FBGEMM) do; this equals `rint(x / scale)` except within one float32 ulp of a rounding tie.
One documented difference: for an *unsigned symmetric* range torch's observers use 128 when the range is
the default one and (qmin + qmax) // 2 for a custom one; we always use (qmin + qmax + 1) // 2 (= 128 for
0..255), as DESIGN.md specifies.

Granularity. Per-tensor: scalar scale / zero_point. Per-channel: 1-D arrays, one entry per slice along
`axis` (any axis). Per-group (weights): a (out, in) weight is cut into groups of `group_size` consecutive
input columns, each group of each row gets its own scale -- the scheme of GPTQ / AWQ style 4-bit weights.

The fake quantizer (quantize then dequantize, in float) has the straight-through gradient
(Bengio et al. 2013; Jacob et al. 2018):  d x_hat / dx = 1 where qmin <= rint(x/scale) + zp <= qmax, else 0
(`ste_grad`, which FakeQuantizeFn's backward calls).

Reference: Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", CVPR 2018; Krishnamoorthi, "Quantizing deep convolutional networks for efficient inference", 2018.
"""
import numpy as np

from ..core import Function, Tensor

FLOAT32_EPS = np.float32(np.finfo(np.float32).eps)
MIN_BITS, MAX_BITS = 2, 16


# ---- integer ranges ---------------------------------------------------------------------------------
def check_bits(bits, who="qrange"):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{who}: bits must be an int in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    return int(bits)


def qrange(bits=8, signed=True, reduce_range=False, narrow_range=False):
    """(qmin, qmax) of a `bits`-bit integer.

    signed: [-2^(b-1), 2^(b-1) - 1];  unsigned: [0, 2^b - 1].
    reduce_range drops one bit (PyTorch's x86 setting: quint8 -> 0..127, qint8 -> -64..63).
    narrow_range drops the lowest code (signed int8 -> -127..127, symmetric around 0; unsigned -> 1..255).
    """
    bits = check_bits(bits)
    b = bits - 1 if reduce_range else bits
    if signed:
        qmin, qmax = -(2 ** (b - 1)), 2 ** (b - 1) - 1
    else:
        qmin, qmax = 0, 2 ** b - 1
    if narrow_range:
        qmin += 1
    if qmax <= qmin:
        raise ValueError(f"qrange: bits={bits}, signed={signed}, reduce_range={reduce_range}, "
                         f"narrow_range={narrow_range} leaves fewer than two levels ({qmin}..{qmax})")
    return qmin, qmax


def check_qrange(qmin, qmax, who):
    for name, v in (("qmin", qmin), ("qmax", qmax)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{who}: {name} must be an int, got {v!r}")
    if not qmin < qmax:
        raise ValueError(f"{who}: need qmin < qmax, got qmin={qmin}, qmax={qmax}")
    if qmin < -(2 ** 15) or qmax > 2 ** 16 - 1 or (qmin < 0 and qmax > 2 ** 15 - 1):
        raise ValueError(f"{who}: the range {qmin}..{qmax} does not fit in 16 bits (bits must be 2..16)")
    return int(qmin), int(qmax)


def int_dtype(qmin, qmax):
    """The smallest NumPy integer dtype holding [qmin, qmax]: int8, uint8, int16 or uint16 (bits <= 16)."""
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= qmin and qmax <= info.max:
            return np.dtype(dt)
    raise ValueError(f"no integer dtype for {qmin}..{qmax}")


# ---- checks --------------------------------------------------------------------------------------------
def as_float_array(x, who, name="x"):
    arr = x.data if isinstance(x, Tensor) else np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{who}: {name} must be a numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{who}: {name} is empty (shape {arr.shape}); nothing to quantize")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise ValueError(f"{who}: {name} contains {bad} (shape {arr.shape}); quantization needs finite values")
    return arr


# ---- scale and zero point ----------------------------------------------------------------------------
def calc_qparams(min_val, max_val, qmin, qmax, symmetric=False):
    """(scale float32, zero_point int) from an observed range; scalars in, scalars out, 1-D in, 1-D out.

    Per-channel: min_val and max_val are 1-D arrays of equal length; returns a float32 array and an
    int64 array. Computed in float32 as torch.ao.quantization's observers (see module docstring).
    """
    qmin, qmax = check_qrange(qmin, qmax, "calc_qparams")
    per_channel = np.ndim(min_val) > 0 or np.ndim(max_val) > 0
    lo = np.asarray(min_val, dtype=np.float32)
    hi = np.asarray(max_val, dtype=np.float32)
    if lo.shape != hi.shape or lo.ndim > 1:
        raise ValueError(f"calc_qparams: min_val and max_val must be scalars or 1-D arrays of one shape, "
                         f"got shapes {lo.shape} and {hi.shape}")
    if lo.size == 0:
        raise ValueError("calc_qparams: min_val / max_val are empty (no channels)")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"calc_qparams: the range must be finite, got min_val={min_val}, max_val={max_val} "
                         f"(no data observed, or NaN/inf in the data)")
    if np.any(lo > hi):
        raise ValueError(f"calc_qparams: min_val must be <= max_val, got {min_val} > {max_val}")
    min_neg = np.minimum(lo, np.float32(0))
    max_pos = np.maximum(hi, np.float32(0))
    if symmetric:
        amax = np.maximum(-min_neg, max_pos)
        scale = np.maximum(amax / np.float32((qmax - qmin) / 2), FLOAT32_EPS).astype(np.float32)
        zp_value = 0 if qmin < 0 else (qmin + qmax + 1) // 2
        zero_point = np.full(lo.shape, zp_value, dtype=np.int64)
    else:
        scale = np.maximum((max_pos - min_neg) / np.float32(qmax - qmin), FLOAT32_EPS).astype(np.float32)
        zero_point = qmin - np.rint(min_neg / scale).astype(np.int64)
        zero_point = np.clip(zero_point, qmin, qmax).astype(np.int64)
    if per_channel:
        return scale, zero_point
    return np.float32(scale), int(zero_point)


# ---- quantize / dequantize -----------------------------------------------------------------------------
def _broadcast_params(scale, zero_point, shape, axis, who):
    """Shape scale / zero_point to broadcast against an array of `shape` (per-tensor if axis is None)."""
    scale = np.asarray(scale, dtype=np.float32)
    zero_point = np.asarray(zero_point)
    if axis is None:
        if scale.size != 1 or zero_point.size != 1:
            raise ValueError(f"{who}: per-tensor quantization (axis=None) needs scalar scale and zero_point, "
                             f"got shapes {scale.shape} and {zero_point.shape}; pass axis= for per-channel")
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    else:
        ndim = len(shape)
        if not -ndim <= axis < ndim:
            raise ValueError(f"{who}: axis {axis} is out of range for an input of shape {shape}")
        axis = axis % ndim
        n = shape[axis]
        if scale.shape != (n,) or zero_point.shape != (n,):
            raise ValueError(f"{who}: per-channel along axis {axis} of shape {shape} needs scale and zero_point "
                             f"of shape ({n},), got {scale.shape} and {zero_point.shape}")
        view = [1] * ndim
        view[axis] = n
        scale, zero_point = scale.reshape(view), zero_point.reshape(view)
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError(f"{who}: scale must be finite and > 0, got {scale.ravel()[:4]}...")
    if not np.issubdtype(zero_point.dtype, np.integer):
        if np.any(zero_point != np.rint(zero_point)):
            raise ValueError(f"{who}: zero_point must hold integers, got {zero_point.ravel()[:4]}")
        zero_point = zero_point.astype(np.int64)
    return scale, zero_point


def _rounded(arr, scale):
    """rint(x * (1/scale)) in the input's float precision (float32 for float32 input, as PyTorch)."""
    dt = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float32
    inv_scale = (dt.type(1) / scale.astype(dt)).astype(dt)
    return np.rint(arr.astype(dt, copy=False) * inv_scale)


def quantize(x, scale, zero_point, qmin, qmax, axis=None):
    """q = clamp(rint(x / scale) + zero_point, qmin, qmax) as the smallest integer dtype holding [qmin, qmax].

    x: any shape (array or Tensor), finite, non-empty. axis=None: per-tensor (scalar scale / zero_point);
    axis=k: per-channel, scale and zero_point 1-D of length x.shape[k]. The dtype is int8 / uint8 / int16 /
    uint16 (never wider, since bits <= 16); cast to int32 yourself before integer arithmetic.
    """
    qmin, qmax = check_qrange(qmin, qmax, "quantize")
    arr = as_float_array(x, "quantize")
    s, zp = _broadcast_params(scale, zero_point, arr.shape, axis, "quantize")
    q = np.clip(_rounded(arr, s) + zp, qmin, qmax)
    return q.astype(int_dtype(qmin, qmax))


def dequantize(q, scale, zero_point, axis=None):
    """x_hat = (q - zero_point) * scale, float32 (per-tensor, or per-channel along `axis`)."""
    arr = q.data if isinstance(q, Tensor) else np.asarray(q)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"dequantize: q must be an integer array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"dequantize: q is empty (shape {arr.shape})")
    s, zp = _broadcast_params(scale, zero_point, arr.shape, axis, "dequantize")
    return ((arr.astype(np.int64) - zp).astype(np.float32) * s).astype(np.float32)


# ---- per-group (weights) -------------------------------------------------------------------------------
def _groups(weight, group_size, who):
    w = as_float_array(weight, who, "weight")
    if w.ndim < 2:
        raise ValueError(f"{who}: weight must be at least 2-D (out, in, ...), got shape {w.shape}")
    w2 = w.reshape(w.shape[0], -1)
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size <= 0:
        raise ValueError(f"{who}: group_size must be a positive int, got {group_size!r}")
    if w2.shape[1] % group_size:
        raise ValueError(f"{who}: the input size {w2.shape[1]} of weight {w.shape} is not a multiple of "
                         f"group_size={group_size}")
    return w, w2.reshape(w2.shape[0], w2.shape[1] // group_size, group_size)


def calc_qparams_per_group(weight, group_size, qmin, qmax, symmetric=True):
    """Scale / zero point for each group of `group_size` consecutive inputs of each output row.

    weight: (out, in) (or (out, in, kh, kw), flattened to (out, in*kh*kw)) -> scale, zero_point of shape
    (out, in // group_size)."""
    _, g = _groups(weight, group_size, "calc_qparams_per_group")
    scale, zp = calc_qparams(g.min(axis=2).ravel(), g.max(axis=2).ravel(), qmin, qmax, symmetric)
    return scale.reshape(g.shape[:2]), zp.reshape(g.shape[:2])


def quantize_per_group(weight, scale, zero_point, qmin, qmax, group_size):
    """Quantize `weight` group by group (scale / zero_point of shape (out, in // group_size))."""
    qmin, qmax = check_qrange(qmin, qmax, "quantize_per_group")
    w, g = _groups(weight, group_size, "quantize_per_group")
    scale = np.asarray(scale, dtype=np.float32)
    zero_point = np.asarray(zero_point, dtype=np.int64)
    if scale.shape != g.shape[:2] or zero_point.shape != g.shape[:2]:
        raise ValueError(f"quantize_per_group: scale / zero_point must have shape {g.shape[:2]}, "
                         f"got {scale.shape} and {zero_point.shape}")
    q = np.clip(_rounded(g, scale[..., None]) + zero_point[..., None], qmin, qmax)
    return q.astype(int_dtype(qmin, qmax)).reshape(w.shape)


def dequantize_per_group(q, scale, zero_point, group_size):
    q = np.asarray(q)
    g = q.reshape(q.shape[0], -1, group_size).astype(np.int64)
    scale = np.asarray(scale, dtype=np.float32)[..., None]
    out = (g - np.asarray(zero_point, dtype=np.int64)[..., None]).astype(np.float32) * scale
    return out.astype(np.float32).reshape(q.shape)


# ---- fake quantization (straight-through estimator) ----------------------------------------------------
def ste_grad(x, scale, zero_point, qmin, qmax, grad):
    """The straight-through gradient of fake quantization (Bengio et al. 2013; Jacob et al. 2018, sec. 3):

        dL/dx = grad * [qmin <= rint(x / scale) + zero_point <= qmax]

    rounding is treated as the identity, so the gradient passes unchanged where the value was not clamped
    and is 0 where the clamp cut it off (both ends of [qmin, qmax] count as inside). x, grad: float arrays of
    one shape; scale, zero_point: scalars or arrays broadcastable to x; the result has grad's dtype."""
    x = np.asarray(x)
    qmin, qmax = check_qrange(qmin, qmax, "ste_grad")
    if np.shape(grad) != x.shape:
        raise ValueError(f"ste_grad: grad has shape {np.shape(grad)}, expected x's shape {x.shape}")
    dt = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    q = _rounded(x, np.asarray(scale, dtype=dt)) + zero_point
    return grad * ((q >= qmin) & (q <= qmax))


class FakeQuantizeFn(Function):
    """x_hat = (clamp(rint(x/s) + zp, qmin, qmax) - zp) * s;  dx = ste_grad(x, s, zp, qmin, qmax, grad)."""
    name = "fake_quantize"

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        ctx.save_for_backward(x, scale, zero_point)
        ctx.qrange = (qmin, qmax)
        q = _rounded(x, scale) + zero_point
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
        return ((np.clip(q, qmin, qmax) - zero_point).astype(dt) * scale.astype(dt)).astype(dt)

    @staticmethod
    def backward(ctx, grad):
        x, scale, zero_point = ctx.saved
        return ste_grad(x, scale, zero_point, *ctx.qrange, grad), None, None, None, None


def fake_quantize(x, scale, zero_point, qmin, qmax, axis=None):
    """Quantize-dequantize `x` (a Tensor) in float, keeping a straight-through gradient. Returns a Tensor."""
    qmin, qmax = check_qrange(qmin, qmax, "fake_quantize")
    if not isinstance(x, Tensor):
        x = Tensor(x)
    as_float_array(x.data, "fake_quantize")
    s, zp = _broadcast_params(scale, zero_point, x.shape, axis, "fake_quantize")
    return FakeQuantizeFn.apply(x, s, zp, qmin, qmax)
