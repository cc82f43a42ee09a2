"""INT8 GEMM ladder vs NumPy float32, in one process, interleaved, best of N.

    python benchmarks/int8_gemm.py            # all shapes, figure -> figures/int8_kernel_ladder.png
    python benchmarks/int8_gemm.py --quick    # fewer repeats and shapes (a smoke run)
    python benchmarks/int8_gemm.py --compile  # also: first-call (cold cache) compile time of each kernel

Rows (GOP/s = 2*M*N*K / seconds; an op is a multiply or an add, a FLOP for float):
    numpy f32           x_f32 @ w_f32 (OpenBLAS sgemm)
    cast+sgemm          int8 operands cast to float32, then sgemm (exact while K*2^14 < 2^24)
    numpy int32         a.astype(int32) @ b.astype(int32) (NumPy's non-BLAS integer matmul)
    loops / tiled       kernels.gemm_s8s8s32_loops / gemm_s8s8s32_tiled (plain Numba)
    packed portable     kernels.gemm_u8s8s32(path="portable") on weights packed once
    packed vnni         kernels.gemm_u8s8s32(path="vnni"): vpdpbusd via @intrinsic
and a whole dynamically quantized Linear (quantize x, GEMM, dequantize + bias) vs the float32 Linear, at
BERT-base shapes and at the small shapes of the digits zoo (where fixed per-call costs decide).

INT8 peak: cores x clock x 128 ops/cycle. One 512-bit vpdpbusd does 64 multiply-adds = 128 ops; AMD Zen 4
(this machine's `znver4`) issues one per cycle per core (two 256-bit halves), Intel Ice Lake / Sapphire Rapids
server cores one or two. The clock is /proc/cpuinfo's "cpu MHz", the nominal one: the cores turbo above it
(on the development machine the in-register measurement implies ~3.7 GHz), so we also measure the in-register
peak: 12 independent accumulators, no memory traffic, all cores. That is the ceiling a GEMM can approach on this
machine as it runs right now, and the one the "% of peak" column uses besides the nominal figure.
The machine is shared: read the ratios (measured interleaved in one process), not the absolute numbers.
If OPENBLAS_CORETYPE is set in the environment it slows NumPy's sgemm: run with it unset for a fair baseline
(`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/int8_gemm.py`); the header prints it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minicompress import kernels  # noqa: E402
from minicompress.kernels.epilogue import make_epilogue  # noqa: E402
from minicompress.kernels.qgemm import _run  # noqa: E402
from minicompress.report.latency import best_seconds  # noqa: E402

SHAPES = [(32, 64, 64), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (128, 768, 768), (128, 768, 3072)]
LINEARS = [(128, 768, 768), (128, 768, 3072)]
# the digits zoo's Linear layers at batch 256 (mlp: 64-128-64-10) and two larger ones: where is the crossover?
SMALL_LINEARS = [(256, 64, 128), (256, 128, 64), (256, 64, 10), (256, 256, 256), (1024, 64, 128), (1024, 256, 256)]


def interleaved(methods, rounds, repeats):
    """Run every method `repeats` times per round, rounds interleaved; best time of each."""
    best = {name: np.inf for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            best[name] = min(best[name], best_seconds(fn, repeats))
    return best


# ---- peak ---------------------------------------------------------------------------------------------------

def nominal_ghz():
    try:
        mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
        return max(mhz) / 1000
    except (OSError, ValueError):
        return float("nan")


def theoretical_int8_peak():
    cores = numba.get_num_threads()            # = the cores the kernels use (NUMBA_NUM_THREADS, default: all)
    ghz = nominal_ghz()
    return cores * ghz * 128, f"{cores} cores x {ghz:.2f} GHz x 128 ops/cycle (one 512-bit vpdpbusd)"


def build_peak_kernel():
    from minicompress.kernels.simd import v_dpbusd, v_load, v_store, v_zeros

    @njit(cache=True)
    def spin(n, a, b, out):
        x, y = v_load(a, 0), v_load(b, 0)
        c0, c1, c2, c3, c4, c5 = v_zeros(), v_zeros(), v_zeros(), v_zeros(), v_zeros(), v_zeros()
        c6, c7, c8, c9, c10, c11 = v_zeros(), v_zeros(), v_zeros(), v_zeros(), v_zeros(), v_zeros()
        for _ in range(n):
            c0, c1, c2, c3 = v_dpbusd(c0, x, y), v_dpbusd(c1, x, y), v_dpbusd(c2, x, y), v_dpbusd(c3, x, y)
            c4, c5, c6, c7 = v_dpbusd(c4, x, y), v_dpbusd(c5, x, y), v_dpbusd(c6, x, y), v_dpbusd(c7, x, y)
            c8, c9, c10, c11 = v_dpbusd(c8, x, y), v_dpbusd(c9, x, y), v_dpbusd(c10, x, y), v_dpbusd(c11, x, y)
        for i, c in enumerate((c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)):
            v_store(out, 16 * i, c)

    @njit(cache=True, parallel=True)
    def spin_all(n, a, b, out):
        for t in prange(out.shape[0]):
            spin(n, a, b, out[t])

    return spin_all


def measured_int8_peak():
    if not kernels.cpu_has_vnni():
        return float("nan")
    spin_all = build_peak_kernel()
    threads = numba.get_num_threads()
    a, b = np.ones(64, np.uint8), np.ones(64, np.int8)
    out = np.zeros((threads, 192), np.int32)
    spin_all(10, a, b, out)
    n = 200_000
    best = np.inf
    for _ in range(50):                      # ~1 ms each: best of many survives a busy machine
        t = time.perf_counter()
        spin_all(n, a, b, out)
        best = min(best, time.perf_counter() - t)
    return threads * n * 12 * 128 / best / 1e9


# ---- the ladder -------------------------------------------------------------------------------------------

def gemm_methods(m, k, n, rng, slow_ok):
    a8 = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b8 = rng.integers(-128, 128, (k, n), dtype=np.int8)
    au = rng.integers(0, 256, (m, k), dtype=np.uint8)
    xf = rng.standard_normal((m, k)).astype(np.float32)
    wf = rng.standard_normal((k, n)).astype(np.float32)
    packed = kernels.pack_b(b8)
    ep = make_epilogue(m, packed, 0, None, output="int32")
    methods = {
        "numpy f32": lambda: xf @ wf,
        "cast+sgemm": lambda: a8.astype(np.float32) @ b8.astype(np.float32),
        "loops": lambda: kernels.gemm_s8s8s32_loops(a8, b8),
        "tiled": lambda: kernels.gemm_s8s8s32_tiled(a8, b8),
        "packed portable": lambda: _run(au, packed, ep, "int32", "portable"),
    }
    if slow_ok:
        methods["numpy int32"] = lambda: a8.astype(np.int32) @ b8.astype(np.int32)
    if kernels.cpu_has_vnni():
        methods["packed vnni"] = lambda: _run(au, packed, ep, "int32", "vnni")
    # exactness check of every integer method on this shape before timing
    exact = a8.astype(np.int64) @ b8.astype(np.int64)
    assert (kernels.gemm_s8s8s32_tiled(a8, b8) == exact).all()
    assert (kernels.gemm_u8s8s32(a8, packed, 0) == exact).all()
    return methods


def linear_methods(m, k, n, rng, layer_objects=False):
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    w_scale = np.abs(w).max(axis=1) / 127
    w_q = np.clip(np.rint(w / w_scale[:, None]), -127, 127).astype(np.int8)
    packed = kernels.pack_weight(w_q, scale=w_scale)
    wt = w.T
    layer = kernels.DynamicQLinear(packed, bias)          # set-up once, as a converted model does
    methods = {"float32 Linear": lambda: x @ wt + bias,
               "dynamic int8 Linear": lambda: layer(x)}
    y_f, y_q = x @ wt + bias, kernels.qlinear_dynamic(x, packed, bias)
    rel = float(np.linalg.norm(y_q - y_f) / np.linalg.norm(y_f))
    return methods, rel


# ---- compile cost -----------------------------------------------------------------------------------------

COMPILE_SCRIPT = r"""
import time, numpy as np
t0 = time.perf_counter()
from minicompress import kernels
a = np.ones((9, 13), np.int8); b = np.ones((13, 7), np.int8); x = np.ones((9, 13), np.float32)
steps = [("import", None),
         ("gemm_s8s8s32_loops", lambda: kernels.gemm_s8s8s32_loops(a, b)),
         ("gemm_s8s8s32_tiled", lambda: kernels.gemm_s8s8s32_tiled(a, b)),
         ("pack_weight", lambda: kernels.pack_weight(b.T.copy(), scale=0.1)),
         ("requantize", lambda: kernels.requantize(np.ones((2, 3), np.int32), 2**30, 1)),
         ("packed portable", lambda: kernels.gemm_u8s8s32(a, kernels.pack_b(b), path="portable")),
         ("packed vnni", lambda: kernels.gemm_u8s8s32(a, kernels.pack_b(b), path="vnni")
                           if kernels.cpu_has_vnni() else None),
         ("quantize_dynamic_u8", lambda: kernels.quantize_dynamic_u8(x)),
         ("im2col_u8", lambda: kernels.im2col_u8(np.ones((1, 2, 5, 5), np.uint8), 3))]
for name, fn in steps:
    t = time.perf_counter()
    if fn is not None:
        fn()
    print(f"{name}\t{time.perf_counter() - (t0 if fn is None else t):.2f}")
"""


def compile_times():
    """First-call times with an empty Numba cache (a fresh subprocess), then with the cache warm."""
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        for label in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True,
                                 check=True).stdout
            results[label] = {line.split("\t")[0]: float(line.split("\t")[1]) for line in out.strip().splitlines()}
    return results


# ---- report -----------------------------------------------------------------------------------------------

def plot(results, peak_theory, peak_measured, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in ("numpy int32", "loops", "tiled", "packed portable", "cast+sgemm", "numpy f32",
                         "packed vnni") if any(n in r["gops"] for r in results)]
    fig, ax = plt.subplots(figsize=(13, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [r["gops"].get(name, 0.0) for r in results]
        ax.bar(np.arange(len(results)) + i * width, values, width, label=name)
    ax.axhline(peak_theory, color="k", linestyle="--", linewidth=1,
               label=f"INT8 peak at nominal clock {peak_theory:.0f}")
    if np.isfinite(peak_measured):
        ax.axhline(peak_measured, color="r", linestyle=":", linewidth=1,
                   label=f"INT8 peak (measured, in registers) {peak_measured:.0f}")
    ax.set_xticks(np.arange(len(results)) + 0.4 - width / 2)
    ax.set_xticklabels([r["shape"] for r in results])
    ax.set_ylabel("GOP/s (higher is better)")
    ax.set_yscale("log")
    ax.set_title(f"minicompress INT8 kernel ladder vs NumPy float32 (M x K x N; {numba.get_num_threads()} thread(s), "
                 f"best of N, interleaved)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats (smoke run)")
    parser.add_argument("--compile", action="store_true", help="measure cold / warm first-call times")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--figure", default=str(ROOT / "figures" / "int8_kernel_ladder.png"))
    args = parser.parse_args(argv)
    rounds, repeats = (2, 3) if args.quick else (5, 5)
    shapes = SHAPES[:2] + SHAPES[4:5] if args.quick else SHAPES
    rng = np.random.default_rng(0)

    print(f"kernel path: {kernels.kernel_path()}   cores: {os.cpu_count()}   Numba threads: "
          f"{numba.get_num_threads()}   OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}"
          f"   OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}   load average: {os.getloadavg()[0]:.1f}")
    peak_theory, derivation = theoretical_int8_peak()
    peak_measured = measured_int8_peak()
    print(f"INT8 peak, theory: {peak_theory:.0f} GOP/s = {derivation}")
    implied_ghz = peak_measured / numba.get_num_threads() / 128
    print(f"INT8 peak, measured in registers (all threads, now): {peak_measured:.0f} GOP/s "
          f"(= {implied_ghz:.2f} GHz x 128 ops/cycle per core: above the nominal clock means turbo)\n")

    results = []
    header = f"{'M x K x N':>16} " + " ".join(f"{n:>15}" for n in ("numpy f32", "cast+sgemm", "numpy int32",
                                                                    "loops", "tiled", "packed portable",
                                                                    "packed vnni"))
    print("GOP/s\n" + header)
    for m, k, n in shapes:
        methods = gemm_methods(m, k, n, rng, slow_ok=m * k * n <= 256**3)
        for fn in methods.values():      # compile / warm up outside the timing
            fn()
        times = interleaved(methods, rounds, repeats)
        gops = {name: 2 * m * k * n / t / 1e9 for name, t in times.items()}
        row = {"shape": f"{m}x{k}x{n}", "gops": gops}
        if "packed vnni" in gops:
            row["vnni_over_f32"] = gops["packed vnni"] / gops["numpy f32"]
            row["vnni_of_peak_theory"] = gops["packed vnni"] / peak_theory
            row["vnni_of_peak_measured"] = gops["packed vnni"] / peak_measured
        results.append(row)
        print(f"{row['shape']:>16} " + " ".join(f"{gops.get(c, float('nan')):15.1f}" for c in
                                                 ("numpy f32", "cast+sgemm", "numpy int32", "loops", "tiled",
                                                  "packed portable", "packed vnni")))
    print("\npacked vnni / numpy f32 and share of the INT8 peak (theory / measured):")
    for row in results:
        if "vnni_over_f32" in row:
            print(f"{row['shape']:>16}  {row['vnni_over_f32']:5.2f}x   {100 * row['vnni_of_peak_theory']:5.1f} %"
                  f"   {100 * row['vnni_of_peak_measured']:5.1f} %")

    print("\nwhole Linear layer (dynamic quantization: quantize x per tensor, GEMM, dequantize + bias):")
    linears = []
    for m, k, n in LINEARS:
        methods, rel = linear_methods(m, k, n, rng)
        for fn in methods.values():
            fn()
        times = interleaved(methods, rounds, repeats)
        speedup = times["float32 Linear"] / times["dynamic int8 Linear"]
        linears.append({"shape": f"{m}x{k}->{n}", "ms": {k_: 1e3 * v for k_, v in times.items()},
                        "speedup": speedup, "relative_error": rel})
        print(f"{m}x{k}->{n}: float32 {1e3 * times['float32 Linear']:.3f} ms, dynamic int8 "
              f"{1e3 * times['dynamic int8 Linear']:.3f} ms, speed-up {speedup:.2f}x, "
              f"relative output error {rel:.4f}")

    print("\nsmall Linear layers (DynamicQLinear built once; the digits MLP's layers are 256x64->128, "
          "256x128->64, 256x64->10):")
    for m, k, n in SMALL_LINEARS:
        methods, _ = linear_methods(m, k, n, rng)
        times = interleaved(methods, rounds, repeats * 4)
        speedup = times["float32 Linear"] / times["dynamic int8 Linear"]
        linears.append({"shape": f"{m}x{k}->{n}", "ms": {k_: 1e3 * v for k_, v in times.items()},
                        "speedup": speedup})
        print(f"{m}x{k}->{n}: float32 {1e6 * times['float32 Linear']:.1f} us, dynamic int8 "
              f"{1e6 * times['dynamic int8 Linear']:.1f} us, speed-up {speedup:.2f}x")

    compile_report = None
    if args.compile:
        compile_report = compile_times()
        print("\nfirst-call time (s), cold Numba cache / warm cache:")
        for name, cold in compile_report["cold"].items():
            print(f"  {name:22s} {cold:6.2f} / {compile_report['warm'][name]:5.2f}")

    plot(results, peak_theory, peak_measured, Path(args.figure))
    print(f"\nfigure: {args.figure}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gemm": results, "linear": linears, "peak_theory": peak_theory,
                                               "peak_measured": peak_measured, "compile": compile_report},
                                              indent=1))


if __name__ == "__main__":
    main()
