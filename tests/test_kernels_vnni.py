"""Packed u8 x s8 GEMMs (portable and VNNI paths), packing, dispatch and the ladder rungs: every kernel equals
the exact int64 product on hypothesis shapes (M, N, K not multiples of the tiles, K up to 8192); bad input
gives clear errors. The VNNI path runs wherever the CPU has it (it does on the development machine)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicompress import kernels
from minicompress.kernels import (PackedWeight, cpu_has_vnni, gemm_s8s8s32, gemm_s8s8s32_packed,
                                  gemm_s8s8s32_tiled, gemm_u8s8s32, kernel_path, pack_b, pack_weight)
from tests.strategies import gemm_shapes, int_matrix

PATHS = ["portable", "vnni"] if cpu_has_vnni() else ["portable"]


def exact_u8s8(a, w, za, zw):
    """sum_k (a - za)(w - zw) in int64, written independently of the kernels."""
    za = np.asarray(za, np.int64).reshape(-1, 1) if np.ndim(za) else np.int64(za)
    zw = np.asarray(zw, np.int64).reshape(-1, 1) if np.ndim(zw) else np.int64(zw)
    return (a.astype(np.int64) - za) @ (w.astype(np.int64) - zw).T


def test_cpu_detection_agrees_with_proc_cpuinfo():
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    has = {"avx512_vnni", "avx512bw", "avx512f"} <= set(flags)
    assert cpu_has_vnni() == has


@pytest.mark.parametrize("path", PATHS)
@given(shape=gemm_shapes(), seed=st.integers(0, 2**32 - 1), za=st.integers(0, 255),
       zw_kind=st.sampled_from(["zero", "scalar", "per_channel"]), with_bias=st.booleans())
def test_gemm_u8s8_equals_exact_product(path, shape, seed, za, zw_kind, with_bias):
    m, k, n = shape
    rng = np.random.default_rng(seed)
    a = int_matrix(rng, (m, k), np.uint8)
    w = int_matrix(rng, (n, k), np.int8)
    zw = {"zero": 0, "scalar": int(rng.integers(-128, 128)),
          "per_channel": rng.integers(-128, 128, size=n)}[zw_kind]
    bias = rng.integers(-2**20, 2**20, size=n).astype(np.int32) if with_bias else None
    packed = pack_weight(w, zero_point=zw)
    got = gemm_u8s8s32(a, packed, za, bias_int32=bias, path=path)
    expected = exact_u8s8(a, w, za, zw) + (0 if bias is None else bias.astype(np.int64))
    assert got.dtype == np.int32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("path", PATHS)
@given(shape=gemm_shapes(), seed=st.integers(0, 2**32 - 1))
def test_s8s8_through_packed_kernels_and_tiled_rung(path, shape, seed):
    m, k, n = shape
    rng = np.random.default_rng(seed)
    a = int_matrix(rng, (m, k), np.int8)
    b = int_matrix(rng, (k, n), np.int8)
    expected = a.astype(np.int64) @ b.astype(np.int64)
    np.testing.assert_array_equal(gemm_s8s8s32_packed(a, b, path=path), expected)
    np.testing.assert_array_equal(gemm_s8s8s32_tiled(a, b), expected)


@pytest.mark.parametrize("path", PATHS)
def test_extreme_values_and_int8_activations(path):
    k = 8191                                          # not a multiple of 4: exercises the K padding
    a = np.full((6, k), 255, np.uint8)
    w = np.full((67, k), -128, np.int8)
    w[1] = 127
    got = gemm_u8s8s32(a, pack_weight(w), 0, path=path)
    assert got[0, 0] == 255 * -128 * k and got[5, 1] == 255 * 127 * k
    # int8 activations are shifted to uint8 internally: same differences a - za
    a8 = np.full((5, k), -128, np.int8)
    got = gemm_u8s8s32(a8, pack_weight(w), -128, path=path)
    np.testing.assert_array_equal(got, np.zeros((5, 67), np.int32))
    got = gemm_u8s8s32(a8, pack_weight(w), 0, path=path)
    assert got[0, 0] == (-128) * (-128) * k


@pytest.mark.parametrize("path", PATHS)
def test_per_row_activation_zero_points(path):
    rng = np.random.default_rng(1)
    a = int_matrix(rng, (9, 37), np.uint8)
    w = int_matrix(rng, (70, 37), np.int8)
    za = rng.integers(0, 256, size=9)
    got = gemm_u8s8s32(a, pack_weight(w), za, path=path)
    np.testing.assert_array_equal(got, exact_u8s8(a, w, za, 0))


@given(st.integers(1, 150), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_packing_layout_roundtrip_and_column_sums(n, k, seed):
    w = int_matrix(np.random.default_rng(seed), (n, k), np.int8)
    packed = pack_weight(w, scale=0.5)
    assert packed.n_padded % 64 == 0 and packed.k_padded % 4 == 0
    assert packed.n_padded - 64 < n <= packed.n_padded and packed.k_padded - 4 < k <= packed.k_padded
    np.testing.assert_array_equal(packed.unpack(), w)
    # the documented layout: data[p, g, j, t] = w[64 p + j, 4 g + t]
    n_i, k_i = n - 1, k - 1
    assert packed.data[n_i // 64, k_i // 4, n_i % 64, k_i % 4] == w[n_i, k_i]
    full = packed.data.transpose(0, 2, 1, 3).reshape(packed.n_padded, packed.k_padded)
    assert not full[n:].any() and not full[:, k:].any()                      # zero padding
    np.testing.assert_array_equal(packed.col_sums[:n], w.astype(np.int64).sum(axis=1))
    np.testing.assert_array_equal(pack_b(np.ascontiguousarray(w.T)).unpack(), w)
    assert packed.scale.dtype == np.float32 and packed.nbytes >= w.size


def test_dispatch_env_switch_forces_portable(monkeypatch):
    calls = []
    import minicompress.kernels.qgemm as qgemm
    for name in ("gemm_packed_portable", "gemm_packed_portable_serial"):   # threaded and one-thread drivers
        def spy(*args, original=getattr(qgemm, name)):
            calls.append(1)
            return original(*args)

        monkeypatch.setattr(qgemm, name, spy)
    rng = np.random.default_rng(0)
    a = int_matrix(rng, (8, 20), np.uint8)
    w = int_matrix(rng, (5, 20), np.int8)
    packed = pack_weight(w)
    monkeypatch.setenv("MINICOMPRESS_PORTABLE_KERNELS", "1")
    assert kernel_path() == "portable"
    np.testing.assert_array_equal(gemm_u8s8s32(a, packed, 3), exact_u8s8(a, w, 3, 0))
    assert calls == [1]
    monkeypatch.delenv("MINICOMPRESS_PORTABLE_KERNELS")
    assert kernel_path() == ("vnni" if cpu_has_vnni() else "portable")
    gemm_u8s8s32(a, packed, 3)
    assert calls == ([1] if cpu_has_vnni() else [1, 1])


def test_gemm_s8s8s32_uses_the_fast_path_when_large_and_stays_exact(monkeypatch):
    rng = np.random.default_rng(2)
    a = int_matrix(rng, (64, 300), np.int8)
    b = int_matrix(rng, (300, 65), np.int8)
    expected = a.astype(np.int64) @ b.astype(np.int64)
    for env in ("1", "0"):
        monkeypatch.setenv("MINICOMPRESS_PORTABLE_KERNELS", env)
        np.testing.assert_array_equal(gemm_s8s8s32(a, b), expected)


def test_packed_gemm_bad_input():
    w = np.ones((5, 12), np.int8)
    packed = pack_weight(w)
    a = np.ones((3, 12), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        gemm_u8s8s32(a.astype(np.float32), packed)
    with pytest.raises(TypeError, match="uint8"):
        gemm_u8s8s32(a.astype(np.int32), packed)
    with pytest.raises(ValueError, match="C-contiguous"):
        gemm_u8s8s32(np.ones((12, 3), np.uint8).T, packed)
    with pytest.raises(ValueError, match=r"K=12.*K=11|K=11.*K=12|inner dimensions"):
        gemm_u8s8s32(np.ones((3, 11), np.uint8), packed)
    with pytest.raises(ValueError, match="2-D"):
        gemm_u8s8s32(np.ones((2, 3, 12), np.uint8), packed)
    with pytest.raises(TypeError, match="PackedWeight"):
        gemm_u8s8s32(a, w)
    with pytest.raises(ValueError, match="zero_point"):
        gemm_u8s8s32(a, packed, 256)
    with pytest.raises(TypeError, match="zero_point"):
        gemm_u8s8s32(a, packed, 1.5)
    with pytest.raises(ValueError, match="bias_int32"):
        gemm_u8s8s32(a, packed, bias_int32=np.zeros(4, np.int32))
    with pytest.raises(TypeError, match="bias_int32"):
        gemm_u8s8s32(a, packed, bias_int32=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="path"):
        gemm_u8s8s32(a, packed, path="gpu")
    with pytest.raises(TypeError, match="weight must have dtype int8"):
        pack_weight(w.astype(np.float32))
    with pytest.raises(ValueError, match="zero_point"):
        pack_weight(w, zero_point=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="scale"):
        pack_weight(w, scale=-1.0)
    assert isinstance(packed, PackedWeight) and "out_features=5" in repr(packed)


def test_ladder_rungs_refuse_bad_input_like_the_contract_kernel():
    with pytest.raises(TypeError, match="int8"):
        gemm_s8s8s32_tiled(np.ones((2, 3), np.uint8), np.ones((3, 2), np.int8))
    with pytest.raises(ValueError, match="inner dimensions"):
        gemm_s8s8s32_packed(np.ones((2, 3), np.int8), np.ones((4, 2), np.int8))
    assert kernels.kernel_path() in ("vnni", "portable")


@pytest.mark.parametrize("path", PATHS)
def test_several_row_chunks_column_panels_and_k_blocks(path):
    # M = 70: two full 32-row chunks + 6 rows (one 4-row block and 2 single rows); N = 130: three panels;
    # K = 1030: five blocks of 64 groups of 4 (the last partial) and a K not a multiple of 4
    rng = np.random.default_rng(3)
    a = int_matrix(rng, (70, 1030), np.uint8)
    w = int_matrix(rng, (130, 1030), np.int8)
    np.testing.assert_array_equal(gemm_u8s8s32(a, pack_weight(w), 200, path=path), exact_u8s8(a, w, 200, 0))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [1, 10, 16, 17, 74, 80])
def test_narrow_panels_equal_exact_product(path, n):
    # a panel with at most 16 live columns (N = 1, 10, 16, and the last panel of N = 74 or 80) runs the 8 x 16
    # micro-kernel; M = 45: 4 blocks of 8 rows, then 13 rows = one block of 8, one of 4, one single row;
    # K = 300: two K blocks; per-channel weight zero points and an activation zero point on top
    rng = np.random.default_rng(n)
    a = int_matrix(rng, (45, 300), np.uint8)
    w = int_matrix(rng, (n, 300), np.int8)
    zw = rng.integers(-5, 6, size=n)
    got = gemm_u8s8s32(a, pack_weight(w, zero_point=zw), 17, path=path)
    np.testing.assert_array_equal(got, exact_u8s8(a, w, 17, zw))


def test_kernels_run_exactly_as_plain_python_under_numba_disable_jit():
    # the documented debugging mode: every @njit function runs as Python, VNNI is switched off
    import os
    import subprocess
    import sys
    script = ("import numpy as np\n"
              "from minicompress import kernels as K\n"
              "rng = np.random.default_rng(0)\n"
              "a = rng.integers(-128, 128, (6, 9), dtype=np.int8); b = rng.integers(-128, 128, (9, 66), dtype=np.int8)\n"
              "e = a.astype(np.int64) @ b.astype(np.int64)\n"
              "ok = [K.kernel_path() == 'portable', (K.gemm_s8s8s32(a, b) == e).all(),\n"
              "      (K.gemm_s8s8s32_tiled(a, b) == e).all(), (K.gemm_u8s8s32(a, K.pack_b(b), 0) == e).all()]\n"
              "print(all(ok))\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", script], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
