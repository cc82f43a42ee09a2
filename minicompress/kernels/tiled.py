"""Register-tiled Numba GEMM (rung 3 of the ladder): reuse every loaded weight for 4 rows of output.

The plain i-k-j loop (gemm.py) loads b[k, j] once per output row: for each multiply-add it moves one byte of
b and one int32 of c through the load/store units. Tiling computes 4 rows at once,

    for each block of 4 rows i..i+3 and each block of 256 columns:
        acc[4, 256] int32 = 0                            # 4 KB: stays in L1, its rows in vector registers
        for k:  x0..x3 = a[i..i+3, k]                    # 4 scalars
                for j: bj = b[k, j];  acc[r, j] += x_r * bj   for r = 0..3   (one load of b, 4 uses)
        c[i..i+3, block] = acc

so each byte of b feeds 4 multiply-adds. Every operand is cast to int32 explicitly: Numba widens
int32 * int32 to int64, which would halve the lanes per vector register (16 int32 vs 8 int64 in a zmm).
Rows left over (M not a multiple of 4) fall back to the plain loop. Exact: same int32 sums, another order.
"""
import numpy as np
from numba import njit, prange

from .gemm import check_gemm_s8s8_inputs

COLUMNS = 256


@njit(cache=True, parallel=True)
def _gemm_tiled(a, b, c):
    m_size, k_size = a.shape
    n_size = b.shape[1]
    for block in prange((m_size + 3) // 4):
        i = block * 4
        if i + 4 <= m_size:
            acc = np.zeros((4, COLUMNS), np.int32)
            for j0 in range(0, n_size, COLUMNS):
                width = min(COLUMNS, n_size - j0)
                acc[:] = 0
                acc0, acc1, acc2, acc3 = acc[0], acc[1], acc[2], acc[3]
                for k in range(k_size):
                    x0, x1 = np.int32(a[i, k]), np.int32(a[i + 1, k])
                    x2, x3 = np.int32(a[i + 2, k]), np.int32(a[i + 3, k])
                    b_row = b[k, j0:j0 + width]
                    for j in range(width):
                        bj = np.int32(b_row[j])
                        acc0[j] = np.int32(acc0[j] + x0 * bj)
                        acc1[j] = np.int32(acc1[j] + x1 * bj)
                        acc2[j] = np.int32(acc2[j] + x2 * bj)
                        acc3[j] = np.int32(acc3[j] + x3 * bj)
                c[i:i + 4, j0:j0 + width] = acc[:, :width]
        else:
            for r in range(i, m_size):
                row = c[r]
                row[:] = 0
                for k in range(k_size):
                    x = np.int32(a[r, k])
                    for j in range(n_size):
                        row[j] = np.int32(row[j] + x * np.int32(b[k, j]))


def gemm_s8s8s32_tiled(a, b):
    """Exact int8 [M, K] x int8 [K, N] -> int32 [M, N], register-tiled plain Numba (4 rows x 256 columns)."""
    check_gemm_s8s8_inputs(a, b)
    c = np.empty((a.shape[0], b.shape[1]), dtype=np.int32)
    _gemm_tiled(a, b, c)
    return c
