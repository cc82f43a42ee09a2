"""Pruning benchmark: the quality bars of the pruning issue, measured on the canonical digits split.

    python benchmarks/pruning.py                 # everything (a few minutes on a laptop CPU)
    python benchmarks/pruning.py --only mlp,csr  # some parts: mlp, nm, cnn, lasso, csr
    MINICOMPRESS_FAST=1 python benchmarks/pruning.py   # short fine-tuning: checks that it runs, not the bars

Parts (each prints a table; accuracy drops are in points of test accuracy, 360 test digits = 0.28 pt each):
    mlp    MLP 90 % unstructured: one-shot without fine-tuning, and AGP (Zhu & Gupta) with fine-tuning
    nm     MLP 2:4 on every Linear: one-shot, then fine-tuned with the pattern locked
    cnn    CNN with 50 % of its conv filters removed (channel pruning + fine-tuning), shrunk: accuracy,
           params, MACs, and the measured inference time dense vs shrunk (same process, same batch)
    lasso  CNN trained with group lasso (proximal), the zeroed filters locked and shrunk
    csr    SparseLinear (scipy CSR) vs the dense NumPy Linear (x @ W.T + b) at 90-99 % sparsity, several
           sizes and batch sizes: where CSR wins and where it loses
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minicompress as mc  # noqa: E402
from minicompress.prune import (GroupLasso, Pruner, SparseLinear, count_macs, count_params, make_schedule,  # noqa: E402
                                shrink)
from minicompress.train import Recipe  # noqa: E402

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"


def data():
    X, y, Xt, yt = mc.data.digits_split()
    return (X, y), (Xt, yt)


def accuracy(model, test):
    return mc.train.evaluate(model, test)


def finetune(model, train, epochs, lr, callbacks, seed=0, weight_decay=0.0):
    """AdamW, cosine-annealed, label smoothing 0.1 (the zoo's recipe, with its own lr and epochs)."""
    mc.manual_seed(seed)
    epochs = 1 if FAST else epochs
    recipe = Recipe(epochs=epochs, lr=lr, batch_size=64, weight_decay=weight_decay, label_smoothing=0.1)
    mc.train.fit(model, train, recipe=recipe, callbacks=callbacks, verbose=False)
    return model.eval()


def steps_per_epoch(train, batch_size=64):
    return -(-len(train[0]) // batch_size)


def row(name, acc, base, extra=""):
    print(f"  {name:<44} acc {100 * acc:6.2f} %   drop {100 * (base - acc):+5.2f} pt   {extra}")


# Per-layer targets for 90 % overall, read off the sensitivity scan (tutorial 06): the first layer is the
# sensitive one (50 % already costs ~1 point alone), the 128x64 hidden layer takes 90 % almost for free.
MLP_TARGETS = {"0": 0.85, "2": 0.96, "4": 0.8}  # 15339 of 17024 weights = 90.1 %


def bench_mlp(train, test):
    print("MLP, 90 % unstructured sparsity (magnitude)")
    base = accuracy(mc.models.pretrained("mlp"), test)
    row("dense (pretrained)", base, base)
    for label, targets in (("uniform 90 %", 0.9), ("per-layer targets", MLP_TARGETS)):
        model = mc.models.pretrained("mlp")
        pruner = Pruner(model, targets).prune()
        row(f"one-shot, {label}, no fine-tuning", accuracy(model, test), base,
            f"sparsity {pruner.report()[-1]['sparsity']:.1%}")
    model = mc.models.pretrained("mlp")
    epochs = 1 if FAST else 60
    total = epochs * steps_per_epoch(train)
    schedule = make_schedule("agp", begin_step=0, end_step=int(0.5 * total), frequency=10)
    pruner = Pruner(model, MLP_TARGETS, schedule=schedule)
    finetune(model, train, epochs, 1e-2, [pruner])
    row(f"AGP, per-layer targets + fine-tuning ({epochs} ep)", accuracy(model, test), base,
        f"sparsity {pruner.report()[-1]['sparsity']:.1%}")
    print(pruner.format_report())


def bench_nm(train, test):
    print("MLP, 2:4 on every Linear")
    base = accuracy(mc.models.pretrained("mlp"), test)
    model = mc.models.pretrained("mlp")
    pruner = Pruner(model, None, "2:4").prune()
    row("one-shot 2:4, no fine-tuning", accuracy(model, test), base,
        f"sparsity {pruner.report()[-1]['sparsity']:.1%}")
    epochs = 1 if FAST else 10
    finetune(model, train, epochs, 1e-3, [pruner.lock()])
    ok = all((m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all() for m in pruner.masks.values())
    row(f"2:4 + fine-tuning, pattern locked ({epochs} ep)", accuracy(model, test), base, f"2 of every 4 kept: {ok}")


def time_inference(model, X, repeats):
    model.eval()
    with mc.no_grad():
        model(mc.Tensor(X))  # warm-up (Numba compilation, caches)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(mc.Tensor(X))
            best = min(best, time.perf_counter() - start)
    return best


def speed_and_size(dense, small, X):
    repeats = 3 if FAST else 20
    t_dense, t_small = time_inference(dense, X, repeats), time_inference(small, X, repeats)
    p0, p1 = count_params(dense), count_params(small)
    m0, m1 = count_macs(dense, X[:1]), count_macs(small, X[:1])
    print(f"  params {p0} -> {p1} ({p0 / p1:.2f}x fewer)   MACs/sample {m0} -> {m1} ({m0 / m1:.2f}x fewer)")
    print(f"  inference on {len(X)} digits (best of {repeats}): dense {1e3 * t_dense:.2f} ms, shrunk "
          f"{1e3 * t_small:.2f} ms -> {t_dense / t_small:.2f}x faster")


def bench_cnn(train, test):
    print("CNN, 50 % of conv filters removed (L1 filter norm, gradual) and shrunk")
    base = accuracy(mc.models.pretrained("cnn"), test)
    row("dense (pretrained)", base, base)
    model = mc.models.pretrained("cnn")
    convs = [n for n, m in model.named_modules() if isinstance(m, mc.nn.Conv2d)]
    epochs = 1 if FAST else 10
    total = epochs * steps_per_epoch(train)
    pruner = Pruner(model, 0.5, "channel", layers=convs,
                    schedule=make_schedule("agp", begin_step=0, end_step=int(0.4 * total), frequency=5))
    finetune(model, train, epochs, 2e-3, [pruner])
    masked_acc = accuracy(model, test)
    small = shrink(model)
    row(f"50 % filters pruned + fine-tuning ({epochs} ep), masked", masked_acc, base)
    row("... shrunk (a smaller dense model)", accuracy(small, test), base,
        f"conv widths {[small.get_submodule(n).out_channels for n in convs]}")
    Xt = test[0]
    with mc.no_grad():
        diff = np.abs(small.eval()(mc.Tensor(Xt)).data - model.eval()(mc.Tensor(Xt)).data).max()
    print(f"  max |shrunk - masked| logit difference: {diff:.2e}")
    speed_and_size(mc.models.pretrained("cnn"), small, Xt)


def bench_lasso(train, test, strength=0.2, lr=0.1):
    print(f"CNN, group lasso on conv channels (lambda={strength}, proximal plain SGD lr={lr}), then the zeroed "
          f"channels locked, fine-tuned and shrunk")
    base = accuracy(mc.models.pretrained("cnn"), test)
    row("dense (pretrained)", base, base)
    model = mc.models.pretrained("cnn")
    convs = [n for n, m in model.named_modules() if isinstance(m, mc.nn.Conv2d)]
    lasso = GroupLasso(model, strength, "channel", layers=convs)
    mc.manual_seed(0)
    epochs = 1 if FAST else 8
    mc.train.fit(model, train, epochs=epochs, optimizer=mc.optim.SGD(model.parameters(), lr=lr),
                 callbacks=[lasso], verbose=False)
    zero = lasso.zero_groups()
    row(f"group lasso training ({epochs} epochs)", accuracy(model, test), base,
        "zeroed filters " + ", ".join(f"{n}: {z.sum()}/{z.size}" for n, z in zero.items())
        + f" ({lasso.zero_fraction():.0%})")
    lock = Pruner.lock_pattern(model, layers=convs, pattern="channel")
    epochs = 1 if FAST else 10
    finetune(model, train, epochs, 2e-3, [lock])
    small = shrink(model)
    row(f"... + {epochs} ep fine-tuning (channels locked), shrunk", accuracy(small, test), base,
        f"conv widths {[small.get_submodule(n).out_channels for n in convs]}")
    speed_and_size(mc.models.pretrained("cnn"), small, test[0])


def bench_csr():
    print("SparseLinear (scipy CSR) vs dense NumPy Linear, float32, best of several runs")
    print(f"  {'in x out':>11} {'batch':>6} {'sparsity':>9} {'dense ms':>10} {'CSR ms':>9} {'CSR speed-up':>13}")
    rng = np.random.default_rng(0)
    sizes = [(64, 128), (512, 512), (2048, 2048)] if not FAST else [(64, 128), (512, 512)]
    for n_in, n_out in sizes:
        for batch in (1, 64, 512):
            for sparsity in (0.9, 0.99):
                mc.manual_seed(0)
                linear = mc.nn.Linear(n_in, n_out)
                Pruner(mc.nn.Sequential(linear), sparsity).prune()
                sparse = SparseLinear.from_dense(linear)
                x = rng.standard_normal((batch, n_in)).astype(np.float32)
                w, b = linear.weight.data, linear.bias.data
                t_dense = best_time(lambda: x @ w.T + b)
                t_csr = best_time(lambda: sparse(x))
                print(f"  {f'{n_in}x{n_out}':>11} {batch:>6} {sparsity:>9.0%} {1e3 * t_dense:>10.4f} "
                      f"{1e3 * t_csr:>9.4f} {t_dense / t_csr:>12.2f}x")


def best_time(fn, repeats=None):
    repeats = repeats or (5 if FAST else 30)
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="mlp,nm,cnn,lasso,csr")
    args = parser.parse_args()
    parts = args.only.split(",")
    train, test = data()
    if "mlp" in parts:
        bench_mlp(train, test)
    if "nm" in parts:
        bench_nm(train, test)
    if "cnn" in parts:
        bench_cnn(train, test)
    if "lasso" in parts:
        bench_lasso(train, test)
    if "csr" in parts:
        bench_csr()


if __name__ == "__main__":
    main()
