"""Graph optimisation benchmark: original model (Module + Tensor ops) vs `mc.graph.optimize` (fused graph).

    python benchmarks/graph.py                 # zoo MLP, CNN (with BatchNorm), tiny transformer
    python benchmarks/graph.py --pretrained    # trained zoo weights (trains once, then cached) + test accuracy
    MINICOMPRESS_FAST=1 python benchmarks/graph.py   # fewer repeats: checks that it runs

For each model and batch size: best-of-R wall time per forward pass of the original model and of the
optimised graph, their ratio, the largest absolute output difference, and the node counts before and
after. Then the same for the INT8 models of mc.quant.convert (static PTQ, default_qconfig, calibrated on
the training digits): the converted model, its traced unfused integer path (float round-trips between
integer layers), and the graph after the INT8 fusions (whose outputs must be bit-identical). Both run in the same process on the same input, one after the other (numbers on a busy machine
are noisy; the ratio is the quantity to read). The optimised graph gains from (1) BatchNorm folded into
the conv weights, (2) activations applied in place in the GEMM output buffer, (3) fewer, larger NumPy
calls (restride chains, one softmax kernel) and (4) no autograd bookkeeping (no Tensor / Function objects).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minicompress as mc  # noqa: E402

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"


def best_time(fn, x, repeats):
    fn(x)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


def with_bn_statistics(model, seed=0):
    """Untrained BatchNorms are the identity; give them statistics so that the outputs are not trivial."""
    r = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, mc.nn.BatchNorm2d):
            m.running_mean[...] = r.normal(size=m.num_features)
            m.running_var[...] = r.random(m.num_features) + 0.5
    return model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", action="store_true", help="use trained zoo weights and report accuracy")
    parser.add_argument("--batches", default="1,64,512", help="comma-separated batch sizes")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    repeats = 3 if FAST else 20
    X, y, Xt, yt = mc.data.digits_split()
    print(f"{'model':17s} {'batch':>5s} {'original ms':>12s} {'optimised ms':>13s} {'speed-up':>9s} "
          f"{'max |diff|':>11s}  nodes")
    for name in ("mlp", "cnn", "tiny_transformer"):
        mc.manual_seed(0)
        model = mc.models.pretrained(name) if args.pretrained else with_bn_statistics(getattr(mc.models, name)())
        fast, report = mc.graph.optimize(model, Xt[:8])
        for b in batches:
            x = np.resize(Xt, (b, 64)).astype(np.float32)
            with mc.no_grad():
                t_orig = best_time(lambda v: model(mc.Tensor(v)), x, repeats)
            t_fast = best_time(fast, x, repeats)
            diff = np.max(np.abs(fast(x).data - model(mc.Tensor(x)).data))
            print(f"{name:17s} {b:5d} {t_orig * 1e3:12.3f} {t_fast * 1e3:13.3f} {t_orig / t_fast:8.2f}x "
                  f"{diff:11.2e}  {report.nodes_before} -> {report.nodes_after}")
        if args.pretrained:
            acc, acc_fast = mc.train.evaluate(model, (Xt, yt)), mc.train.evaluate(fast, (Xt, yt))
            print(f"{'':17s} test accuracy original {acc:.4f}, optimised {acc_fast:.4f}")
    print()
    print(f"{'INT8 model':17s} {'batch':>5s} {'converted ms':>12s} {'unfused ms':>11s} {'fused ms':>9s} "
          f"{'fused vs unfused':>17s}  identical  nodes")
    for name in ("mlp", "cnn", "tiny_transformer"):
        mc.manual_seed(0)
        model = mc.models.pretrained(name) if args.pretrained else with_bn_statistics(getattr(mc.models, name)())
        prepared = mc.quant.prepare(model, mc.quant.default_qconfig)
        prepared(mc.Tensor(X[:256]))
        qmodel = mc.quant.convert(prepared)
        unfused = mc.graph.trace(qmodel, Xt[:8])
        fused, report = mc.graph.optimize(unfused)
        for b in batches:
            x = np.resize(Xt, (b, 64)).astype(np.float32)
            t_model = best_time(lambda v: qmodel(mc.Tensor(v)), x, repeats)
            t_unfused, t_fused = best_time(unfused, x, repeats), best_time(fused, x, repeats)
            same = np.array_equal(fused(x).data, unfused(x)) and np.array_equal(unfused(x), qmodel(mc.Tensor(x)).data)
            print(f"{name:17s} {b:5d} {t_model * 1e3:12.3f} {t_unfused * 1e3:11.3f} {t_fused * 1e3:9.3f} "
                  f"{t_unfused / t_fused:16.2f}x  {str(same):9s}  {report.nodes_before} -> {report.nodes_after}")
    print("(timings: best of", repeats, "runs; measured on whatever else this machine is doing)")


if __name__ == "__main__":
    main()
