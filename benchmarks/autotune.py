"""Auto-tuning benchmark: the quality bars of the tuning issue, on the zoo's digits CNN and tiny transformer.

    python benchmarks/autotune.py                       # cnn and tiny_transformer (trains them once if not cached)
    python benchmarks/autotune.py --models cnn --json out.json

For each model (mc.models.pretrained, canonical split, 360 test digits, 2 calibration batches of 128):
    goal-1%      test accuracy, 1 % relative goal, strategy basic (all recipes)
    tight-nll    test cross-entropy (lower is better), 0.2 % relative goal, the default recipe only: a goal
                 that all-INT8 misses, so the tuner must fall operators back (a mixed configuration)
    hawq-1%      test accuracy, 1 % relative goal, HAWQ mixed 8/4-bit ordering
Columns: trials evaluated, wall seconds of the tuning (not of training), met, the result's test accuracy,
model bytes (vs float) and the final configuration. Wall times on a busy machine are noisy.
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minicompress as mc  # noqa: E402
from minicompress import tune  # noqa: E402


def test_nll(model, X, y):
    with mc.no_grad():
        z = model(mc.Tensor(X)).data.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def run(name):
    model = mc.models.pretrained(name)
    X_train, _, X_test, y_test = mc.data.digits_split()
    calib = [X_train[i:i + 128] for i in range(0, 256, 128)]
    accuracy = lambda m: mc.train.evaluate(m, (X_test, y_test))  # noqa: E731
    nll = lambda m: test_nll(m, X_test, y_test)  # noqa: E731
    cases = {
        "goal-1%": dict(eval_fn=accuracy, tolerable_loss=0.01),
        "tight-nll": dict(eval_fn=nll, tolerable_loss=0.002, higher_is_better=False, recipes=[tune.DEFAULT_RECIPE]),
        "hawq-1%": dict(eval_fn=accuracy, tolerable_loss=0.01, strategy="hawq"),
    }
    rows = []
    for case, kwargs in cases.items():
        mc.manual_seed(0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = tune.autotune(model, calib_data=calib, measure_latency=False, **kwargs)
        seconds = time.perf_counter() - start
        best = result.history[result.best_trial]
        rows.append({"model": name, "case": case, "trials": result.trials, "seconds": round(seconds, 2),
                     "met": result.met, "baseline": result.baseline, "metric": result.accuracy,
                     "test_accuracy": accuracy(result.model), "bytes": best.size_bytes,
                     "float_bytes": result.history[0].size_bytes, "config": best.describe()})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="cnn,tiny_transformer")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    rows = [row for name in args.models.split(",") for row in run(name)]
    print(f"{'model':<17} {'case':<10} {'trials':>6} {'wall s':>7} {'met':>4} {'baseline':>9} {'metric':>9} "
          f"{'test acc':>8} {'KB':>6} {'float KB':>8}  configuration")
    for r in rows:
        met = "yes" if r["met"] else "NO"
        print(f"{r['model']:<17} {r['case']:<10} {r['trials']:>6} {r['seconds']:>7.2f} {met:>4} "
              f"{r['baseline']:>9.5f} {r['metric']:>9.5f} {r['test_accuracy']:>8.4f} {r['bytes'] / 1024:>6.1f} "
              f"{r['float_bytes'] / 1024:>8.1f}  {r['config'][:70]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
