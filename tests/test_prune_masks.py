"""Masks and patterns, schedules: exact counts, largest-kept, N:M, ties, global scope, AGP, bad input."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicompress as mc
from minicompress.prune import (agp_sparsity, cosine_sparsity, exponential_sparsity, global_masks,
                                iterative_sparsity, linear_sparsity, magnitude_mask, make_schedule,
                                one_shot_sparsity)
from tests.strategies import prune_weights, seeds

# ---- independent references: explicit loops over the groups, in C order --------------------------


def ref_groups(w, pattern):
    """List of (index tuple of slices, group) in flat group order, written without masks.py."""
    if pattern == "unstructured":
        return [(idx, w[idx]) for idx in np.ndindex(w.shape)]
    if pattern == "channel":
        return [((o,), w[o]) for o in range(w.shape[0])]
    r, c = (int(v) for v in pattern.split("x"))
    out = []
    for bo in range(w.shape[0] // r):
        for bi in range(w.shape[1] // c):
            sl = (slice(bo * r, (bo + 1) * r), slice(bi * c, (bi + 1) * c))
            out.append((sl, w[sl]))
    return out


def ref_score(group, norm):
    g = np.abs(np.asarray(group, dtype=np.float64))
    return g.sum() if norm == "l1" else math.sqrt((g * g).sum())


PATTERNS_2D = ["unstructured", "channel", "1x1", "2x1", "1x2", "2x2", "4x1", "1x4"]


@st.composite
def weight_and_pattern(draw):
    conv = draw(st.booleans())
    pattern = draw(st.sampled_from(PATTERNS_2D))
    if pattern in ("unstructured", "channel"):
        r = c = 1
    else:
        r, c = (int(v) for v in pattern.split("x"))
    out = r * draw(st.integers(1, 4))
    inp = c * draw(st.integers(1, 4))
    shape = (out, inp) + ((draw(st.integers(1, 3)),) * 2 if conv else ())
    return draw(prune_weights(shape)), pattern


@given(weight_and_pattern(), st.floats(0, 0.99), st.sampled_from(["l1", "l2"]))
def test_exact_count_and_largest_kept(wp, sparsity, norm):
    w, pattern = wp
    mask = magnitude_mask(w, sparsity, pattern, norm=norm)
    assert mask.shape == w.shape and mask.dtype == bool
    groups = ref_groups(w, pattern)
    kept = [bool(np.all(mask[sl])) for sl, _ in groups]
    # each group is all kept or all pruned
    assert all(np.all(mask[sl]) or not np.any(mask[sl]) for sl, _ in groups)
    n_pruned = kept.count(False)
    assert n_pruned == round(sparsity * len(groups))
    group_size = w.size // len(groups)
    assert (~mask).sum() == n_pruned * group_size  # achieved sparsity is exactly the target's rounding
    scores = [ref_score(g, norm) for _, g in groups]
    kept_scores = [s for s, k in zip(scores, kept) if k]
    pruned_scores = [s for s, k in zip(scores, kept) if not k]
    if kept_scores and pruned_scores:
        assert min(kept_scores) >= max(pruned_scores) - 1e-12


@given(st.sampled_from(PATTERNS_2D), st.integers(1, 3), st.floats(0, 0.99))
def test_ties_prune_lower_flat_index_first(pattern, reps, sparsity):
    r, c = (1, 1) if pattern in ("unstructured", "channel") else (int(v) for v in pattern.split("x"))
    w = np.ones((r * reps * 2, c * 2), dtype=np.float32)  # every group has the same score
    mask = magnitude_mask(w, sparsity, pattern)
    groups = ref_groups(w, pattern)
    k = round(sparsity * len(groups))
    expected = [i >= k for i in range(len(groups))]
    assert [bool(np.all(mask[sl])) for sl, _ in groups] == expected


@given(st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8)]), st.integers(1, 3), st.integers(1, 3),
       st.booleans(), seeds())
def test_n_of_m_keeps_exactly_n_largest(nm, rows, blocks, conv, seed):
    n, m = nm
    rng = np.random.default_rng(seed)
    shape = (rows, blocks * m) + ((2, 2) if conv else ())
    w = rng.standard_normal(shape).astype(np.float32)
    w[0, :m] = 0.5  # a group of ties
    mask = magnitude_mask(w, None, f"{n}:{m}")
    assert mask.mean() == pytest.approx(n / m)
    for o in range(shape[0]):
        for pos in np.ndindex(shape[2:]):
            for b in range(blocks):
                idx = (o, slice(b * m, (b + 1) * m)) + pos
                group, keep = np.abs(w[idx]), mask[idx]
                assert keep.sum() == n
                assert group[keep].min() >= group[~keep].max()
    # ties: the lower input indices are pruned first
    tied = mask[(0, slice(0, m)) + (0,) * (len(shape) - 2)]
    assert list(tied) == [False] * (m - n) + [True] * n
    # the sparsity argument may repeat the implied value
    assert np.array_equal(magnitude_mask(w, 1 - n / m, f"{n}:{m}"), mask)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=3), st.floats(0, 0.99),
       st.sampled_from(["unstructured", "channel"]), seeds())
def test_global_scope_one_threshold(shapes, sparsity, pattern, seed):
    rng = np.random.default_rng(seed)
    weights = {f"l{i}": rng.standard_normal(s).astype(np.float32) * (i + 1) for i, s in enumerate(shapes)}
    masks = global_masks(weights, sparsity, pattern)
    scores_kept, scores_pruned, n_groups = [], [], 0
    for name, w in weights.items():
        for sl, g in ref_groups(w, pattern):
            n_groups += 1
            (scores_kept if np.all(masks[name][sl]) else scores_pruned).append(ref_score(g, "l1"))
    assert len(scores_pruned) == round(sparsity * n_groups)
    if scores_kept and scores_pruned:
        assert min(scores_kept) >= max(scores_pruned)


def test_global_ties_break_by_layer_order():
    weights = {"a": np.ones((2, 2)), "b": np.ones((2, 2))}
    masks = global_masks(weights, 0.5)
    assert not masks["a"].any() and masks["b"].all()


def test_scores_argument_overrides_magnitude():
    w = np.array([[1.0, 2.0, 3.0, 4.0]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    assert magnitude_mask(w, 0.5, scores=scores).tolist() == [[True, True, False, False]]
    assert magnitude_mask(mc.Tensor(w), 0.5).tolist() == [[False, False, True, True]]


# ---- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, float("nan")])
def test_sparsity_outside_range(sparsity):
    with pytest.raises(ValueError, match=r"sparsity.*\[0, 1\)"):
        magnitude_mask(np.ones((4, 4)), sparsity)


@pytest.mark.parametrize("sparsity", [True, "0.5", None])
def test_sparsity_wrong_type(sparsity):
    with pytest.raises(TypeError, match="sparsity"):
        magnitude_mask(np.ones((4, 4)), sparsity)


def test_pattern_not_dividing_names_layer_and_shape():
    with pytest.raises(ValueError, match=r"'fc1'.*\(6, 8\).*'4x1'.*out=6"):
        magnitude_mask(np.ones((6, 8)), 0.5, "4x1", name="fc1")
    with pytest.raises(ValueError, match=r"'fc2'.*\(4, 6\).*'2:4'.*6"):
        magnitude_mask(np.ones((4, 6)), None, "2:4", name="fc2")


def test_pattern_not_applicable_to_shape():
    with pytest.raises(ValueError, match=r"\(8,\).*'channel'.*Linear.*Conv2d"):
        magnitude_mask(np.ones(8), 0.5, "channel", name="bn")
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        magnitude_mask(np.ones((2, 4, 4)), None, "2:4")


@pytest.mark.parametrize("pattern", ["rows", "4x0", "0:4", "4:4", "5:4", "2x"])
def test_unknown_or_bad_pattern(pattern):
    with pytest.raises(ValueError, match="pattern"):
        magnitude_mask(np.ones((4, 4)), 0.5, pattern)


def test_n_of_m_rejects_other_sparsity_and_bad_scores():
    with pytest.raises(ValueError, match=r"'2:4' fixes the sparsity at 0.5"):
        magnitude_mask(np.ones((4, 4)), 0.7, "2:4")
    with pytest.raises(ValueError, match="NaN"):
        magnitude_mask(np.array([[1.0, np.nan]]), 0.5)
    with pytest.raises(ValueError, match=r"scores have shape \(3,\)"):
        magnitude_mask(np.ones((2, 2)), 0.5, scores=np.ones(3))


# ---- schedules -------------------------------------------------------------------------------------


@given(st.integers(0, 50), st.integers(1, 200), st.floats(0, 0.5), st.floats(0.5, 0.99), st.integers(1, 20))
def test_agp_monotone_endpoints_and_formula(begin, length, initial, final, frequency):
    end = begin + length
    values = [agp_sparsity(t, begin, end, initial, final, frequency) for t in range(0, end + 5)]
    assert all(b >= a - 1e-15 for a, b in zip(values, values[1:]))
    assert values[begin] == pytest.approx(initial) and values[0] == pytest.approx(initial)
    assert agp_sparsity(end, begin, end, initial, final, frequency) == pytest.approx(final)
    assert agp_sparsity(end + 100, begin, end, initial, final, frequency) == pytest.approx(final)
    for t in range(begin, end):  # Zhu & Gupta, with t rounded down to the last pruning step
        t_last = begin + (t - begin) // frequency * frequency
        expected = final + (initial - final) * (1 - (t_last - begin) / (end - begin)) ** 3
        assert values[t] == pytest.approx(expected, abs=1e-12)


@given(st.integers(1, 100), st.floats(0, 0.4), st.floats(0.5, 0.99))
def test_ramp_variants_monotone_with_endpoints(length, initial, final):
    for ramp in (linear_sparsity, cosine_sparsity, exponential_sparsity, agp_sparsity):
        values = [ramp(t, 0, length, initial, final) for t in range(length + 2)]
        assert values[0] == pytest.approx(initial) and values[-1] == pytest.approx(final)
        assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    mid = length / 2
    if length % 2 == 0:
        assert linear_sparsity(int(mid), 0, length, initial, final) == pytest.approx((initial + final) / 2)
        assert cosine_sparsity(int(mid), 0, length, initial, final) == pytest.approx((initial + final) / 2)
        kept = math.sqrt((1 - initial) * (1 - final))  # geometric mean of the kept fractions
        assert exponential_sparsity(int(mid), 0, length, initial, final) == pytest.approx(1 - kept)


def test_one_shot_and_iterative():
    assert [one_shot_sparsity(t, 3, 0.8) for t in range(5)] == [0, 0, 0, 0.8, 0.8]
    values = [iterative_sparsity(t, 10, 5, 3, 0.9) for t in (0, 9, 10, 14, 15, 20, 24, 25, 100)]
    assert values == pytest.approx([0, 0, 0.3, 0.3, 0.6, 0.9, 0.9, 0.9, 0.9])
    agp = make_schedule("agp", begin_step=2, end_step=12, frequency=2)
    assert agp(7, 0.9) == agp_sparsity(7, 2, 12, 0.0, 0.9, 2) == agp(6, 0.9)
    it = make_schedule("iterative", begin_step=0, rounds=2, round_steps=4)
    assert it(5, 0.8) == pytest.approx(0.8) and it(3, 0.8) == pytest.approx(0.4)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="begin_step < end_step"):
        agp_sparsity(0, 10, 10, 0.0, 0.5)
    with pytest.raises(ValueError, match="frequency"):
        agp_sparsity(0, 0, 10, 0.0, 0.5, frequency=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        agp_sparsity(0, 0, 10, 0.0, 1.0)
    with pytest.raises(ValueError, match="end_step is required"):
        make_schedule("agp")
    with pytest.raises(ValueError, match="unknown schedule kind"):
        make_schedule("quadratic", end_step=3)
