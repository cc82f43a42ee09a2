"""Foundation speed: one training step of the zoo models, and the per-op overhead of the autograd engine.

    python benchmarks/foundation_step.py [--repeat 7] [--quick]

1. Digits MLP (64-128-64-10, ReLU), one SGD training step (forward, cross-entropy, backward, update) at
   batch 64 and 256: minicompress (`model(x)`, `F.cross_entropy`, `loss.backward()`, `optim.SGD.step()`)
   against the same step hand-written in NumPy (the floor any NumPy autograd can reach), in one process,
   interleaved, median of `--repeat` rounds. Target of issue 2: ratio <= 1.5.
2. A chain of 1000 tiny ops (x + 1.0 on a (4,) tensor): microseconds per op without and with gradient
   recording, and per op of the backward pass, next to NumPy's own `a + 1.0`.
3. Step times of the CNN and the tiny transformer (batch 64, same SGD step), and the seconds one epoch of
   the canonical training split takes at that rate.
Prints a markdown table. Numbers depend on the machine's load (`--clock cpu` counts only this process's
CPU time, steadier on a shared machine); BLAS threads matter a lot for these small matrices: with
several threads on a loaded machine a 64x64x128 matmul can take milliseconds instead of microseconds, so
OPENBLAS_NUM_THREADS is printed with the results.
"""
import argparse
import os
import platform
import time

import numpy as np

import minicompress as mc
from minicompress.nn import functional as F
from minicompress.optim import SGD

LR = 0.01
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time (busy machines)
clock = time.perf_counter


# ---- the hand-written NumPy step (the reference) ----------------------------------------------------
def numpy_mlp_step(params, x, y):
    """Forward, softmax cross-entropy (mean), backward and an SGD update of [W1, b1, W2, b2, W3, b3]."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = x @ W1.T + b1
    a1 = np.maximum(h1, 0)
    h2 = a1 @ W2.T + b2
    a2 = np.maximum(h2, 0)
    z = a2 @ W3.T + b3
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    dz = p
    dz[np.arange(n), y] -= 1
    dz /= n
    dW3, db3 = dz.T @ a2, dz.sum(axis=0)
    da2 = dz @ W3
    da2 *= h2 > 0
    dW2, db2 = da2.T @ a1, da2.sum(axis=0)
    da1 = da2 @ W2
    da1 *= h1 > 0
    dW1, db1 = da1.T @ x, da1.sum(axis=0)
    for param, grad in zip(params, (dW1, db1, dW2, db2, dW3, db3)):
        param -= LR * grad
    return loss


def library_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def median_time(fn, n_calls, repeat):
    """Median over `repeat` rounds of the mean seconds per call of `fn` (n_calls calls a round)."""
    rounds = []
    for _ in range(repeat):
        start = clock()
        for _ in range(n_calls):
            fn()
        rounds.append((clock() - start) / n_calls)
    return float(np.median(rounds))


def interleaved(fns, n_calls, repeat):
    """Time several functions round-robin (so machine load hits all alike); medians in the same order."""
    rounds = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            rounds[i].append(median_time(fn, n_calls, 1))
    return [float(np.median(r)) for r in rounds]


def bench_mlp(batch, repeat, n_calls):
    X, y = mc.data.load_digits()
    rows = np.random.default_rng(0).integers(0, len(X), size=batch)
    xb, yb = X[rows], y[rows]
    mc.manual_seed(0)
    model = mc.models.mlp()
    optimizer = SGD(model.parameters(), lr=LR)
    params = [p.data.copy() for p in model.parameters()]
    x_tensor = mc.Tensor(xb)
    loss_lib = library_step(model, optimizer, x_tensor, yb).item()
    loss_np = numpy_mlp_step(params, xb, yb)
    assert abs(loss_lib - loss_np) < 1e-4, (loss_lib, loss_np)  # the same computation
    t_lib, t_np = interleaved([lambda: library_step(model, optimizer, x_tensor, yb),
                               lambda: numpy_mlp_step(params, xb, yb)], n_calls, repeat)
    return t_lib, t_np


def bench_tiny_ops(repeat, n_ops=1000):
    def chain(requires_grad):
        x = mc.Tensor(np.ones(4, dtype=np.float32), requires_grad=requires_grad)
        for _ in range(n_ops):
            x = x + 1.0
        return x

    def chain_numpy():
        a = np.ones(4, dtype=np.float32)
        for _ in range(n_ops):
            a = a + 1.0
        return a

    t_plain = median_time(lambda: chain(False), 1, repeat) / n_ops
    t_grad = median_time(lambda: chain(True), 1, repeat) / n_ops
    t_numpy = median_time(chain_numpy, 1, repeat) / n_ops
    backward_rounds = []
    for _ in range(repeat):
        out = chain(True).sum()
        start = clock()
        out.backward()
        backward_rounds.append((clock() - start) / (n_ops + 1))
    return t_numpy, t_plain, t_grad, float(np.median(backward_rounds))


def bench_model_step(name, repeat, n_calls, batch=64):
    X, y = mc.data.load_digits()
    mc.manual_seed(0)
    try:
        model = mc.models.ZOO[name]()
    except NotImplementedError:
        return None
    optimizer = SGD(model.parameters(), lr=LR)
    x, yb = mc.Tensor(X[:batch]), y[:batch]
    library_step(model, optimizer, x, yb)  # warm-up (Numba kernels compile on first call)
    return median_time(lambda: library_step(model, optimizer, x, yb), n_calls, repeat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer calls per round (a smoke test)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time (default), or this process's CPU time (steadier on a loaded machine)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    n_calls = 20 if args.quick else 200
    steps_per_epoch = int(np.ceil(1437 / 64))

    print(f"# foundation step benchmark  ({platform.processor() or platform.machine()}, numpy {np.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, load {os.getloadavg()[0]:.1f}, "
          f"{args.clock} clock)")
    print()
    print("| measurement | minicompress | NumPy by hand | ratio |")
    print("|---|---|---|---|")
    for batch in (64, 256):
        t_lib, t_np = bench_mlp(batch, args.repeat, n_calls)
        print(f"| MLP training step, batch {batch} | {t_lib * 1e6:.0f} us | {t_np * 1e6:.0f} us | "
              f"{t_lib / t_np:.2f}x |")
    t_numpy, t_plain, t_grad, t_back = bench_tiny_ops(args.repeat)
    print(f"| tiny op x + 1.0 on (4,), no grad | {t_plain * 1e6:.2f} us/op | {t_numpy * 1e6:.2f} us/op | "
          f"{t_plain / t_numpy:.1f}x |")
    print(f"| tiny op x + 1.0 on (4,), recording | {t_grad * 1e6:.2f} us/op | {t_numpy * 1e6:.2f} us/op | "
          f"{t_grad / t_numpy:.1f}x |")
    print(f"| backward through that chain | {t_back * 1e6:.2f} us/op | | |")
    for name in ("cnn", "tiny_transformer"):
        t = bench_model_step(name, args.repeat, max(n_calls // 10, 5))
        if t is None:
            print(f"| {name} training step, batch 64 | not written yet | | |")
        else:
            print(f"| {name} training step, batch 64 | {t * 1e3:.1f} ms ({t * steps_per_epoch:.2f} s/epoch) | | |")


if __name__ == "__main__":
    main()
