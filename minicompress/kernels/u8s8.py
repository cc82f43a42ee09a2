"""Portable packed GEMM: uint8 activations x int8 packed weights, zero-point correction and fused epilogue.

    raw[m, n] = sum_k a[m, k] * w[n, k]              a uint8 [M, K_pad] (flattened, row stride lda)
    out       = epilogue(raw)                        (kernels.epilogue: zero points, bias, requant/float, ReLU)

Why unsigned x signed? Activations after ReLU are non-negative and PyTorch stores them as quint8 with a zero
point; weights are symmetric int8. Subtracting the activation zero point inside the loop would cost one
operation per product; instead the kernel multiplies the raw bytes and the epilogue subtracts
za * colsum_w[n] once per output (col sums precomputed at pack time): sum (a - za) w = sum a w - za sum w.
This is also exactly the operand pair `vpdpbusd` wants (unsigned x signed bytes), so this kernel is the
exact portable twin of `vnni.py`, on the same packed layout and the same driver:

    for each work item (64-column panel p, chunk of MC rows) in parallel:   # prange over items
        for each block of 4 rows:  4 x 64 int32 tile <- micro-kernel over all of K
                                   epilogue_tile on the tile rows (still in L1)
Numba widens int32 * int32 to int64: every product is cast back with np.int32(...) so LLVM keeps 32-bit lanes.
`gemm_packed_portable_serial` is the same driver without prange: for small products, where starting the
worker threads (and, on a busy machine, waiting for a core) costs more than the whole GEMM;
`dynamic_linear_portable_serial` a whole small dynamic Linear in one call (the twin of vnni.py's).
"""
import numpy as np
from numba import njit, prange

from .dynamic_quant import dynamic_linear_operands
from .epilogue import epilogue_tile
from .packing import GROUP, PANEL

ROWS = 4            # rows of the micro-tile
CHUNK = 32          # rows of one parallel work item


@njit(cache=True)
def micro_kernel_portable(a, a_start, lda, rows, b, panel_start, k_groups, tile):
    """tile[r * 64 + j] = sum_k a[row r, k] * w[64 p + j, k] for r < rows, plain loops over the packed layout.

    Slicing the 256 packed bytes of a group (`bg`) and a tile row (`t`) gives LLVM unit-stride views it can
    vectorise (an indexed version of the same loop runs ~25x slower)."""
    for i in range(rows * PANEL):
        tile[i] = 0
    for g in range(k_groups):
        base = panel_start + g * PANEL * GROUP
        bg = b[base:base + PANEL * GROUP]
        for r in range(rows):
            at = a_start + r * lda + g * GROUP
            x0, x1, x2, x3 = np.int32(a[at]), np.int32(a[at + 1]), np.int32(a[at + 2]), np.int32(a[at + 3])
            t = tile[r * PANEL:(r + 1) * PANEL]
            for j in range(PANEL):
                dot = (x0 * np.int32(bg[4 * j]) + x1 * np.int32(bg[4 * j + 1])
                       + x2 * np.int32(bg[4 * j + 2]) + x3 * np.int32(bg[4 * j + 3]))
                t[j] = np.int32(t[j] + np.int32(dot))


@njit(cache=True)
def _portable_item(item, n_panels, a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32, tile):
    """One work item: (64-column panel p, chunk of CHUNK rows), ROWS rows at a time, each tile's epilogue
    applied as soon as it is computed."""
    chunk, p = item // n_panels, item % n_panels              # consecutive items share an activation chunk
    col0 = p * PANEL
    n_cols = min(PANEL, n_size - col0)
    panel_start = p * k_groups * PANEL * GROUP
    row_end = min(m_size, (chunk + 1) * CHUNK)
    i = chunk * CHUNK
    while i < row_end:
        rows = min(ROWS, row_end - i)
        micro_kernel_portable(a, i * lda, lda, rows, b, panel_start, k_groups, tile)
        epilogue_tile(tile, rows, i, col0, n_cols, ep, out_i32, out_u8, out_f32)
        i += rows


@njit(cache=True, parallel=True)
def gemm_packed_portable(a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32):
    n_panels = (n_size + PANEL - 1) // PANEL
    m_chunks = (m_size + CHUNK - 1) // CHUNK
    for item in prange(n_panels * m_chunks):
        tile = np.empty(ROWS * PANEL, np.int32)
        _portable_item(item, n_panels, a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32, tile)


@njit(cache=True)
def gemm_packed_portable_serial(a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32):
    """gemm_packed_portable on the calling thread only (same work items, in order, one tile buffer)."""
    n_panels = (n_size + PANEL - 1) // PANEL
    m_chunks = (m_size + CHUNK - 1) // CHUNK
    tile = np.empty(ROWS * PANEL, np.int32)
    for item in range(n_panels * m_chunks):
        _portable_item(item, n_panels, a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32, tile)


@njit(cache=True)
def dynamic_linear_portable_serial(x, qmax, b, n_size, k_groups, columns, out_f32):
    """vnni.dynamic_linear_vnni_serial on the portable GEMM: quantize x per tensor, GEMM, dequantize, one call.
    Returns False (out untouched) when x has a NaN or inf."""
    q, ep, finite = dynamic_linear_operands(x, qmax, k_groups, columns)
    if finite:
        no_i32, no_u8 = np.empty((1, 1), np.int32), np.empty((1, 1), np.uint8)      # float output only
        gemm_packed_portable_serial(q.reshape(-1), q.shape[1], x.shape[0], b, n_size, k_groups, ep, no_i32, no_u8,
                                    out_f32)
    return finite
