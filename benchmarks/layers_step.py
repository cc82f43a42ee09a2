"""Layer-library speed: the digits CNN training step against the same step hand-written in NumPy, and the
forward+backward time of single ops.

    python benchmarks/layers_step.py [--repeat 7] [--batch 64] [--clock wall|cpu]

1. The zoo CNN (Unflatten -> [conv3x3 pad 1 -> BatchNorm2d -> ReLU] x 2 (16, 32 channels) -> MaxPool 2x2 ->
   Flatten -> Linear(512, 10)), one training step: forward, cross-entropy, backward and a plain SGD update.
   minicompress (`model(x)`, `F.cross_entropy`, `loss.backward()`) against a hand-written NumPy step that
   uses the same algorithms (channels-last im2col + one matmul per conv, col2im over the 9 kernel offsets,
   closed-form BatchNorm backward, reshape max-pool) with no autograd, no checks and no Tensor objects --
   the floor this library can approach. Interleaved rounds, median.
2. Single ops, forward + backward, batch 64: conv2d 3x3 (16 -> 32 channels on 8x8), max_pool2d 2x2,
   batch_norm (training), layer_norm (d = 32, 9 tokens), softmax, gelu, cross_entropy (10 classes).
Numbers depend on the machine's load; with several BLAS threads on a loaded machine small matrix products
can take milliseconds, so OPENBLAS_NUM_THREADS is printed with the results (1 is steadier for these sizes).
"""
import argparse
import os
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import minicompress as mc
from minicompress.nn import functional as F

LR = 0.01
EPS = 1e-5
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# ---- the hand-written NumPy CNN step ------------------------------------------------------------------
def np_conv3x3(x_nhwc, w2, b):
    """x (N, H, W, C) -> (N, H, W, O) with padding 1; w2 (O, 3*3*C) in (p, q, c) order."""
    n, h, w, c = x_nhwc.shape
    xp = np.zeros((n, h + 2, w + 2, c), dtype=x_nhwc.dtype)
    xp[:, 1:-1, 1:-1] = x_nhwc
    cols = sliding_window_view(xp, (3, 3), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, 9 * c)
    return (cols @ w2.T + b).reshape(n, h, w, -1), cols


def np_conv3x3_backward(g, cols, w2, x_shape):
    n, h, w, c = x_shape
    o = g.shape[-1]
    g2 = g.reshape(-1, o)
    dw2, db = g2.T @ cols, g2.sum(axis=0)
    dcols = (g2 @ w2).reshape(n, h, w, 3, 3, c)
    dxp = np.zeros((n, h + 2, w + 2, c), dtype=g.dtype)
    for p in range(3):
        for q in range(3):
            dxp[:, p:p + h, q:q + w] += dcols[:, :, :, p, q]
    return dxp[:, 1:-1, 1:-1], dw2, db


def np_bn_relu(x, gamma, beta):
    mu = x.mean(axis=(0, 1, 2))
    xc = x - mu
    var = (xc * xc).mean(axis=(0, 1, 2))
    rstd = 1 / np.sqrt(var + EPS)
    xhat = xc * rstd
    return np.maximum(xhat * gamma + beta, 0), (xhat, rstd)


def np_bn_relu_backward(g, out, cache, gamma):
    xhat, rstd = cache
    g = g * (out > 0)
    m = g.size // g.shape[-1]
    db, dg = g.sum(axis=(0, 1, 2)), (g * xhat).sum(axis=(0, 1, 2))
    return gamma * rstd * (g - db / m - xhat * (dg / m)), dg, db


def numpy_cnn_step(params, x, y):
    w1, b1, g1, be1, w2, b2, g2, be2, wl, bl = params
    n = x.shape[0]
    h1, cols1 = np_conv3x3(x.reshape(n, 8, 8, 1), w1, b1)
    a1, c1 = np_bn_relu(h1, g1, be1)
    h2, cols2 = np_conv3x3(a1, w2, b2)
    a2, c2 = np_bn_relu(h2, g2, be2)
    win = a2.reshape(n, 4, 2, 4, 2, -1)
    pooled = win.max(axis=(2, 4))
    z = pooled.reshape(n, -1) @ wl.T + bl
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean()
    dz = p
    dz[np.arange(n), y] -= 1
    dz /= n
    dwl, dbl = dz.T @ pooled.reshape(n, -1), dz.sum(axis=0)
    dpool = (dz @ wl).reshape(pooled.shape)
    da2 = (win == pooled[:, :, None, :, None]) * dpool[:, :, None, :, None]
    dh2, dg2, dbe2 = np_bn_relu_backward(da2.reshape(a2.shape), a2, c2, g2)
    da1, dw2, db2 = np_conv3x3_backward(dh2, cols2, w2, a1.shape)
    dh1, dg1, dbe1 = np_bn_relu_backward(da1, a1, c1, g1)
    _, dw1, db1 = np_conv3x3_backward(dh1, cols1, w1, (n, 8, 8, 1))
    for param, grad in zip(params, (dw1, db1, dg1, dbe1, dw2, db2, dg2, dbe2, dwl, dbl)):
        param -= LR * grad
    return loss


def numpy_params(rng):
    def u(shape, fan_in):
        b = 1 / np.sqrt(fan_in)
        return rng.uniform(-b, b, shape).astype(np.float32)
    return [u((16, 9), 9), u(16, 9), np.ones(16, np.float32), np.zeros(16, np.float32),
            u((32, 144), 144), u(32, 144), np.ones(32, np.float32), np.zeros(32, np.float32),
            u((10, 512), 512), u(10, 512)]


def library_step(model, x, y):
    for p in model.parameters():
        p.grad = None
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for p in model.parameters():
        p.data -= LR * p.grad
    return loss


# ---- timing ---------------------------------------------------------------------------------------------
def interleaved(fns, n_calls, repeat, clock):
    """Median seconds per call of each fn, rounds interleaved so that load changes hit all alike."""
    samples = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = clock()
            for _ in range(n_calls):
                fn()
            samples[k].append((clock() - t0) / n_calls)
    return [float(np.median(s)) for s in samples]


def op_cases(batch, rng):
    def t(*shape):
        return mc.Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    x4, w4, b4 = t(batch, 16, 8, 8), t(32, 16, 3, 3), t(32)
    bn_w, bn_b, rm, rv = t(16), t(16), np.zeros(16, np.float32), np.ones(16, np.float32)
    tokens, ln_w, ln_b = t(batch, 9, 32), t(32), t(32)
    logits, targets = t(batch, 10), rng.integers(0, 10, batch)
    return {
        "conv2d 3x3, 16->32 ch, 8x8": lambda: F.conv2d(x4, w4, b4, padding=1),
        "max_pool2d 2x2 on (N,16,8,8)": lambda: F.max_pool2d(x4, 2),
        "batch_norm (train) on (N,16,8,8)": lambda: F.batch_norm(x4, rm, rv, bn_w, bn_b, training=True),
        "layer_norm on (N,9,32)": lambda: F.layer_norm(tokens, 32, ln_w, ln_b),
        "softmax on (N,9,32)": lambda: F.softmax(tokens, dim=-1),
        "gelu on (N,9,32)": lambda: F.gelu(tokens),
        "cross_entropy (N,10)": lambda: F.cross_entropy(logits, targets),
        "cross_entropy (N,10), label_smoothing=0.1": lambda: F.cross_entropy(logits, targets, label_smoothing=0.1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 64)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    mc.manual_seed(0)
    model = mc.models.cnn()
    xt = mc.Tensor(x)
    params = numpy_params(rng)
    lib, ref = interleaved([lambda: library_step(model, xt, y), lambda: numpy_cnn_step(params, x, y)], 10,
                           args.repeat, clock)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"# layers benchmark (batch {args.batch}, OPENBLAS_NUM_THREADS={threads}, "
          f"{args.clock} clock, load {os.getloadavg()[0]:.1f})\n")
    print("| measurement | minicompress | NumPy by hand | ratio |\n|---|---|---|---|")
    print(f"| CNN training step | {lib * 1e3:.2f} ms | {ref * 1e3:.2f} ms | {lib / ref:.2f}x |")
    for name, forward in op_cases(args.batch, rng).items():
        def fwd_bwd(forward=forward):
            out = forward()
            out.backward(np.ones(out.shape, dtype=out.dtype))
        (t,) = interleaved([fwd_bwd], 20, args.repeat, clock)
        print(f"| {name}, forward + backward | {t * 1e6:.0f} us | | |")


if __name__ == "__main__":
    main()
