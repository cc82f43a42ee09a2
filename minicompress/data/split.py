"""Deterministic stratified train/test split of labelled rows (as sklearn's train_test_split(stratify=y)).

Class c with n_c of the N rows gets a test quota q_c ≈ test_size · n_c / N: first ⌊test_size · n_c / N⌋,
then the rows still missing go one each to the classes with the largest fractional parts (the
largest-remainder method, ties to the smaller class label), so the quotas sum exactly to test_size.
Inside each class the test rows are the first q_c of a permutation drawn from
`np.random.default_rng(seed)`: the split is a pure function of (y, test_size, seed), independent of
`mc.manual_seed` on purpose. Both index arrays come back sorted (the data keep their file order).
"""
import numpy as np


def stratified_split(y, test_size, seed=0):
    """Indices (train_idx, test_idx) of a stratified split of labels `y`; `test_size` is a count or a fraction."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size < 2:
        raise ValueError(f"stratified_split: y must be a 1-D array of at least 2 labels, got shape {y.shape}")
    n = y.size
    if isinstance(test_size, (float, np.floating)) and 0.0 < test_size < 1.0:
        test_size = int(round(test_size * n))
    if isinstance(test_size, bool) or not isinstance(test_size, (int, np.integer)) or not 0 < test_size < n:
        raise ValueError(f"stratified_split: test_size must be an int in 1..{n - 1} or a fraction in (0, 1), "
                         f"got {test_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"stratified_split: seed must be an int >= 0, got {seed!r}")
    classes, counts = np.unique(y, return_counts=True)
    exact = test_size * counts / n
    quota = np.floor(exact).astype(np.int64)
    order = np.lexsort((classes, -(exact - quota)))  # largest remainder first, then the smaller label
    quota[order[:test_size - quota.sum()]] += 1
    rng = np.random.default_rng(int(seed))
    test = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(n, dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx
