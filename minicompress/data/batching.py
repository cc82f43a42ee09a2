"""Mini-batches: `batches(X, y=None, batch_size=64, shuffle=True, drop_last=False)`.

Yields `(x, y_batch)` with x a float Tensor of shape (b, ...) and y_batch the matching rows of `y` (an
ndarray), or only `x` when `y` is None (calibration data for quantization). Each call to `batches`
draws a fresh permutation from `mc.core.rng()`, so `mc.manual_seed` fixes the order of every epoch.
The last batch is smaller when batch_size does not divide the row count (unless drop_last=True).
"""
import numpy as np

from ..core import Tensor, rng


def batches(X, y=None, batch_size=64, shuffle=True, drop_last=False):
    X = X.data if isinstance(X, Tensor) else np.asarray(X)
    if X.ndim < 1 or len(X) == 0:
        raise ValueError(f"batches: X must have at least one row, got shape {X.shape}")
    if y is not None:
        y = np.asarray(y)
        if y.ndim < 1 or len(y) != len(X):
            raise ValueError(f"batches: X has {len(X)} rows but y has shape {y.shape}; they must have "
                             "the same length")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
    if X.dtype not in (np.float32, np.float64):  # integer pixels, float16, ...: float32 as Tensor would
        X = X.astype(np.float32)
    return _iterate(X, y, int(batch_size), shuffle, drop_last)


def _iterate(X, y, batch_size, shuffle, drop_last):
    n = len(X)
    order = rng().permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            rows = slice(start, start + batch_size)
        else:
            rows = order[start:start + batch_size]
        x = Tensor(X[rows], dtype=X.dtype)
        yield x if y is None else (x, y[rows])
