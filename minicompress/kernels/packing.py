"""Weight packing: an int8 weight re-laid out once, at convert time, in the order the GEMM reads it.

`vpdpbusd` multiplies 64 bytes of activations by 64 bytes of weights and adds groups of 4 products into 16
int32 lanes. Lane j must therefore see the 4 weights w[n_j, k..k+3] side by side, while the activation
side is 4 bytes a[m, k..k+3] repeated in every lane. The packed layout is

    data[p, g, j, t] = w[64 p + j, 4 g + t]          int8 [N_pad / 64, K_pad / 4, 64, 4]

one panel p per 64 output columns (4 registers of 16 lanes), K in groups g of 4. Reading panel p is then a
single forward stream of 256 bytes per group; N and K are zero-padded to multiples of 64 and 4 (zero
weights add nothing, so padding never changes a result). The same layout feeds the portable kernel.

Packing also precomputes what the zero-point correction needs (Jacob et al. 2018, eq. 7-8):
    col_sums[n] = sum_k w[n, k]          (int32; multiplied by the activation zero point at run time)
and keeps the weight's quantization parameters (per-channel `scale`, `zero_point`) for the epilogues.
"""
import numpy as np
from numba import njit, prange

from .checks import MAX_K_U8S8, check_array, check_k_fits_int32

PANEL = 64          # output columns per panel: 4 zmm registers x 16 int32 lanes
GROUP = 4           # consecutive K values multiplied and summed inside one lane


@njit(cache=True, parallel=True)
def _pack_nk(weight, data, col_sums):
    n_size, k_size = weight.shape
    n_panels, k_groups = data.shape[0], data.shape[1]
    for p in prange(n_panels):
        for j in range(PANEL):
            n = p * PANEL + j
            if n < n_size:
                total = np.int64(0)
                for k in range(k_size):
                    data[p, k // GROUP, j, k % GROUP] = weight[n, k]
                    total += np.int64(weight[n, k])      # explicit: int8 + int8 would wrap in plain Python
                for k in range(k_size, k_groups * GROUP):
                    data[p, k // GROUP, j, k % GROUP] = 0
                col_sums[n] = total
            else:
                for g in range(k_groups):
                    for t in range(GROUP):
                        data[p, g, j, t] = 0
                col_sums[n] = 0


class PackedWeight:
    """An int8 weight [N, K] (Linear's (out_features, in_features)) packed for the u8 x s8 kernels.

    Attributes: n, k (logical sizes), n_padded, k_padded, data (int8 [n_padded/64, k_padded/4, 64, 4]),
    col_sums (int32 [n_padded]), zero_point (int32 [n]), scale (float32 [n] or None), nbytes.
    Build it with `pack_weight`; `unpack()` gives the original [N, K] back.
    """

    def __init__(self, data, n, k, col_sums, zero_point, scale):
        self.data, self.n, self.k = data, n, k
        self.col_sums, self.zero_point, self.scale = col_sums, zero_point, scale
        self.n_padded = data.shape[0] * PANEL
        self.k_padded = data.shape[1] * GROUP
        self.has_zero_point = bool(np.any(zero_point != 0))
        # per-column epilogue operands, padded to n_padded, computed once here instead of at every call
        self.epilogue_columns = (col_sums.astype(np.int64), _padded(zero_point, self.n_padded, np.int64),
                                 _padded(np.zeros(0) if scale is None else scale, self.n_padded, np.float32))

    @property
    def nbytes(self):
        extra = 0 if self.scale is None else self.scale.nbytes
        return self.data.nbytes + self.col_sums.nbytes + self.zero_point.nbytes + extra

    @property
    def shape(self):
        return (self.n, self.k)

    def unpack(self):
        """The int8 weight [N, K] this object was packed from."""
        full = self.data.transpose(0, 2, 1, 3).reshape(self.n_padded, self.k_padded)
        return np.ascontiguousarray(full[:self.n, :self.k])

    def __repr__(self):
        per = "per-channel" if self.scale is not None and np.unique(self.scale).size > 1 else "per-tensor"
        return (f"PackedWeight(out_features={self.n}, in_features={self.k}, layout=[{self.n_padded // PANEL}, "
                f"{self.k_padded // GROUP}, {PANEL}, {GROUP}] int8, scale={'none' if self.scale is None else per})")


def pack_weight(weight, scale=None, zero_point=0):
    """Pack an int8 weight [N, K] once. `scale`, `zero_point`: the weight's qparams, a scalar or one per
    output channel (row); `scale` is only needed by the float-output (dequantizing) epilogues."""
    check_array("weight", weight, np.int8, ndim=2, contiguous=False)
    n, k = weight.shape
    check_k_fits_int32(k, MAX_K_U8S8, "uint8 x int8")
    zero_point = _per_channel("zero_point", zero_point, n, np.int64)
    if np.any(zero_point < -128) or np.any(zero_point > 127):
        raise ValueError("weight zero_point must lie in the int8 range [-128, 127]")
    if scale is not None:
        scale = _per_channel("scale", scale, n, np.float32)
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("weight scale must be finite and > 0")
    n_panels, k_groups = -(-n // PANEL), -(-k // GROUP)
    data = np.empty((n_panels, k_groups, PANEL, GROUP), dtype=np.int8)
    col_sums = np.empty(n_panels * PANEL, dtype=np.int32)
    _pack_nk(np.ascontiguousarray(weight), data, col_sums)
    return PackedWeight(data, n, k, col_sums, zero_point.astype(np.int32), scale)


def pack_b(b, scale=None, zero_point=0):
    """Pack a GEMM right-hand side b int8 [K, N] (the transpose of a Linear weight)."""
    check_array("b", b, np.int8, ndim=2, contiguous=False)
    return pack_weight(np.ascontiguousarray(b.T), scale=scale, zero_point=zero_point)


def _per_channel(name, value, n, dtype):
    arr = np.asarray(value)
    if np.issubdtype(np.dtype(dtype), np.integer) and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer, got dtype {arr.dtype.name}")
    if arr.ndim == 0:
        return np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},) (one per output channel), got {arr.shape}")
    return arr.astype(dtype)


def _padded(x, length, dtype):
    out = np.zeros(length, dtype=dtype)
    out[:len(x)] = x
    return out
