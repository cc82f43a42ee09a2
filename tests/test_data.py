"""Embedded digits, the canonical stratified split and mini-batching: shapes, dtypes, ranges, the file's
own content (parsed independently here), stratification, determinism, and the errors."""
import gzip
import os

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress.data import batches, digits_split, load_digits, stratified_split
from minicompress.data.digits import DIGITS_PATH


def read_csv_independently():
    with gzip.open(DIGITS_PATH, "rt") as f:
        rows = [[int(v) for v in line.split(",")] for line in f if line.strip()]
    table = np.array(rows)
    return table[:, :64], table[:, 64]


def test_load_digits_shapes_dtypes_and_range():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    pixels, labels = read_csv_independently()
    np.testing.assert_array_equal(X * 16, pixels)  # exact: k/16 is representable in float32
    np.testing.assert_array_equal(y, labels)


def test_load_digits_returns_independent_copies():
    X, y = load_digits()
    X[:] = -1.0
    y[:] = 99
    X2, y2 = load_digits()
    assert X2.min() == 0.0 and y2.max() == 9


def test_attribution_ships_with_the_data():
    readme = os.path.join(os.path.dirname(DIGITS_PATH), "README.md")
    text = open(readme).read()
    assert "Alpaydin" in text and "CC BY 4.0" in text


def test_canonical_split_sizes_disjointness_and_stratification():
    X_train, y_train, X_test, y_test = digits_split()
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert y_train.dtype == np.int64 and X_test.dtype == np.float32
    X, y = load_digits()
    # the two parts are a partition of the rows (compare rows as bytes, with their labels)
    rows = {(r.tobytes(), int(l)) for r, l in zip(X, y)}
    parts = [(r.tobytes(), int(l)) for r, l in zip(np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test]))]
    assert len(parts) == 1797 and set(parts) == rows
    counts, test_counts = np.bincount(y, minlength=10), np.bincount(y_test, minlength=10)
    # every class is within one image of its proportional share 360 * n_c / 1797
    assert np.all(np.abs(test_counts - 360 * counts / 1797) < 1)


def test_canonical_split_is_fixed_and_independent_of_manual_seed():
    mc.manual_seed(1)
    a = digits_split()
    mc.manual_seed(2)
    mc.core.rng().random(10)
    b = digits_split()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = digits_split(seed=1)
    assert not np.array_equal(a[3], c[3]) or not np.array_equal(a[2], c[2])


@given(st.lists(st.integers(0, 4), min_size=2, max_size=200), st.data())
def test_stratified_split_properties(labels, data):
    y = np.array(labels)
    n = len(y)
    test_size = data.draw(st.integers(1, n - 1))
    seed = data.draw(st.integers(0, 1000))
    train_idx, test_idx = stratified_split(y, test_size, seed=seed)
    assert len(test_idx) == test_size and len(train_idx) == n - test_size
    assert np.array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(n))
    assert np.all(np.diff(test_idx) > 0) and np.all(np.diff(train_idx) > 0)
    classes, counts = np.unique(y, return_counts=True)
    share = test_size * counts / n
    got = np.array([np.sum(y[test_idx] == c) for c in classes])
    assert np.all(np.abs(got - share) < 1)  # largest-remainder quotas: within one of the exact share
    again = stratified_split(y, test_size, seed=seed)
    assert np.array_equal(again[1], test_idx)


def test_stratified_split_fraction_and_errors():
    y = np.repeat(np.arange(4), 25)
    _, test_idx = stratified_split(y, 0.2)
    assert len(test_idx) == 20 and np.all(np.bincount(y[test_idx]) == 5)
    for bad in (0, 100, -3, 1.5, "10", True):
        with pytest.raises(ValueError, match="test_size"):
            stratified_split(y, bad)
    with pytest.raises(ValueError, match="seed"):
        digits_split(seed=-1)
    with pytest.raises(ValueError, match="1-D"):
        stratified_split(np.zeros((3, 2)), 1)


def test_batches_cover_every_row_once_in_a_seeded_order():
    X = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25)
    mc.manual_seed(3)
    got = list(batches(X, y, batch_size=7))
    assert [len(yb) for _, yb in got] == [7, 7, 7, 4]
    for x, yb in got:
        assert isinstance(x, mc.Tensor) and x.dtype == np.float32 and not x.requires_grad
        np.testing.assert_array_equal(x.data[:, 0], 2 * yb)  # rows stay with their labels
    seen = np.concatenate([yb for _, yb in got])
    assert sorted(seen) == list(range(25)) and not np.array_equal(seen, np.arange(25))
    mc.manual_seed(3)
    again = np.concatenate([yb for _, yb in batches(X, y, batch_size=7)])
    np.testing.assert_array_equal(seen, again)
    mc.manual_seed(3)  # the order is rng().permutation(n) after the seed
    np.testing.assert_array_equal(seen, np.random.default_rng(3).permutation(25))


def test_batches_without_shuffle_without_labels_and_drop_last():
    X = np.arange(10, dtype=np.int64).reshape(10, 1)
    plain = list(batches(X, batch_size=4, shuffle=False))
    assert all(isinstance(x, mc.Tensor) for x in plain)
    assert [x.data.ravel().tolist() for x in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert plain[0].dtype == np.float32  # integer pixels become float32
    dropped = list(batches(X, np.zeros(10), batch_size=4, shuffle=False, drop_last=True))
    assert len(dropped) == 2
    X64 = np.ones((3, 2), dtype=np.float64)
    assert next(iter(batches(X64, batch_size=2))).dtype == np.float64


@pytest.mark.parametrize("args, match", [
    ((np.ones((4, 2)), np.ones(3)), "same length"),
    ((np.ones((0, 2)),), "at least one row"),
    ((np.ones((4, 2)), None, 0), "batch_size"),
    ((np.ones((4, 2)), None, 2.5), "batch_size"),
])
def test_batches_errors(args, match):
    with pytest.raises(ValueError, match=match):
        batches(*args)
