"""Floor 2: data. The embedded digits set, the canonical stratified split, and mini-batching.

    X, y = mc.data.load_digits()                          # (1797, 64) float32 in [0, 1], (1797,) int64
    X_train, y_train, X_test, y_test = mc.data.digits_split()   # 1437 / 360, stratified, seed 0
    for x, yb in mc.data.batches(X_train, y_train, batch_size=64):   # order from mc.core.rng()
        ...
"""
from .batching import batches
from .digits import digits_split, load_digits
from .split import stratified_split

__all__ = ["load_digits", "digits_split", "batches", "stratified_split"]
