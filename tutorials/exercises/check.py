"""Check an exercise: run its hypothesis properties against your function and report the first failure.

    python tutorials/exercises/check.py 3               # checks quantize_multiplier in ex03_quantize_multiplier.py
    python tutorials/exercises/check.py 3 7 --max-examples 200
    python tutorials/exercises/check.py all

Every exercise has properties of two kinds:
  * comparisons with the reference solution -- the library's own function (make_exercises.EXERCISES says
    which one), on inputs hypothesis draws;
  * properties that come from the mathematics alone ("0.0 is exactly representable", "every group of m
    keeps exactly n", "the schedule hits its endpoints and is monotone", ...), so a failure also says *what*
    is wrong, not only *that* something differs.
When a property fails, hypothesis shrinks the input to a small counterexample, printed in plain words.
The examples are derandomized: the same answer gets the same verdict on every run.

From Python: `check(number, fn=None, max_examples=30) -> Result` (fn=None loads your stub file).
"""
import argparse
import fractions
import importlib.util
import math
import os
import sys
from collections import namedtuple

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.append(HERE)

import make_exercises  # noqa: E402  (needs HERE on sys.path)
import minicompress as mc  # noqa: E402

Result = namedtuple("Result", "number status message examples")  # status: "passed" | "failed" | "not done"


class Failure(AssertionError):
    """A property does not hold; the message says for which input and how."""


class NotDone(BaseException):
    """The function still raises NotImplementedError (a BaseException: hypothesis stops at once, no shrinking)."""


def expect(condition, message):
    if not condition:
        raise Failure(message)


def show(a):
    """A short plain rendering of a value (arrays on one line)."""
    if isinstance(a, np.ndarray):
        return np.array2string(a, separator=", ", max_line_width=10_000, threshold=64) + \
            (f" ({a.dtype})" if a.dtype not in (np.float64, np.int64, bool) else "")
    if isinstance(a, (float, np.floating)):
        return repr(float(a))
    return repr(a)


class Property:
    """One named property: a hypothesis strategy for the case, a body(fn, *case), a plain description."""

    def __init__(self, name, strategy, describe, body, examples=()):
        self.name, self.strategy, self.describe, self.body, self.examples = name, strategy, describe, body, examples

    def run(self, fn, max_examples, counter, shrink=True):
        def test(case):
            counter[0] += 1
            try:
                self.body(fn, *case)
            except NotImplementedError:
                raise NotDone() from None
            except Failure as exc:
                raise Failure(f"{self.describe(*case)}: {exc}") from None
            except Exception as exc:  # the student's function crashed on this input
                raise Failure(f"{self.describe(*case)}: your function raised {type(exc).__name__}: {exc}") from None

        test = given(self.strategy)(test)
        for case in self.examples:
            test = example(case)(test)
        phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
        test = settings(max_examples=max_examples, deadline=None, database=None, derandomize=True, phases=phases,
                        verbosity=Verbosity.quiet, suppress_health_check=list(HealthCheck), print_blob=False)(test)
        test()


def reference(number):
    return make_exercises.reference(EXERCISE_BY_NUMBER[number])


EXERCISE_BY_NUMBER = {ex.number: ex for ex in make_exercises.EXERCISES}


# ==== 1. calc_qparams =====================================================================================
def _qranges():
    return st.builds(lambda bits, signed, narrow: mc.quant.qrange(bits, signed, narrow_range=narrow),
                     st.sampled_from([2, 3, 4, 8, 16]), st.booleans(), st.booleans())


_f32 = st.floats(-1e4, 1e4, width=32)
_pair = st.tuples(_f32, _f32).map(sorted).map(tuple)


def _per_channel(pairs):
    return np.array([p[0] for p in pairs], np.float32), np.array([p[1] for p in pairs], np.float32)


_ranges1 = st.one_of(_pair.map(lambda p: (np.float32(p[0]), np.float32(p[1]))),
                     st.lists(_pair, min_size=1, max_size=4).map(_per_channel))
_case1 = st.tuples(_ranges1, _qranges(), st.booleans()).map(lambda c: (c[0][0], c[0][1], c[1][0], c[1][1], c[2]))
_examples1 = [(np.float32(0), np.float32(0), -128, 127, False), (np.float32(2), np.float32(5), 0, 255, False),
              (np.float32(-3), np.float32(1), 0, 255, True), (np.float32(-0.5), np.float32(1.5), -8, 7, False)]


def _describe1(lo, hi, qmin, qmax, sym):
    return (f"min_val={show(lo)}, max_val={show(hi)}, qmin={qmin}, qmax={qmax}, symmetric={sym}")


def _qp(fn, lo, hi, qmin, qmax, sym):
    scale, zp = fn(lo, hi, qmin, qmax, sym)
    if np.ndim(lo) == 0:
        expect(np.ndim(scale) == 0 and np.ndim(zp) == 0,
               f"scalar inputs must give scalars, got scale {show(scale)}, zero_point {show(zp)}")
    else:
        expect(np.shape(scale) == lo.shape and np.shape(zp) == lo.shape,
               f"1-D inputs must give 1-D outputs of shape {lo.shape}, got {np.shape(scale)} and {np.shape(zp)}")
    zp = np.asarray(zp)
    expect(np.issubdtype(zp.dtype, np.integer), f"zero_point must be an integer, got {show(zp)}")
    return np.asarray(scale, dtype=np.float64), zp.astype(np.int64)


def _qp_matches(fn, lo, hi, qmin, qmax, sym):
    scale, zp = _qp(fn, lo, hi, qmin, qmax, sym)
    ref_scale, ref_zp = reference(1)(lo, hi, qmin, qmax, sym)
    ref_scale = np.asarray(ref_scale, np.float64)
    expect(np.allclose(scale, ref_scale, rtol=3e-7, atol=0), f"scale should be {show(ref_scale)}, got {show(scale)}")
    expect(np.array_equal(zp, np.asarray(ref_zp)), f"zero_point should be {show(np.asarray(ref_zp))}, got {show(zp)}")


def _qp_zero_exact(fn, lo, hi, qmin, qmax, sym):
    scale, zp = _qp(fn, lo, hi, qmin, qmax, sym)
    expect(np.all((qmin <= zp) & (zp <= qmax)),
           f"zero_point={show(zp)} is outside [{qmin}, {qmax}], so 0.0 is not exactly representable "
           "(quantize(0) would be clamped away from zero_point)")


def _qp_scale_positive(fn, lo, hi, qmin, qmax, sym):
    scale, _ = _qp(fn, lo, hi, qmin, qmax, sym)
    eps = float(np.finfo(np.float32).eps)
    expect(np.all(scale >= eps * (1 - 1e-6)), f"scale={show(scale)} is below float32 eps ({eps})")


def _qp_covers(fn, lo, hi, qmin, qmax, sym):
    scale, zp = _qp(fn, lo, hi, qmin, qmax, sym)
    lo64, hi64 = np.minimum(np.float64(lo), 0), np.maximum(np.float64(hi), 0)
    if sym:
        amax = np.maximum(-lo64, hi64)
        lo64, hi64 = -amax, amax
    tol = scale * 1e-3 + 1e-6 * (hi64 - lo64)
    low_end, high_end = (qmin - zp) * scale, (qmax - zp) * scale
    expect(np.all(low_end <= lo64 + scale / 2 + tol) and np.all(high_end >= hi64 - scale / 2 - tol),
           f"the grid [(qmin - zp) * scale, (qmax - zp) * scale] = [{show(low_end)}, {show(high_end)}] does not "
           f"cover the range [{show(lo64)}, {show(hi64)}] to within half a step (scale {show(scale)})")


def _qp_symmetric_zp(fn, lo, hi, qmin, qmax, sym):
    if not sym:
        return
    _, zp = _qp(fn, lo, hi, qmin, qmax, sym)
    want = 0 if qmin < 0 else (qmin + qmax + 1) // 2
    expect(np.all(zp == want), f"a symmetric {'signed' if qmin < 0 else 'unsigned'} range needs zero_point={want}, "
           f"got {show(zp)}")


def properties_1():
    return [Property(name, _case1, _describe1, body, _examples1) for name, body in [
        ("0.0 is exactly representable (qmin <= zero_point <= qmax)", _qp_zero_exact),
        ("scale is never below float32 eps", _qp_scale_positive),
        ("the integer grid covers the range (widened to contain 0) to within half a step", _qp_covers),
        ("symmetric zero_point is 0 (signed) or (qmin + qmax + 1) // 2 (unsigned)", _qp_symmetric_zp),
        ("the result matches the library's calc_qparams", _qp_matches)]]


# ==== 2. STE gradient =====================================================================================
@st.composite
def _case2(draw):
    qmin, qmax = draw(_qranges())
    scale = draw(_scales)
    zp = draw(st.integers(qmin, qmax))
    n = draw(st.integers(1, 8))
    on_grid = draw(st.lists(st.integers(qmin - 3, qmax + 3), min_size=n, max_size=n))
    x = (np.array(on_grid, np.float64) - zp) * np.float64(scale)
    jitter = draw(st.lists(st.sampled_from([0.0, 0.0, 0.3, -0.3, 0.5, -0.49]), min_size=n, max_size=n))
    x = (x + np.array(jitter) * float(scale)).astype(np.float32)
    grad = np.array(draw(st.lists(st.floats(-4, 4, width=32).filter(lambda g: g != 0), min_size=n, max_size=n)),
                    np.float32)
    return x, scale, zp, qmin, qmax, grad


_scales = st.one_of(st.sampled_from([1.0, 0.5, 0.25, 0.1, 3.0]), st.floats(1e-3, 10.0)).map(np.float32)
_grid2 = st.tuples(_qranges(), _scales).flatmap(
    lambda c: st.tuples(st.just(c[1]), st.integers(c[0][0], c[0][1]), st.just(c[0][0]), st.just(c[0][1])))


def _describe_grid2(scale, zp, qmin, qmax):
    return f"scale={show(scale)}, zero_point={zp}, qmin={qmin}, qmax={qmax}"


def _describe2(x, scale, zp, qmin, qmax, grad):
    return f"x={show(x)}, scale={show(scale)}, zero_point={zp}, qmin={qmin}, qmax={qmax}, grad={show(grad)}"


def _ste(fn, x, scale, zp, qmin, qmax, grad):
    out = np.asarray(fn(x.copy(), scale, zp, qmin, qmax, grad.copy()))
    expect(out.shape == x.shape, f"the gradient must have x's shape {x.shape}, got {out.shape}")
    return out


def _ste_matches(fn, *case):
    out, ref = _ste(fn, *case), reference(2)(*case)
    expect(np.array_equal(out, ref), f"the gradient should be {show(ref)}, got {show(out)}")


def _ste_pass_or_block(fn, x, scale, zp, qmin, qmax, grad):
    out = _ste(fn, x, scale, zp, qmin, qmax, grad)
    ok = (out == grad) | (out == 0)
    expect(ok.all(), f"every entry must be the incoming gradient or 0, got {show(out)}")


def _ste_endpoints(fn, scale, zp, qmin, qmax):
    ends = ((np.array([qmin, qmax, zp], np.float64) - zp) * np.float64(scale)).astype(np.float32)
    g = np.ones(3, np.float32)
    out = np.asarray(fn(ends, scale, zp, qmin, qmax, g))
    expect(np.array_equal(out, g), f"x = (qmin - zp)*scale, (qmax - zp)*scale and 0.0 = {show(ends)} are on the "
           f"grid (not clamped) and must keep their gradient 1, got {show(out)}")


def _ste_outside(fn, scale, zp, qmin, qmax):
    far = ((np.array([qmin - 2, qmax + 2], np.float64) - zp) * np.float64(scale)).astype(np.float32)
    out = np.asarray(fn(far, scale, zp, qmin, qmax, np.ones(2, np.float32)))
    expect(np.array_equal(out, np.zeros(2)), f"x = {show(far)} lies two steps outside the grid (clamped), its "
           f"gradient must be 0, got {show(out)}")


def properties_2():
    return [Property("values on the grid, including both ends, keep their gradient", _grid2, _describe_grid2,
                     _ste_endpoints),
            Property("clamped values (outside [qmin, qmax]) get no gradient", _grid2, _describe_grid2, _ste_outside),
            Property("each entry is the incoming gradient or 0", _case2(), _describe2, _ste_pass_or_block),
            Property("the gradient matches the library's straight-through estimator", _case2(), _describe2,
                     _ste_matches)]


# ==== 3. quantize_multiplier ==============================================================================
_case3 = st.tuples(st.one_of(st.floats(2.0 ** -60, 2.0 ** 30), st.floats(0.25, 4.0),
                             st.integers(-40, 29).map(lambda e: 2.0 ** e)))
_examples3 = [(0.0,), (1.0,), (0.5,), (0.75,), (1 - 2.0 ** -40,), (2.0 ** -40 * (1 - 2.0 ** -45),)]


def _describe3(m):
    return f"M={m!r}"


def _qm(fn, m):
    m0, shift = fn(m)
    for name, v in (("m0", m0), ("shift", shift)):
        expect(int(v) == v, f"{name} must be an integer, got {v!r}")
    return int(m0), int(shift)


def _qm_matches(fn, m):
    got, ref = _qm(fn, m), tuple(int(v) for v in reference(3)(m))
    expect(got == ref, f"(m0, shift) should be {ref}, got {got}")


def _qm_range(fn, m):
    m0, shift = _qm(fn, m)
    if m == 0:
        expect((m0, shift) == (0, 0), f"M = 0 must give (0, 0), got {(m0, shift)}")
    else:
        expect(2 ** 30 <= m0 < 2 ** 31, f"m0={m0} is not in [2^30, 2^31) = [{2 ** 30}, {2 ** 31}) (shift={shift})")


def _qm_value(fn, m):
    m0, shift = _qm(fn, m)
    value = fractions.Fraction(m0) / 2 ** 31 * fractions.Fraction(2) ** (-shift)
    exact = fractions.Fraction(m)
    if m == 0:
        expect(value == 0, f"M = 0 must be represented exactly, got m0 * 2^-31 * 2^-shift = {float(value)!r}")
        return
    rel = abs(value - exact) / exact
    expect(rel <= fractions.Fraction(1, 2 ** 31), f"m0 * 2^-31 * 2^-shift = {m0} * 2^-31 * 2^{-shift} = "
           f"{float(value)!r} is off by a relative {float(rel):.3g} > 2^-31 = {2.0 ** -31:.3g}")


def properties_3():
    return [Property(name, _case3, _describe3, body, _examples3) for name, body in [
        ("m0 is in [2^30, 2^31) (and M = 0 gives (0, 0))", _qm_range),
        ("m0 * 2^-31 * 2^-shift equals M to a relative 2^-31", _qm_value),
        ("(m0, shift) matches the library's quantize_multiplier", _qm_matches)]]


# ==== 4. N:M mask =========================================================================================
@st.composite
def _case4(draw):
    m = draw(st.integers(2, 8))
    n = draw(st.integers(1, m - 1))
    out, groups = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (out, groups * m)
    if draw(st.booleans()):
        shape += (draw(st.integers(1, 2)), draw(st.integers(2, 3)))
    size = int(np.prod(shape))
    values = draw(st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-10, 10)),
                           min_size=size, max_size=size))
    return np.array(values, np.float64).reshape(shape), n, m


def _describe4(scores, n, m):
    return f"scores of shape {scores.shape} = {show(scores)}, n={n}, m={m}"


def _nm(fn, scores, n, m):
    mask = np.asarray(fn(scores.copy(), n, m))
    expect(mask.shape == scores.shape, f"the mask must have the scores' shape {scores.shape}, got {mask.shape}")
    expect(mask.dtype == bool, f"the mask must be a bool array, got dtype {mask.dtype}")
    return mask


def _groups4(a, m):
    return np.moveaxis(a, 1, -1).reshape(-1, m)


def _nm_matches(fn, scores, n, m):
    mask, ref = _nm(fn, scores, n, m), reference(4)(scores, n, m)
    expect(np.array_equal(mask, ref), f"the mask should be {show(ref)}, got {show(mask)} (ties: the earlier "
           "weight of a group is pruned first)")


def _nm_exactly_n(fn, scores, n, m):
    kept = _groups4(_nm(fn, scores, n, m), m).sum(axis=1)
    expect(np.all(kept == n), f"every group of {m} consecutive inputs (along axis 1) must keep exactly {n}; "
           f"the groups keep {show(kept)}")


def _nm_largest(fn, scores, n, m):
    mask = _groups4(_nm(fn, scores, n, m), m)
    s = np.abs(_groups4(scores, m))
    for g in range(s.shape[0]):
        kept, pruned = s[g][mask[g]], s[g][~mask[g]]
        if kept.size and pruned.size:
            expect(kept.min() >= pruned.max(), f"group {g} (|scores| {show(s[g])}) keeps {show(kept)} but prunes "
                   f"{show(pruned)}: a pruned weight has a larger |score| than a kept one")


def properties_4():
    return [Property(name, _case4(), _describe4, body) for name, body in [
        ("every group of m keeps exactly n", _nm_exactly_n),
        ("the kept weights have the largest |scores| of their group", _nm_largest),
        ("the mask matches the library's n_of_m_mask", _nm_matches)]]


# ==== 5. AGP schedule =====================================================================================
@st.composite
def _case5(draw):
    begin = draw(st.integers(0, 30))
    end = begin + draw(st.integers(1, 60))
    frequency = draw(st.integers(1, 8))
    initial = draw(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5]))
    final = draw(st.floats(0.0, 0.99))
    step = draw(st.integers(0, end + 20))
    return step, begin, end, initial, final, frequency


def _describe5(step, begin, end, initial, final, frequency):
    return (f"step={step}, begin_step={begin}, end_step={end}, initial={initial!r}, final={final!r}, "
            f"frequency={frequency}")


def _agp(fn, step, begin, end, initial, final, frequency):
    value = fn(step, begin, end, initial, final, frequency)
    expect(isinstance(value, (float, np.floating, int, np.integer)), f"must return a number, got {value!r}")
    return float(value)


def _agp_matches(fn, *case):
    got, ref = _agp(fn, *case), reference(5)(*case)
    expect(math.isclose(got, ref, rel_tol=1e-9, abs_tol=1e-12), f"the sparsity should be {ref!r}, got {got!r}")


def _agp_endpoints(fn, step, begin, end, initial, final, frequency):
    for s, want, where in ((begin, initial, "at begin_step"), (max(begin - 1, 0), initial, "before begin_step"),
                           (end, final, "at end_step"), (end + 7, final, "after end_step")):
        got = _agp(fn, s, begin, end, initial, final, frequency)
        expect(math.isclose(got, want, abs_tol=1e-12), f"{where} (step {s}) the sparsity must be {want!r}, "
               f"got {got!r}")


def _agp_monotone(fn, step, begin, end, initial, final, frequency):
    a = _agp(fn, step, begin, end, initial, final, frequency)
    b = _agp(fn, step + 1, begin, end, initial, final, frequency)
    lo, hi = min(initial, final), max(initial, final)
    expect(lo - 1e-12 <= a <= hi + 1e-12, f"s({step}) = {a!r} is outside [initial, final]")
    toward = (b - a) * (final - initial) >= -1e-12
    expect(toward, f"the schedule moves away from final between step {step} ({a!r}) and step {step + 1} ({b!r})")


def _agp_steps(fn, step, begin, end, initial, final, frequency):
    if not begin <= step < end:
        return
    t = begin + ((step - begin) // frequency) * frequency
    a, b = _agp(fn, step, begin, end, initial, final, frequency), _agp(fn, t, begin, end, initial, final, frequency)
    expect(math.isclose(a, b, abs_tol=1e-12), f"the sparsity changes only every {frequency} steps: s({step}) must "
           f"equal s({t}) = {b!r} (the last pruning step), got {a!r}")


def _agp_cubic(fn, step, begin, end, initial, final, frequency):
    half = end - begin
    got = _agp(fn, begin + half, begin, begin + 2 * half, initial, final, 1)
    want = final + (initial - final) / 8
    expect(math.isclose(got, want, abs_tol=1e-12), f"at step {begin + half}, halfway from begin_step={begin} to "
           f"end_step={begin + 2 * half} (frequency 1), the cubic gives final + (initial - final) / 8 = {want!r}, "
           f"got {got!r}")


def properties_5():
    return [Property(name, _case5(), _describe5, body) for name, body in [
        ("the schedule hits its endpoints (initial up to begin_step, final from end_step)", _agp_endpoints),
        ("the schedule stays in [initial, final] and moves monotonically toward final", _agp_monotone),
        ("the sparsity only changes at pruning steps (every `frequency` steps)", _agp_steps),
        ("halfway the cubic is at final + (initial - final) / 8", _agp_cubic),
        ("the sparsity matches the library's agp_sparsity", _agp_matches)]]


# ==== 6. group soft-threshold =============================================================================
@st.composite
def _case6(draw):
    g, k = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    values = draw(st.lists(st.one_of(st.integers(-12, 12).map(lambda v: v / 4), st.floats(-3, 3, width=32)),
                           min_size=g * k, max_size=g * k))
    threshold = draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(0, 3)))
    return np.array(values, np.float32).reshape(g, k), threshold


def _describe6(groups, threshold):
    return f"groups={show(groups)}, threshold={threshold!r}"


def _gst(fn, groups, threshold):
    out = np.asarray(fn(groups.copy(), threshold), dtype=np.float64)
    expect(out.shape == groups.shape, f"the result must have the groups' shape {groups.shape}, got {out.shape}")
    return out


def _gst_matches(fn, groups, threshold):
    out, ref = _gst(fn, groups, threshold), reference(6)(groups, threshold)
    expect(np.allclose(out, ref, rtol=1e-5, atol=1e-6), f"the result should be {show(ref)}, got {show(out)}")


def _gst_zeroes(fn, groups, threshold):
    out = _gst(fn, groups, threshold)
    norms = np.linalg.norm(groups.astype(np.float64), axis=1)
    small = norms <= threshold * (1 - 1e-6)
    expect(np.all(out[small] == 0), f"groups with ||w_g|| <= threshold (norms {show(norms)}) must become exactly 0, "
           f"got {show(out)}")


def _gst_shrinks(fn, groups, threshold):
    out = _gst(fn, groups, threshold)
    w = groups.astype(np.float64)
    norms = np.linalg.norm(w, axis=1)
    for g in np.flatnonzero(norms > threshold * (1 + 1e-5) + 1e-6):
        want = w[g] * (1 - threshold / norms[g])
        expect(np.allclose(out[g], want, rtol=1e-5, atol=1e-6),
               f"group {g} (norm {norms[g]:.6g}) must keep its direction and lose exactly `threshold` of its "
               f"length: {show(want)}, got {show(out[g])}")


def _gst_identity(fn, groups, threshold):
    out = _gst(fn, groups, 0.0)
    expect(np.allclose(out, groups, rtol=1e-6, atol=0), f"threshold 0 must leave the groups unchanged, got {show(out)}")


def properties_6():
    return [Property(name, _case6(), _describe6, body) for name, body in [
        ("groups whose norm is at most the threshold become exactly zero", _gst_zeroes),
        ("surviving groups keep their direction and shrink by exactly the threshold", _gst_shrinks),
        ("threshold 0 changes nothing", _gst_identity),
        ("the result matches the library's group-lasso proximal step", _gst_matches)]]


# ==== 7. KD loss ==========================================================================================
@st.composite
def _case7(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 6))
    s = draw(st.lists(st.floats(-8, 8, width=32), min_size=n * c, max_size=n * c))
    t = draw(st.lists(st.floats(-8, 8, width=32), min_size=n * c, max_size=n * c))
    temperature = draw(st.one_of(st.sampled_from([1.0, 2.0, 4.0]), st.floats(0.5, 10)))
    return np.array(s, np.float32).reshape(n, c), np.array(t, np.float32).reshape(n, c), temperature


def _describe7(s, t, temperature):
    return f"student_logits={show(s)}, teacher_logits={show(t)}, temperature={temperature!r}"


def _kd_run(fn, s, t, temperature, teacher_as_tensor=False):
    student = mc.Tensor(s.copy(), requires_grad=True)
    teacher = mc.Tensor(t.copy(), requires_grad=True) if teacher_as_tensor else t.copy()
    loss = fn(student, teacher, temperature)
    expect(isinstance(loss, mc.Tensor), f"kd_loss must return a Tensor, got {type(loss).__name__}")
    expect(loss.data.size == 1, f"kd_loss must return a scalar (batch mean), got shape {loss.data.shape}")
    loss.backward()
    expect(student.grad is not None, "no gradient reached the student logits (was the graph cut by .data?)")
    return float(loss.data), student.grad, teacher


def _kd_value(fn, s, t, temperature):
    value, _, _ = _kd_run(fn, s, t, temperature)
    ref = float(reference(7)(mc.Tensor(s), t, temperature).data)
    expect(math.isclose(value, ref, rel_tol=1e-4, abs_tol=1e-5 * temperature ** 2),
           f"the loss should be {ref!r}, got {value!r}")


def _softmax64(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _kd_grad(fn, s, t, temperature):
    _, grad, _ = _kd_run(fn, s, t, temperature)
    s64, t64 = s.astype(np.float64) / temperature, t.astype(np.float64) / temperature
    want = temperature * (_softmax64(s64) - _softmax64(t64)) / s.shape[0]
    expect(np.allclose(grad, want, rtol=1e-3, atol=1e-5),
           f"d loss / d student_logits must be T * (p_s - p_t) / N = {show(want)}, got {show(grad)}")


def _kd_large_temperature(fn, s, t, temperature):
    big = 50.0
    value, _, _ = _kd_run(fn, s, t, big)
    p_t = _softmax64(t.astype(np.float64) / big)
    d = s.astype(np.float64) - t
    centred = d - (p_t * d).sum(axis=1, keepdims=True)
    want = float((0.5 * (p_t * centred ** 2).sum(axis=1)).mean())
    expect(math.isclose(value, want, rel_tol=0.5, abs_tol=1e-3),
           f"at T = {big} the loss must be close to (1/2) Var_p_t(s - t) (batch mean) = {want:.6g} -- that is what "
           f"the T^2 factor is for (Hinton et al. 2015, section 2.1) -- got {value!r}")


def _kd_teacher_constant(fn, s, t, temperature):
    _, _, teacher = _kd_run(fn, s, t, temperature, teacher_as_tensor=True)
    expect(teacher.grad is None or not np.any(teacher.grad),
           f"the teacher is a constant, yet it received the gradient {show(teacher.grad)}")


def _kd_zero(fn, s, t, temperature):
    shift = np.arange(s.shape[0], dtype=np.float32)[:, None] * 3
    value, grad, _ = _kd_run(fn, t + shift, t, temperature)
    expect(abs(value) <= 1e-4 * max(1.0, temperature ** 2) and np.allclose(grad, 0, atol=1e-5),
           f"a student equal to the teacher up to a constant per row (softmax ignores it) must have loss 0 and "
           f"gradient 0, got loss {value!r}, gradient {show(grad)}")


def _kd_nonnegative(fn, s, t, temperature):
    value, _, _ = _kd_run(fn, s, t, temperature)
    expect(value >= -1e-5 * max(1.0, temperature ** 2), f"a KL divergence is >= 0, got {value!r}")


def properties_7():
    return [Property(name, _case7(), _describe7, body) for name, body in [
        ("the gradient w.r.t. the student is T (p_s - p_t) / N", _kd_grad),
        ("for a large temperature T^2 KL tends to half the p_t-variance of s - t (the T^2 scaling)",
         _kd_large_temperature),
        ("the teacher is a constant (no gradient flows into it)", _kd_teacher_constant),
        ("the loss and gradient are 0 when the student matches the teacher", _kd_zero),
        ("the loss is never negative", _kd_nonnegative),
        ("the loss value matches the library's kd_loss", _kd_value)]]


# ==== 8. BF16 rounding ====================================================================================
_LOWER = st.one_of(st.sampled_from([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF]), st.integers(0, 0xFFFF))
_UPPER = st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0x7F7F, 0x7F80, 0xFF80, 0x3F80, 0x0000, 0x8000]))


@st.composite
def _case8(draw):
    words = draw(st.lists(st.tuples(_UPPER, _LOWER), min_size=1, max_size=6))
    bits = np.array([(u << 16) | low for u, low in words], dtype=np.uint32)
    return (bits,)


_examples8 = [(np.array([0x3F808000, 0x3F818000, 0x7F800001, 0x7F7FFFFF, 0x00000000], np.uint32),)]


def _describe8(bits):
    x = bits.view(np.float32)
    return f"x={show(x)} (float32 bits {', '.join(f'0x{b:08X}' for b in bits)})"


def _bf(fn, bits):
    x = bits.view(np.float32).copy()
    out = np.asarray(fn(x))
    expect(out.shape == x.shape, f"the result must have x's shape {x.shape}, got {out.shape}")
    expect(out.dtype == np.uint16, f"the result must be uint16 bit patterns, got dtype {out.dtype}")
    return out


def _hex(a):
    return "[" + ", ".join(f"0x{int(v):04X}" for v in a) + "]"


def _bf_matches(fn, bits):
    out, ref = _bf(fn, bits), reference(8)(bits.view(np.float32))
    finite = ~np.isnan(bits.view(np.float32))
    expect(np.array_equal(out[finite], ref[finite]), f"the BF16 bits should be {_hex(ref)}, got {_hex(out)}")


def _bf_nan(fn, bits):
    out = _bf(fn, bits).astype(np.uint32)
    nan = np.isnan(bits.view(np.float32))
    is_nan = ((out & 0x7F80) == 0x7F80) & ((out & 0x007F) != 0)
    expect(np.all(is_nan[nan]), f"NaN must stay NaN, got the patterns {_hex(out)} (a NaN needs exponent 0xFF and a "
           "non-zero mantissa; truncating a NaN whose payload is in the lower half gives inf)")


def _bf_nearest(fn, bits):
    out = _bf(fn, bits).astype(np.int64)
    for x_bits, o in zip(bits.astype(np.int64), out):
        x32 = np.uint32(x_bits).view(np.float32)
        if not np.isfinite(x32):
            continue
        x = float(x32)
        upper, lower = x_bits >> 16, x_bits & 0xFFFF
        expect(o in (upper, upper + 1), f"0x{o:04X} is not one of the two BF16 neighbours of x={x!r} "
               f"(0x{upper:04X} by truncation, 0x{upper + 1:04X} one step away from zero)")
        if lower == 0x8000:
            want = upper + (upper & 1)
            expect(o == want, f"x={x!r} lies exactly halfway between 0x{upper:04X} and 0x{upper + 1:04X}: ties go "
                   f"to the even pattern 0x{want:04X}, got 0x{o:04X}")
        else:
            down = float(np.uint32(upper << 16).view(np.float32))
            step = math.ldexp(1.0, int(((upper >> 7) & 0xFF) or 1) - 127 - 7)  # one BF16 ulp at this exponent
            up = down + math.copysign(step, down if down != 0 else x)
            nearer = upper if abs(x - down) < abs(x - up) else upper + 1
            expect(o == nearer, f"x={x!r} is nearer to 0x{nearer:04X} than to 0x{o:04X} "
                   f"(round to nearest, not {'truncation' if o == upper else 'away from zero'})")


def _bf_exact(fn, bits):
    exact = (bits & np.uint32(0xFFFF0000))
    x = exact.view(np.float32)
    out = np.asarray(fn(x.copy()))
    finite = np.isfinite(x)
    expect(np.array_equal(out[finite], (exact >> np.uint32(16)).astype(np.uint16)[finite]),
           f"values already in BF16 ({show(x)}) must keep their bits {_hex(exact >> np.uint32(16))}, got {_hex(out)}")


def properties_8():
    return [Property(name, _case8(), _describe8, body, _examples8) for name, body in [
        ("the result is the nearest BF16 value, ties to even", _bf_nearest),
        ("values already representable in BF16 are unchanged", _bf_exact),
        ("NaN stays NaN", _bf_nan),
        ("the bits match the library's bf16_bits", _bf_matches)]]


# ==== 9. Conv-BN fold =====================================================================================
@st.composite
def _case9(draw):
    c = draw(st.integers(1, 4))
    shape = (c,) + draw(st.sampled_from([(3,), (2, 2, 2), (1, 3, 3)]))
    w = np.array(draw(st.lists(st.floats(-2, 2, width=32), min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape)))), np.float32).reshape(shape)

    def vec(lo, hi):
        return np.array(draw(st.lists(st.floats(lo, hi, width=32), min_size=c, max_size=c)), np.float32)

    bias = draw(st.one_of(st.none(), st.just(1).map(lambda _: vec(-2, 2))))
    mean, var = vec(-3, 3), vec(0.015625, 4)
    gamma = draw(st.one_of(st.none(), st.just(1).map(lambda _: vec(-2, 2))))
    beta = draw(st.one_of(st.none(), st.just(1).map(lambda _: vec(-2, 2))))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return w, bias, mean, var, gamma, beta, eps


def _describe9(w, bias, mean, var, gamma, beta, eps):
    return (f"weight={show(w)}, bias={show(bias)}, running_mean={show(mean)}, running_var={show(var)}, "
            f"gamma={show(gamma)}, beta={show(beta)}, eps={eps!r}")


def _copy(a):
    return None if a is None else a.copy()


def _fold(fn, *case):
    w2, b2 = fn(*[_copy(a) if isinstance(a, np.ndarray) else a for a in case])
    w2, b2 = np.asarray(w2), np.asarray(b2)
    w = case[0]
    expect(w2.shape == w.shape and b2.shape == (w.shape[0],), f"expected a weight of shape {w.shape} and a bias of "
           f"shape ({w.shape[0]},), got {w2.shape} and {b2.shape}")
    expect(w2.dtype == w.dtype and b2.dtype == w.dtype, f"both results must have the weight's dtype {w.dtype}, got "
           f"{w2.dtype} and {b2.dtype}")
    return w2, b2


def _fold_matches(fn, *case):
    (w2, b2), (rw, rb) = _fold(fn, *case), reference(9)(*case)
    expect(np.allclose(w2, rw, rtol=1e-6, atol=1e-6), f"the folded weight should be {show(rw)}, got {show(w2)}")
    expect(np.allclose(b2, rb, rtol=1e-6, atol=1e-6), f"the folded bias should be {show(rb)}, got {show(b2)}")


def _fold_equivalent(fn, w, bias, mean, var, gamma, beta, eps):
    w2, b2 = _fold(fn, w, bias, mean, var, gamma, beta, eps)
    c = w.shape[0]
    x = np.random.default_rng(0).standard_normal((5, w[0].size))
    y = x @ w.reshape(c, -1).T.astype(np.float64) + (0 if bias is None else bias)
    g = 1.0 if gamma is None else gamma.astype(np.float64)
    bn = g * (y - mean) / np.sqrt(var.astype(np.float64) + eps) + (0 if beta is None else beta)
    folded = x @ w2.reshape(c, -1).T.astype(np.float64) + b2
    expect(np.allclose(folded, bn, rtol=1e-4, atol=1e-4), f"on the input x={show(x.round(3))} the layer followed by "
           f"BatchNorm gives {show(bn)}, the folded layer {show(folded)}")


def properties_9():
    return [Property(name, _case9(), _describe9, body) for name, body in [
        ("the folded layer computes layer-then-BatchNorm (eval mode)", _fold_equivalent),
        ("(w', b') match the library's fold_bn_params", _fold_matches)]]


# ==== 10. the BN-folding rewrite rule =====================================================================
@st.composite
def _case10(draw):
    return (draw(st.sampled_from(["conv2d", "linear"])), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
            draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2 ** 16)))


def _describe10(kind, cin, cout, bias, affine, relu, seed):
    layer = (f"Conv2d({cin}, {cout}, 3, padding=1, bias={bias}), BatchNorm2d({cout}, affine={affine})"
             if kind == "conv2d" else f"Linear({cin}, {cout}, bias={bias}), BatchNorm1d({cout}, affine={affine})")
    return f"the model Sequential({layer}{', ReLU()' if relu else ''}) with random statistics (seed {seed})"


def _model10(kind, cin, cout, bias, affine, relu, seed):
    mc.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if kind == "conv2d":
        layers = [mc.nn.Conv2d(cin, cout, 3, padding=1, bias=bias), mc.nn.BatchNorm2d(cout, affine=affine)]
        x = rng.standard_normal((2, cin, 4, 4)).astype(np.float32)
    else:
        layers = [mc.nn.Linear(cin, cout, bias=bias), mc.nn.BatchNorm1d(cout, affine=affine)]
        x = rng.standard_normal((3, cin)).astype(np.float32)
    bn = layers[1]
    bn.running_mean = rng.uniform(-2, 2, cout).astype(np.float32)
    bn.running_var = rng.uniform(0.1, 3, cout).astype(np.float32)
    if affine:
        bn.weight.data[...] = rng.uniform(-2, 2, cout)
        bn.bias.data[...] = rng.uniform(-2, 2, cout)
    model = mc.nn.Sequential(*(layers + ([mc.nn.ReLU()] if relu else []))).eval()
    return model, x


def _optimize10(fn, *case):
    from minicompress.graph.pattern import Rule
    from minicompress.graph.rules import FOLD_BN
    model, x = _model10(*case)
    rules = [Rule(rule.pattern, fn, rule.comment) for rule in FOLD_BN]
    fast, _ = mc.graph.optimize(model, x, passes=[rules])
    return model, x, fast


def _rule_outputs(fn, *case):
    model, x, fast = _optimize10(fn, *case)
    want, got = model(mc.Tensor(x)).data, fast(x).data
    expect(np.allclose(got, want, rtol=1e-4, atol=1e-4), f"the optimised model computes {show(got.ravel()[:8])}..., "
           f"the model {show(want.ravel()[:8])}...")


def _rule_fuses(fn, *case):
    model, x, fast = _optimize10(fn, *case)
    ops = [n.op for n in fast.graph.nodes]
    expect("batch_norm" not in ops, f"a batch_norm node is left after the rewrite: {ops}")
    expect(ops.count(case[0]) == 1, f"the graph must keep exactly one {case[0]} node, got {ops}")
    reference_graph, _ = mc.graph.optimize(model, x, passes=["fold_bn"])
    want = [(n.name, n.op, tuple(n.inputs)) for n in reference_graph.graph.nodes]
    got = [(n.name, n.op, tuple(n.inputs)) for n in fast.graph.nodes]
    expect(got == want, f"the rewritten graph (name, op, inputs) should be {want}, got {got}")


def properties_10():
    return [Property(name, _case10(), _describe10, body) for name, body in [
        ("batch_norm disappears and the layer keeps its name and inputs", _rule_fuses),
        ("the optimised model computes the same outputs as the model", _rule_outputs)]]


# ==== 11. unbroadcast =====================================================================================
@st.composite
def _case11(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
    big = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    big += tuple(draw(st.integers(1, 3)) if n == 1 else n for n in shape)
    values = draw(st.lists(st.integers(-5, 5), min_size=int(np.prod(big)), max_size=int(np.prod(big))))
    return np.array(values, np.float64).reshape(big), shape


def _describe11(grad, shape):
    return f"grad of shape {grad.shape} = {show(grad)}, shape={shape}"


def _unb(fn, grad, shape):
    out = np.asarray(fn(grad.copy(), shape))
    expect(out.shape == shape, f"the result must have the target shape {shape}, got {out.shape}")
    return out


def _unb_matches(fn, grad, shape):
    out, ref = _unb(fn, grad, shape), reference(11)(grad, shape)
    expect(np.array_equal(out, ref), f"the result should be {show(np.asarray(ref))}, got {show(out)}")


def _unb_sum(fn, grad, shape):
    out = _unb(fn, grad, shape)
    expect(out.sum() == grad.sum(), f"summing over broadcast axes keeps the total: {grad.sum()!r}, got {out.sum()!r}")


def _unb_undoes(fn, grad, shape):
    small = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape)
    spread = np.broadcast_to(small, grad.shape).copy()
    out = np.asarray(fn(spread, shape))
    copies = grad.size // max(small.size, 1)
    expect(out.shape == shape and np.array_equal(out, small * copies),
           f"np.broadcast_to({show(small)}, {grad.shape}) made {copies} copies of each entry, so unbroadcast must "
           f"give {show(small * copies)}, got {show(out)}")


def properties_11():
    return [Property(name, _case11(), _describe11, body) for name, body in [
        ("the result has the target shape and the same total", _unb_sum),
        ("unbroadcast undoes np.broadcast_to (each entry times its copies)", _unb_undoes),
        ("the result matches the library's unbroadcast", _unb_matches)]]


PROPERTIES = {1: properties_1, 2: properties_2, 3: properties_3, 4: properties_4, 5: properties_5,
              6: properties_6, 7: properties_7, 8: properties_8, 9: properties_9, 10: properties_10,
              11: properties_11}


# ==== the runner ==========================================================================================
def load_student(number, folder=HERE):
    """The function the student wrote in exNN_slug.py (imported fresh from the file)."""
    ex = EXERCISE_BY_NUMBER[number]
    path = make_exercises.stub_path(ex, folder)
    spec = importlib.util.spec_from_file_location(f"student_ex{number:02d}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, ex.function)


def is_reference_property(prop):
    """A property that compares with the library's function (the others come from the mathematics alone)."""
    return "the library" in prop.name


def check(number, fn=None, max_examples=30, math_only=False, shrink=True, folder=HERE):
    """Run exercise `number`'s properties on `fn` (default: the student's file). Returns a Result.

    math_only=True skips the comparisons with the library (the tests use it to show that the properties
    from the mathematics catch wrong solutions on their own); shrink=False reports the first failing example
    as found, without shrinking it (same verdict, same property, faster); folder: where the exNN files are."""
    if number not in PROPERTIES:
        raise ValueError(f"no exercise {number!r}; exercises are {sorted(PROPERTIES)}")
    ex = EXERCISE_BY_NUMBER[number]
    if fn is None:
        try:
            fn = load_student(number, folder)
        except Exception as exc:  # a syntax error, a bad import, a renamed function, ...
            name = os.path.basename(make_exercises.stub_path(ex, folder))
            return Result(number, "failed", f"Exercise {number}: cannot load {ex.function} from {name}: "
                          f"{type(exc).__name__}: {exc}", 0)
    counter = [0]
    for prop in PROPERTIES[number]():
        if math_only and is_reference_property(prop):
            continue
        try:
            prop.run(fn, max_examples, counter, shrink)
        except NotDone:
            return Result(number, "not done", f"Exercise {number} ({ex.function}): not done yet -- fill in the body "
                          f"in {os.path.basename(make_exercises.stub_path(ex))}", counter[0])
        except Failure as exc:
            return Result(number, "failed", f"Exercise {number} failed: property '{prop.name}'\n"
                          f"  counterexample: {exc}", counter[0])
    return Result(number, "passed", f"Exercise {number} passed ({counter[0]} examples)", counter[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check minicompress exercises with hypothesis properties.")
    parser.add_argument("numbers", nargs="+", help="exercise numbers, or 'all'")
    parser.add_argument("--max-examples", type=int, default=100, help="examples per property (default 100)")
    args = parser.parse_args(argv)
    numbers = sorted(PROPERTIES) if args.numbers == ["all"] else [int(n) for n in args.numbers]
    ok = True
    for number in numbers:
        result = check(number, max_examples=args.max_examples)
        print(result.message)
        ok = ok and result.status == "passed"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
