"""Measured latency: the median wall time of a forward pass, in milliseconds.

    latency_ms = median_{r=1..repeat} t_r,   after `warmup` untimed calls (Numba compiles on first call)

A median rather than a mean: on a shared machine a few runs are slowed by other processes. Numbers taken
on a busy machine are noisy; compare models measured back to back, not across days.
"""
import statistics
import time

from ..core import Tensor, no_grad


def measure_latency_ms(model, x, repeat=5, warmup=1):
    """Median forward time of `model(x)` in ms (no_grad, model called as is)."""
    if repeat < 1:
        raise ValueError(f"measure_latency_ms: repeat must be >= 1, got {repeat}")
    x = x if isinstance(x, Tensor) else Tensor(x)
    times = []
    with no_grad():
        for _ in range(warmup):
            model(x)
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def best_seconds(fn, repeats, budget=1.0):
    """Best wall time of `repeats` calls of fn() in seconds, stopping early once `budget` seconds have passed
    (the best of N is the least disturbed run: what benchmarks of kernels compare)."""
    best, start = float("inf"), time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > budget:
            break
    return best
