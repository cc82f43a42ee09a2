"""Which kernel runs: CPU features read at run time, and the switch that forces the portable path.

    cpu_has_vnni()        True when the host CPU has AVX-512 F + BW + VNNI (llvmlite's host feature list,
                          the same list Numba compiles for).
    vnni_enabled()        cpu_has_vnni() and not forced off; re-read on every call, so a test can flip it
                          (the layer objects QLinear / DynamicQLinear read it once, when they are built).
    kernel_path()         "vnni" or "portable": what the fast entry points use right now.

The portable path is exact everywhere (plain Numba loops); the VNNI path is exact too and much faster.
Force the portable path with the environment variable MINICOMPRESS_PORTABLE_KERNELS=1 (or with
NUMBA_DISABLE_JIT=1, since intrinsics cannot run as Python).
"""
import functools
import os

import numba


@functools.lru_cache(maxsize=1)
def cpu_has_vnni():
    try:
        from llvmlite import binding
        features = binding.get_host_cpu_features()
    except Exception:          # an llvmlite without the query: assume nothing
        return False
    return all(features.get(name, False) for name in ("avx512f", "avx512bw", "avx512vnni"))


def portable_forced():
    return os.environ.get("MINICOMPRESS_PORTABLE_KERNELS", "").strip().lower() in ("1", "true", "yes", "on")


def vnni_enabled():
    return cpu_has_vnni() and not portable_forced() and not numba.config.DISABLE_JIT


def kernel_path():
    return "vnni" if vnni_enabled() else "portable"
