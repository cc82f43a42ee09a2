"""The embedded digits set: 1,797 8x8 grey images of handwritten digits, 10 classes (see README.md here).

    load_digits() -> X float32 (1797, 64) in [0, 1] (pixel / 16, row-major 8x8), y int64 (1797,) in 0..9
    digits_split(test_size=360, seed=0) -> X_train (1437, 64), y_train, X_test (360, 64), y_test

`digits_split` with its defaults is the canonical split every model, test and tutorial of minicompress
uses. It is stratified (each class keeps its share of the test set) and depends only on `seed`, not on
`mc.manual_seed`, so that changing the training seed never changes which images are held out.
Source: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI ML Repository, 1998.
"""
import functools
import gzip
import os

import numpy as np

from .split import stratified_split

N_PIXEL_LEVELS = 16
DIGITS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.csv.gz")


@functools.lru_cache(maxsize=1)
def _read_digits():
    """Parse the CSV once (64 integer pixels 0..16, then the label) and keep it read-only."""
    with gzip.open(DIGITS_PATH, "rb") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    X = (table[:, :-1] / N_PIXEL_LEVELS).astype(np.float32)
    y = table[:, -1].astype(np.int64)
    X.flags.writeable = y.flags.writeable = False
    return X, y


def load_digits():
    """Return fresh copies of (X float32 [1797, 64] in [0, 1], y int64 [1797])."""
    X, y = _read_digits()
    return X.copy(), y.copy()


def digits_split(test_size=360, seed=0):
    """The canonical stratified train/test split of the digits: (X_train, y_train, X_test, y_test)."""
    X, y = load_digits()
    train_idx, test_idx = stratified_split(y, test_size=test_size, seed=seed)
    return X[train_idx], y[train_idx], X[test_idx], y[test_idx]
