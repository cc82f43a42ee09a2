"""Whole-model inference speed of the digits zoo: FP32 vs static INT8 (convert) vs dynamic INT8 (quantize_dynamic).

    python benchmarks/quantized_models.py                       # OPENBLAS / Numba threads as the environment has them
    OPENBLAS_NUM_THREADS=1 python benchmarks/quantized_models.py
    MINICOMPRESS_FAST=1 python benchmarks/quantized_models.py   # fewer repeats: checks that it runs

Models: the zoo MLP and CNN (FP32, static INT8 with per-channel weights calibrated on 512 training digits,
dynamic INT8) and the tiny transformer (FP32, dynamic INT8), at batch 1, 32, 256 and 1797 (the digits repeated).
All variants run in one process, interleaved (one call of each per round, so a burst of load from other
processes hits them alike), best of R rounds, under mc.no_grad(). Ratio = FP32 time / INT8 time (> 1: INT8 is
faster). The crossover is the smallest batch from which INT8 is faster at every larger batch measured.
The INT8 layers run mc.kernels' packed GEMMs (VNNI where the CPU has it) with the fused epilogues; on a busy
machine the numbers are noisy (read the ratios, and rerun on a quiet machine for final figures).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numba  # noqa: E402

import minicompress as mc  # noqa: E402

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
BATCHES = (1, 32, 256, 1797)


def interleaved_best(fns, x, rounds):
    """Best wall time (seconds) of each fn(x), running them round-robin `rounds` times after one warm-up."""
    for fn in fns.values():
        fn(x)
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def rounds_for(batch):
    if FAST:
        return 2
    return {1: 50, 32: 40, 256: 20}.get(batch, 7)


def variants(name, X_train):
    model = mc.models.pretrained(name)
    out = {"fp32": model}
    if name != "tiny_transformer":
        prepared = mc.quant.prepare(model, mc.quant.per_channel_qconfig)
        prepared(mc.Tensor(X_train[:512]))
        out["static int8"] = mc.quant.convert(prepared)
    out["dynamic int8"] = mc.quant.quantize_dynamic(model)
    return out


def crossover(ratios):
    """Smallest batch from which every measured ratio is > 1, or None."""
    found = None
    for batch in reversed(BATCHES):
        if ratios[batch] > 1.0:
            found = batch
        else:
            break
    return found


def main():
    X_train, _, _, _ = mc.data.digits_split()
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset: OpenBLAS default)')}, "
          f"Numba threads={numba.get_num_threads()}, kernels.kernel_path()={mc.kernels.kernel_path()!r}, "
          f"cpus={os.cpu_count()}, load average={os.getloadavg()[0]:.2f}")
    rows, summary = [], []
    for name in ("mlp", "cnn", "tiny_transformer"):
        models = variants(name, X_train)
        calls = {label: (lambda x, m=m: m(x)) for label, m in models.items()}
        ratios = {label: {} for label in models if label != "fp32"}
        for batch in BATCHES:
            x = mc.Tensor(np.resize(X_train, (batch, 64)).astype(np.float32))
            with mc.no_grad():
                best = interleaved_best(calls, x, rounds_for(batch))
            cells = [f"{best['fp32'] * 1e3:.3f}"]
            for label in ratios:
                ratios[label][batch] = best["fp32"] / best[label]
                cells.append(f"{best[label] * 1e3:.3f} ({ratios[label][batch]:.2f}x)")
            if "static int8" not in models:
                cells.insert(1, "-")
            rows.append(f"| {name} | {batch} | " + " | ".join(cells) + " |")
        for label, by_batch in ratios.items():
            cross = crossover(by_batch)
            summary.append(f"- {name}, {label}: " + (f"faster than FP32 from batch {cross} on" if cross else
                                                    f"slower than FP32 at batch {BATCHES[-1]} (no crossover)"))
    print("\n| model | batch | FP32 ms | static INT8 ms (speed-up) | dynamic INT8 ms (speed-up) |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nCrossover (batches measured: " + ", ".join(map(str, BATCHES)) + "):")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
