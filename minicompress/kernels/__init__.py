"""minicompress.kernels: exact integer kernels for quantized inference (Numba, each with a NumPy twin).

The ladder (each rung exact, each faster; `tutorials/11_int8_kernels.py` walks through it):
    gemm_s8s8s32_reference(a, b)   NumPy int64 matmul, checked to fit int32            (gemm.py)
    gemm_s8s8s32_loops(a, b)       plain Numba i-k-j loops, int32 accumulators          (gemm.py)
    gemm_s8s8s32_tiled(a, b)       register-tiled: each weight byte feeds 4 rows        (tiled.py)
    gemm_u8s8s32(a_u8, packed, za) u8 x s8 on packed weights, zero point corrected once (u8s8.py, portable)
    ... same, path="vnni"          micro-kernel in AVX-512 VNNI vpdpbusd via @intrinsic (vnni.py, simd.py)
    gemm_s8s8s32(a, b)             the contract entry point: VNNI when available, else loops (exact)

Quantized layers on packed weights (qgemm.py; `packed = pack_weight(w_q int8 [N, K], scale, zero_point)`,
built once at convert time; every epilogue is fused: one pass over the output while the tile is in L1):
    gemm_u8s8s32(a, packed, a_zero_point=0, *, bias_int32=None, relu=False, path=None) -> int32 [M, N]
    qlinear(x_q, x_zero_point, packed, m0, shift, out_zero_point, *, bias_int32=None, relu=False,
            out_dtype=np.uint8, path=None) -> uint8/int8 [M, N]                static, integer-only
    qlinear_dynamic(x float32, packed, bias=None, *, per_row=False, reduce_range=False, relu=False,
                    path=None) -> float32 [M, N]                              dynamic quantization
    QLinear(packed, x_zero_point, m0, shift, out_zero_point, bias_int32=None, relu=False, out_dtype=np.uint8,
            path=None)(x_q)  and  DynamicQLinear(packed, bias=None, per_row=False, reduce_range=False,
            relu=False, path=None)(x): the same, per-layer set-up done once (use these in quantized modules)
    qconv2d(x_q [N,C,H,W], x_zero_point, packed, kernel_size, m0, shift, out_zero_point, *, stride=1,
            padding=0, bias_int32=None, relu=False, out_dtype=np.uint8, output="requant", path=None)
    Options of the quantized-layer entry points (all exact):
      rounding="gemmlowp" | "half_even"  requantization: gemmlowp's two roundings, or ONE rounding half to even
                                         of the exact acc * m0 / 2^(31 + shift) (np.rint's; what mc.quant uses,
                                         so an integer model equals its fake-quantized twin)
      qmin=, qmax=                       a narrower output clamp inside out_dtype (e.g. 4-bit codes)
      parallel=None | True | False | int worker threads only from PARALLEL_MIN_MACS (or int) multiply-adds;
                                         below, one-thread drivers (no thread start-up; never waiting for a
                                         core on a busy machine); never with NUMBA_NUM_THREADS=1
      QLinear.run_rows(a_u8)             rows already zero-padded to packed.k_padded (im2col output)
Building blocks: quantize_multiplier(M) -> (m0, shift); requantize(acc, m0, shift, zero_point, qmin, qmax,
out_dtype) (gemmlowp rounding); quantize_dynamic_u8(x, per_row, reduce_range); im2col_u8(x, kernel_size,
stride, padding, pad_value) (NCHW, K in (c, i, j) order); im2col_nhwc_u8(x_nhwc, ...) (channels last, K in
(i, j, c) order: each window row is one run of kw * C bytes, several times faster); quantize_affine(x, scale,
zero_point, qmin, qmax) (static float -> codes in one pass, bit-identical to quant.quantize).

Dispatch: `kernel_path()` is "vnni" on CPUs with AVX-512 VNNI, else "portable" (exact, plain Numba).
MINICOMPRESS_PORTABLE_KERNELS=1 forces the portable path (layer objects read it when built); `path=`
forces one per call.

Compilation: every kernel is `@njit(cache=True)`; the first run on a machine compiles them (a few seconds
each for the parallel drivers, see benchmarks/int8_gemm.py) and later runs load them from Numba's cache.
Numba's cache is invalidated when a kernel's own source file changes, not when a function it calls from
another file changes: after editing a kernel module, delete minicompress/kernels/__pycache__/*.nbi / *.nbc.
Reading a kernel in a debugger: run with `NUMBA_DISABLE_JIT=1` and every `@njit` function runs as plain
Python (slow, but breakpoints and prints work; the VNNI path is then disabled, since intrinsics only exist
compiled).
"""
from .cpu import cpu_has_vnni, kernel_path
from .dynamic_quant import quantize_dynamic_u8, quantize_dynamic_u8_reference
from .gemm import gemm_s8s8s32, gemm_s8s8s32_loops, gemm_s8s8s32_reference
from .im2col import im2col_nhwc_reference, im2col_nhwc_u8, im2col_reference, im2col_u8
from .packing import PackedWeight, pack_b, pack_weight
from .quantize import quantize_affine, quantize_affine_reference
from .qgemm import (DynamicQLinear, QLinear, gemm_s8s8s32_packed, gemm_u8s8s32, gemm_u8s8s32_reference, qconv2d,
                    qlinear, qlinear_dynamic)
from .requantize import quantize_multiplier, requantize, requantize_float_reference, requantize_reference
from .tiled import gemm_s8s8s32_tiled

__all__ = ["DynamicQLinear", "PackedWeight", "QLinear", "cpu_has_vnni", "gemm_s8s8s32", "gemm_s8s8s32_loops",
           "gemm_s8s8s32_packed", "gemm_s8s8s32_reference", "gemm_s8s8s32_tiled", "gemm_u8s8s32",
           "gemm_u8s8s32_reference", "im2col_nhwc_reference", "im2col_nhwc_u8", "im2col_reference", "im2col_u8", "kernel_path", "pack_b", "pack_weight",
           "qconv2d", "qlinear", "qlinear_dynamic", "quantize_affine", "quantize_affine_reference", "quantize_dynamic_u8", "quantize_dynamic_u8_reference",
           "quantize_multiplier", "requantize", "requantize_float_reference", "requantize_reference"]
