# %% [markdown]
# # 11 · INT8 kernels: from naive loops to AVX-512 VNNI
#
# The course deck promises that INT8 inference is faster. In NumPy it is not: `int32 @ int32` runs without
# BLAS at about 1 GOP/s while `float32 @ float32` runs OpenBLAS' sgemm at ~100 GFLOP/s per core. This
# tutorial climbs the ladder of `minicompress.kernels`, one exact kernel per step, until INT8 beats float32:
#
# 1. NumPy reference (int64 product), 2. plain Numba loops, 3. register tiling, 4. unsigned x signed with a
# zero-point correction on pre-packed weights, 5. the `vpdpbusd` instruction through `@intrinsic`,
# 6. fused epilogues (requantize / dequantize + bias + ReLU) and the whole dynamic quantized Linear.
#
# Every step is checked against the exact integer product. Timings are best-of-N on this machine; yours
# will differ. The numbers in the comments were measured on a busy 2-core AMD EPYC (Zen 4) with one thread
# (NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1), the only setting that gave stable ratios there.
# `MINICOMPRESS_FAST=1` shrinks the sizes.

# %%
import os
import time

import numpy as np

from minicompress import kernels

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
M, K, N = (32, 256, 256) if FAST else (128, 768, 768)          # a BERT-base projection, batch of 128 tokens
rng = np.random.default_rng(0)
a = rng.integers(-128, 128, (M, K), dtype=np.int8)
b = rng.integers(-128, 128, (K, N), dtype=np.int8)


def gops(fn, repeats=3 if FAST else 7):
    """Best-of-N speed in GOP/s (one multiply-add = 2 ops)."""
    fn()                                                        # compile / warm up
    best = min(_timed(fn) for _ in range(repeats))
    return 2 * M * N * K / best / 1e9


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# %% [markdown]
# ## 1. The reference and why int32 is exact
# An int8 x int8 product is at most 2^14 in magnitude, so the sum of K of them fits int32 while
# K <= 131071: the int32 accumulator of integer-only inference (Jacob et al. 2018) loses nothing.

# %%
exact = a.astype(np.int64) @ b.astype(np.int64)
print(np.array_equal(kernels.gemm_s8s8s32_reference(a, b), exact), np.abs(exact).max() < 2**31)
# -> True True
xf, wf = a.astype(np.float32), b.astype(np.float32)
print(f"numpy float32 matmul {gops(lambda: xf @ wf):6.1f} GFLOP/s")
print(f"numpy int32 matmul   {gops(lambda: a.astype(np.int32) @ b.astype(np.int32), repeats=1):6.1f} GOP/s")
# -> numpy float32 matmul  ~100 GFLOP/s     (OpenBLAS sgemm, one thread)
# -> numpy int32 matmul      ~2 GOP/s       (no BLAS for integers)

# %% [markdown]
# ## 2. Plain Numba loops and 3. register tiling
# `gemm_s8s8s32_loops` is the textbook i-k-j loop: the inner loop walks a row of `b` and a row of `c`, so LLVM
# vectorises it. One trap: Numba widens `int32 * int32` to int64, which halves the lanes per register, so every
# operand is cast back with `np.int32(...)`. `gemm_s8s8s32_tiled` computes 4 rows at once: each byte of `b`
# loaded feeds 4 multiply-adds. Read them in `minicompress/kernels/gemm.py` and `tiled.py` (set
# `NUMBA_DISABLE_JIT=1` to step through them in a debugger).

# %%
for name in ("gemm_s8s8s32_loops", "gemm_s8s8s32_tiled"):
    fn = getattr(kernels, name)
    print(f"{name:20s} exact={np.array_equal(fn(a, b), exact)}  {gops(lambda: fn(a, b)):6.1f} GOP/s")
# -> gemm_s8s8s32_loops   exact=True    ~55 GOP/s
# -> gemm_s8s8s32_tiled   exact=True    ~52 GOP/s

# %% [markdown]
# ## 4. Unsigned activations x signed weights, weights packed once
# Activations after ReLU are quantized as uint8 with a zero point `za`; weights as symmetric int8. Instead of
# subtracting `za` from every activation, multiply raw bytes and correct once per output:
# `sum_k (a - za) w = sum_k a w - za * colsum(w)`, with `colsum(w)` computed when the weight is packed.
# Packing reorders the weight once (at convert time) into the order the kernel reads it:
# `data[p, g, j, t] = w[64 p + j, 4 g + t]` — 64 output columns per panel, K in groups of 4.

# %%
a_u8 = rng.integers(0, 256, (M, K), dtype=np.uint8)
za = 117
w = np.ascontiguousarray(b.T)                                   # Linear layout: (out_features, in_features)
packed = kernels.pack_weight(w)
print(packed)
print(packed.data[0, 0, :2], w[:2, :4])                         # lane j holds w[j, 0:4] side by side
# -> PackedWeight(out_features=768, in_features=768, layout=[12, 192, 64, 4] int8, scale=none)
# -> [[  76  121 -102   41]
#     [ -62   -1  -13   21]] [[  76  121 -102   41]
#     [ -62   -1  -13   21]]
exact_u8 = (a_u8.astype(np.int64) - za) @ w.astype(np.int64).T
portable = kernels.gemm_u8s8s32(a_u8, packed, za, path="portable")
print("portable packed exact:", np.array_equal(portable, exact_u8))
# -> portable packed exact: True

# %% [markdown]
# ## 5. VNNI: one instruction, 64 multiply-adds
# `vpdpbusd zmm` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of 4 products into one
# of 16 int32 lanes. LLVM never emits it from plain loops, so `kernels/simd.py` gives Numba a 512-bit vector
# type and wraps the LLVM intrinsic `llvm.x86.avx512.vpdpbusd.512` in an `@intrinsic`. The micro-kernel in
# `kernels/vnni.py` then keeps a 4 x 64 int32 tile in 16 registers and issues 16 `vpdpbusd` per 4 K values.
# The library picks it at run time when the CPU has AVX-512 VNNI (`MINICOMPRESS_PORTABLE_KERNELS=1` forces
# the portable path; both are exact).

# %%
print("kernel path on this CPU:", kernels.kernel_path())
if kernels.cpu_has_vnni():
    vnni = kernels.gemm_u8s8s32(a_u8, packed, za, path="vnni")
    print("vnni exact:", np.array_equal(vnni, exact_u8))
    f32 = gops(lambda: xf @ wf)
    v = gops(lambda: kernels.gemm_u8s8s32(a_u8, packed, za, path="vnni"))
    print(f"vnni {v:6.1f} GOP/s vs float32 {f32:6.1f} GFLOP/s: {v / f32:.1f}x")
# -> kernel path on this CPU: vnni
# -> vnni exact: True
# -> vnni ~400 GOP/s vs float32 ~100 GFLOP/s: ~4x   (one core; the ceiling is 4x: 128 vs 32 ops/cycle)

# %% [markdown]
# ## 6. Fused epilogues and the whole quantized Linear
# The int32 tile is finished while it is still in L1: zero-point correction, bias, then either fixed-point
# requantization to uint8/int8 (`qlinear`, static, integer-only: M = M0 * 2^-n, gemmlowp rounding) or
# dequantization to float32 (`qlinear_dynamic`: activations quantized per batch at run time, PyTorch's
# dynamic quantization), and ReLU. One pass over the output.

# %%
x = rng.standard_normal((M, K)).astype(np.float32)
weight = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
bias = rng.standard_normal(N).astype(np.float32)
w_scale = np.abs(weight).max(axis=1) / 127                       # per-channel symmetric int8 weights
w_q = np.clip(np.rint(weight / w_scale[:, None]), -127, 127).astype(np.int8)
packed_linear = kernels.pack_weight(w_q, scale=w_scale)
y_float = x @ weight.T + bias
y_int8 = kernels.qlinear_dynamic(x, packed_linear, bias)
print(f"relative error {np.linalg.norm(y_int8 - y_float) / np.linalg.norm(y_float):.4f}")
# -> relative error 0.0102
t_float = min(_timed(lambda: x @ weight.T + bias) for _ in range(7))
t_int8 = min(_timed(lambda: kernels.qlinear_dynamic(x, packed_linear, bias)) for _ in range(7))
print(f"float32 Linear {1e3 * t_float:.2f} ms, dynamic int8 Linear {1e3 * t_int8:.2f} ms")
# -> float32 Linear ~1.7 ms, dynamic int8 Linear ~0.4 ms   (one thread)

# static, integer-only: uint8 in, uint8 out, M = s_x * s_w / s_out as a fixed-point multiplier
m0, shift = kernels.quantize_multiplier(0.0123)
q_out = kernels.qlinear(a_u8, za, kernels.pack_weight(w_q), m0, shift, out_zero_point=128, relu=True)
print(q_out.dtype, q_out.min() >= 128)                          # ReLU folded into the clamp at the zero point
# -> uint8 True

# %% [markdown]
# Exercises: (1) time `gemm_s8s8s32_loops` without the `np.int32` casts (copy the kernel): how much slower is
# int64 accumulation? (2) Run `python benchmarks/int8_gemm.py --quick` and find the shape where INT8 first beats
# float32 (small GEMMs lose to Python overhead). (3) Replace the 4 x 64 micro-tile by 6 x 64: 24 accumulators
# still fit in the 32 zmm registers; is it faster?
