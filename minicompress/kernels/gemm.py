"""Exact int8 x int8 -> int32 matrix product (the GEMM of integer-only inference).

    C[m, n] = sum_k A[m, k] * B[k, n]          A int8 [M, K], B int8 [K, N], C int32 [M, N]

Every product of two int8 values is at most 128 * 128 = 2^14 in magnitude, so the int32 sum is exact as long
as K <= (2^31 - 1) // 2^14 = 131071 (checked; a larger K raises instead of wrapping around). Within that bound
int32 accumulation gives exactly the integer result: no rounding, no saturation, the same bits as the int64
product. (Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", CVPR 2018, section 2.3.)

Two implementations with the same contract:
    gemm_s8s8s32_reference(a, b)  plain NumPy: int64 matmul, checked to fit int32, then cast.
    gemm_s8s8s32(a, b)            the library's kernel: the fastest exact path of this machine (see
                                  `kernels.dispatch`): VNNI with packed weights where the CPU has it,
                                  otherwise Numba loops (`gemm_s8s8s32_loops`).
`gemm_s8s8s32_loops` is the first rung of the kernel ladder: the textbook i-k-j loop in Numba. Loop order
i-k-j makes the innermost loop walk one row of B and one row of C with unit stride, which LLVM vectorises;
every operand is cast to int32 explicitly, because Numba widens arithmetic on small integers to int64.
"""
import numpy as np
from numba import njit, prange

from .checks import MAX_K_S8S8, MAX_K_U8S8, check_array, check_inner_dims, check_k_fits_int32
from .cpu import vnni_enabled
from .qgemm import gemm_s8s8s32_packed


def check_gemm_s8s8_inputs(a, b):
    """Validate a (int8 [M, K]) and b (int8 [K, N]): dtype, 2-D, C-contiguous, matching K, K small enough."""
    check_array("a", a, np.int8, ndim=2)
    check_array("b", b, np.int8, ndim=2)
    check_inner_dims("a", a.shape, "b", b.shape[0])
    check_k_fits_int32(a.shape[1], MAX_K_S8S8, "int8 x int8")


def gemm_s8s8s32_reference(a, b):
    """NumPy twin: the exact int64 product, checked to fit int32, returned as int32 [M, N]."""
    check_gemm_s8s8_inputs(a, b)
    c = a.astype(np.int64) @ b.astype(np.int64)
    if c.size and (c.min() < np.iinfo(np.int32).min or c.max() > np.iinfo(np.int32).max):
        raise ValueError("the int8 x int8 product does not fit int32")  # unreachable while K <= MAX_K_S8S8
    return c.astype(np.int32)


@njit(cache=True, parallel=True)
def _gemm_s8s8s32_loops(a, b, c):
    m_size, k_size = a.shape
    n_size = b.shape[1]
    for i in prange(m_size):
        row = c[i]
        row[:] = 0
        for k in range(k_size):
            a_ik = np.int32(a[i, k])
            for j in range(n_size):
                row[j] = np.int32(row[j] + a_ik * np.int32(b[k, j]))


def gemm_s8s8s32_loops(a, b):
    """Plain Numba loops (i-k-j order, int32 accumulation, rows of C in parallel). Exact."""
    check_gemm_s8s8_inputs(a, b)
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.int32)
    _gemm_s8s8s32_loops(a, b, c)
    return c


# below this many multiply-adds, packing b costs more than it saves
PACKED_MIN_WORK = 1 << 18


def gemm_s8s8s32(a, b):
    """Exact int8 [M, K] x int8 [K, N] -> int32 [M, N] on the fastest exact kernel this machine has.

    Where the CPU has AVX-512 VNNI (and MINICOMPRESS_PORTABLE_KERNELS is not set) and the product is large
    enough, b is packed and the u8 x s8 VNNI kernel runs on a + 128 (qgemm.gemm_s8s8s32_packed); otherwise
    the plain Numba loops. Both are exact; for repeated products with the same b, pack it once yourself
    (kernels.pack_weight) and call gemm_u8s8s32 / qlinear."""
    check_gemm_s8s8_inputs(a, b)
    m_size, k_size = a.shape
    n_size = b.shape[1]
    if m_size * n_size * k_size >= PACKED_MIN_WORK and k_size <= MAX_K_U8S8 and vnni_enabled():
        return gemm_s8s8s32_packed(a, b)
    c = np.empty((m_size, n_size), dtype=np.int32)
    _gemm_s8s8s32_loops(a, b, c)
    return c
