"""VNNI GEMM: the packed u8 x s8 GEMM of `u8s8.py` with its micro-kernel written in `vpdpbusd`.

One `vpdpbusd zmm` does 64 multiply-adds (16 int32 lanes x 4 byte pairs): acc[j] += sum_t a[4j+t] * b[4j+t],
a unsigned, b signed, exact (|4 * 255 * 128| fits easily; no saturation in this form of the instruction).
The micro-kernel keeps a 4 x 64 int32 tile in 16 zmm registers c<row><col> and, for each group of 4 K values,
    loads 4 registers of packed weights (64 columns x 4 k, 256 bytes; packing.py's layout),
    broadcasts 4 bytes of each of the 4 activation rows to all 16 lanes,
    issues 16 vpdpbusd (4 rows x 4 column registers).
That is 16 x 64 = 1024 multiply-adds per 8 loads: the FMA-unit bound GEMM of BLIS/oneDNN in miniature.
Rows left over (M not a multiple of 4) go through a 1-row micro-kernel; columns past N and K past a multiple of
4 are zero-padded at pack time. A panel with at most 16 live columns (a 10-class output layer) runs an 8 x 16
micro-kernel instead: one register of weights per group and 8 rows, so no vpdpbusd is spent on the padding
(the 4 x 64 tile would issue 4 times as many, 3 of every 4 on zero columns).
The driver is the portable one of u8s8.py plus one level of cache blocking: a work item (64 columns x 32 rows,
items in parallel) keeps its 32 x 64 int32 accumulators in an 8 KB buffer and walks K in blocks of 64 groups, so
each 16 KB block of packed weights is read from L2 once and then reused from L1 by all 8 row blocks; the fused
epilogue then finishes the 32 rows while they are still in L1.
Items are ordered chunk-major: one thread sweeps all panels for a 32-row chunk of activations, so the chunk
(K bytes per row, read as short row-strided pieces) stays in L1/L2 while the packed weights stream by in long
contiguous runs the hardware prefetcher follows (the panel-major order ran 1024^3 at half this speed).
`gemm_packed_vnni_serial` is the same driver without prange (small products: no thread start-up), and
`dynamic_linear_vnni_serial` a whole small dynamic Linear (quantize x, GEMM, dequantize) in one call.
Requires AVX-512 F/BW/VNNI (kernels.cpu.cpu_has_vnni): never compiled or called on other CPUs.
"""
import numpy as np
from numba import njit, prange

from .dynamic_quant import dynamic_linear_operands
from .epilogue import epilogue_tile
from .packing import GROUP, PANEL
from .simd import v_broadcast4, v_dpbusd, v_load, v_store
from .u8s8 import CHUNK, ROWS

STEP = PANEL * GROUP        # bytes of packed weights per K group: 256
K_BLOCK = 64                # K groups per block: 64 x 256 B = 16 KB of weights, reused by every row block
NARROW, NARROW_ROWS = 16, 8  # panels of at most 16 live columns: the 8 x 16 micro-kernel


@njit(cache=True)
def micro_kernel_vnni_4x64(a, a_start, lda, b, b_start, k_groups, acc, acc_start):
    """acc[4 x 64 tile at acc_start] += a[4 rows from a_start, k-block] x packed panel block at b_start."""
    r1, r2, r3 = a_start + lda, a_start + 2 * lda, a_start + 3 * lda
    t = acc_start
    c00, c01, c02, c03 = v_load(acc, t), v_load(acc, t + 16), v_load(acc, t + 32), v_load(acc, t + 48)
    c10, c11, c12, c13 = v_load(acc, t + 64), v_load(acc, t + 80), v_load(acc, t + 96), v_load(acc, t + 112)
    c20, c21, c22, c23 = v_load(acc, t + 128), v_load(acc, t + 144), v_load(acc, t + 160), v_load(acc, t + 176)
    c30, c31, c32, c33 = v_load(acc, t + 192), v_load(acc, t + 208), v_load(acc, t + 224), v_load(acc, t + 240)
    for g in range(k_groups):
        base = b_start + g * STEP
        b0, b1 = v_load(b, base), v_load(b, base + 64)
        b2, b3 = v_load(b, base + 128), v_load(b, base + 192)
        k = g * GROUP
        x = v_broadcast4(a, a_start + k)
        c00, c01, c02, c03 = v_dpbusd(c00, x, b0), v_dpbusd(c01, x, b1), v_dpbusd(c02, x, b2), v_dpbusd(c03, x, b3)
        x = v_broadcast4(a, r1 + k)
        c10, c11, c12, c13 = v_dpbusd(c10, x, b0), v_dpbusd(c11, x, b1), v_dpbusd(c12, x, b2), v_dpbusd(c13, x, b3)
        x = v_broadcast4(a, r2 + k)
        c20, c21, c22, c23 = v_dpbusd(c20, x, b0), v_dpbusd(c21, x, b1), v_dpbusd(c22, x, b2), v_dpbusd(c23, x, b3)
        x = v_broadcast4(a, r3 + k)
        c30, c31, c32, c33 = v_dpbusd(c30, x, b0), v_dpbusd(c31, x, b1), v_dpbusd(c32, x, b2), v_dpbusd(c33, x, b3)
    v_store(acc, t, c00), v_store(acc, t + 16, c01), v_store(acc, t + 32, c02), v_store(acc, t + 48, c03)
    v_store(acc, t + 64, c10), v_store(acc, t + 80, c11), v_store(acc, t + 96, c12), v_store(acc, t + 112, c13)
    v_store(acc, t + 128, c20), v_store(acc, t + 144, c21), v_store(acc, t + 160, c22), v_store(acc, t + 176, c23)
    v_store(acc, t + 192, c30), v_store(acc, t + 208, c31), v_store(acc, t + 224, c32), v_store(acc, t + 240, c33)


@njit(cache=True)
def micro_kernel_vnni_1x64(a, a_start, b, b_start, k_groups, acc, acc_start):
    t = acc_start
    c0, c1, c2, c3 = v_load(acc, t), v_load(acc, t + 16), v_load(acc, t + 32), v_load(acc, t + 48)
    for g in range(k_groups):
        base = b_start + g * STEP
        x = v_broadcast4(a, a_start + g * GROUP)
        c0 = v_dpbusd(c0, x, v_load(b, base))
        c1 = v_dpbusd(c1, x, v_load(b, base + 64))
        c2 = v_dpbusd(c2, x, v_load(b, base + 128))
        c3 = v_dpbusd(c3, x, v_load(b, base + 192))
    v_store(acc, t, c0), v_store(acc, t + 16, c1), v_store(acc, t + 32, c2), v_store(acc, t + 48, c3)


@njit(cache=True)
def micro_kernel_vnni_8x16(a, a_start, lda, b, b_start, k_groups, acc, acc_start):
    """acc[8 rows x the first 16 columns at acc_start] += a[8 rows from a_start, k-block] x the first register
    (16 columns) of each packed group: for panels whose live columns fit in one register."""
    t = acc_start
    c0, c1, c2, c3 = v_load(acc, t), v_load(acc, t + 64), v_load(acc, t + 128), v_load(acc, t + 192)
    c4, c5, c6, c7 = v_load(acc, t + 256), v_load(acc, t + 320), v_load(acc, t + 384), v_load(acc, t + 448)
    for g in range(k_groups):
        w = v_load(b, b_start + g * STEP)
        k = a_start + g * GROUP
        c0, c1 = v_dpbusd(c0, v_broadcast4(a, k), w), v_dpbusd(c1, v_broadcast4(a, k + lda), w)
        c2, c3 = v_dpbusd(c2, v_broadcast4(a, k + 2 * lda), w), v_dpbusd(c3, v_broadcast4(a, k + 3 * lda), w)
        c4, c5 = v_dpbusd(c4, v_broadcast4(a, k + 4 * lda), w), v_dpbusd(c5, v_broadcast4(a, k + 5 * lda), w)
        c6, c7 = v_dpbusd(c6, v_broadcast4(a, k + 6 * lda), w), v_dpbusd(c7, v_broadcast4(a, k + 7 * lda), w)
    v_store(acc, t, c0), v_store(acc, t + 64, c1), v_store(acc, t + 128, c2), v_store(acc, t + 192, c3)
    v_store(acc, t + 256, c4), v_store(acc, t + 320, c5), v_store(acc, t + 384, c6), v_store(acc, t + 448, c7)


@njit(cache=True)
def _vnni_item(item, n_panels, a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32, acc):
    """One work item: the int32 tiles of (64-column panel p, chunk of CHUNK rows) in `acc` (zeroed here),
    then the fused epilogue while they are still in L1."""
    chunk, p = item // n_panels, item % n_panels              # consecutive items share an activation chunk
    acc[:] = 0
    col0 = p * PANEL
    n_cols = min(PANEL, n_size - col0)
    row0 = chunk * CHUNK
    rows = min(CHUNK, m_size - row0)
    for g0 in range(0, k_groups, K_BLOCK):                    # K blocks: the weight block (16 KB) stays in L1
        groups = min(K_BLOCK, k_groups - g0)
        b_start = (p * k_groups + g0) * STEP
        r = 0
        if n_cols <= NARROW:
            while r + NARROW_ROWS <= rows:
                micro_kernel_vnni_8x16(a, (row0 + r) * lda + g0 * GROUP, lda, b, b_start, groups, acc, r * PANEL)
                r += NARROW_ROWS
        while r + ROWS <= rows:
            micro_kernel_vnni_4x64(a, (row0 + r) * lda + g0 * GROUP, lda, b, b_start, groups, acc, r * PANEL)
            r += ROWS
        while r < rows:
            micro_kernel_vnni_1x64(a, (row0 + r) * lda + g0 * GROUP, b, b_start, groups, acc, r * PANEL)
            r += 1
    epilogue_tile(acc, rows, row0, col0, n_cols, ep, out_i32, out_u8, out_f32)


@njit(cache=True, parallel=True)
def gemm_packed_vnni(a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32):
    n_panels = (n_size + PANEL - 1) // PANEL
    m_chunks = (m_size + CHUNK - 1) // CHUNK
    for item in prange(n_panels * m_chunks):
        acc = np.empty(CHUNK * PANEL, np.int32)               # the item's int32 tiles: 8 KB, stays in L1
        _vnni_item(item, n_panels, a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32, acc)


@njit(cache=True)
def gemm_packed_vnni_serial(a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32):
    """gemm_packed_vnni on the calling thread only (same work items, in order, one accumulator buffer)."""
    n_panels = (n_size + PANEL - 1) // PANEL
    m_chunks = (m_size + CHUNK - 1) // CHUNK
    acc = np.empty(CHUNK * PANEL, np.int32)
    for item in range(n_panels * m_chunks):
        _vnni_item(item, n_panels, a, lda, m_size, b, n_size, k_groups, ep, out_i32, out_u8, out_f32, acc)


@njit(cache=True)
def dynamic_linear_vnni_serial(x, qmax, b, n_size, k_groups, columns, out_f32):
    """A whole per-tensor dynamic Linear on the calling thread, in one call: quantize float32 x [M, K] to
    uint8 with its own range (quantize_per_tensor_into), then gemm_packed_vnni_serial with the dequantizing
    epilogue (`columns`: epilogue.per_tensor_columns) into out_f32 [M, N]. For small layers, where the Python
    steps between quantization and GEMM cost more than either. Returns False (out untouched) for NaN / inf."""
    q, ep, finite = dynamic_linear_operands(x, qmax, k_groups, columns)
    if finite:
        no_i32, no_u8 = np.empty((1, 1), np.int32), np.empty((1, 1), np.uint8)      # float output only
        gemm_packed_vnni_serial(q.reshape(-1), q.shape[1], x.shape[0], b, n_size, k_groups, ep, no_i32, no_u8, out_f32)
    return finite
