"""The classroom exercises (tutorials/exercises): every checker passes the reference solution (the library's
own code), fails deliberately wrong solutions with the property that should catch them, reports stubs as
"not done yet", and the committed stubs equal freshly generated ones.

The wrong solutions below are the mistakes students make (zero point from an unwidened range, strict
clamp bounds, truncation instead of rounding, keeping N+1, a missing T^2, BF16 by truncation, a fold
that forgets the mean, ...). Each is checked twice: with every property, and with the properties from the
mathematics alone (no comparison with the library), so both kinds are shown to find counterexamples.
"""
import filecmp
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import minicompress as mc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXERCISES_DIR = os.path.join(ROOT, "tutorials", "exercises")
if EXERCISES_DIR not in sys.path:
    sys.path.append(EXERCISES_DIR)  # appended: never shadows another module

import check  # noqa: E402
import make_exercises  # noqa: E402

pytestmark = pytest.mark.exercise
EXAMPLES = 25  # per property: the checkers find the wrong answers below within a handful
NUMBERS = sorted(check.PROPERTIES)
EPS32 = np.float32(np.finfo(np.float32).eps)


# ---- wrong solutions ---------------------------------------------------------------------------------------
def qparams_no_widening(min_val, max_val, qmin, qmax, symmetric=False):
    """Affine qparams from [min_val, max_val] without widening it to contain 0."""
    lo, hi = np.float32(min_val), np.float32(max_val)
    scale = np.maximum((hi - lo) / np.float32(qmax - qmin), EPS32).astype(np.float32)
    return scale, int(qmin - np.rint(lo / scale))


def qparams_truncated_zero_point(min_val, max_val, qmin, qmax, symmetric=False):
    """Correct scale, but the zero point truncates min_neg / scale instead of rounding it."""
    scale, zp = mc.quant.calc_qparams(min_val, max_val, qmin, qmax, symmetric)
    if symmetric:
        return scale, zp
    min_neg = np.minimum(np.asarray(min_val, np.float32), 0)
    zp = np.clip(qmin - np.trunc(min_neg / scale).astype(np.int64), qmin, qmax)
    return scale, (zp if np.ndim(min_val) else int(zp))


def qparams_unsigned_symmetric_127(min_val, max_val, qmin, qmax, symmetric=False):
    """Symmetric unsigned zero point (qmin + qmax) // 2 (127 for 0..255) instead of (qmin + qmax + 1) // 2."""
    scale, zp = mc.quant.calc_qparams(min_val, max_val, qmin, qmax, symmetric)
    if symmetric and qmin >= 0:
        zp = np.full(np.shape(zp), (qmin + qmax) // 2, dtype=np.int64)
        zp = zp if np.ndim(min_val) else int(zp)
    return scale, zp


def ste_strict_bounds(x, scale, zero_point, qmin, qmax, grad):
    q = np.rint(x * (np.float32(1) / np.float32(scale))) + zero_point
    return grad * ((q > qmin) & (q < qmax))


def ste_no_mask(x, scale, zero_point, qmin, qmax, grad):
    return grad.copy()


def ste_mask_without_zero_point(x, scale, zero_point, qmin, qmax, grad):
    q = np.rint(x * (np.float32(1) / np.float32(scale)))
    return grad * ((q >= qmin) & (q <= qmax))


def multiplier_truncated(real_multiplier):
    if real_multiplier == 0:
        return 0, 0
    mantissa, exponent = math.frexp(real_multiplier)
    return int(mantissa * 2 ** 31), -exponent


def multiplier_not_renormalised(real_multiplier):
    if real_multiplier == 0:
        return 0, 0
    mantissa, exponent = math.frexp(real_multiplier)
    return int(round(mantissa * 2 ** 31)), -exponent


def _nm(scores, n, m, keep, take_abs=True, move=True):
    s = np.abs(scores) if take_abs else np.asarray(scores, np.float64)
    moved = np.moveaxis(s, 1, -1) if move else s
    groups = moved.reshape(-1, m)
    order = np.argsort(groups, axis=1, kind="stable")
    mask = np.ones(groups.shape, dtype=bool)
    np.put_along_axis(mask, order[:, : m - keep], False, axis=1)
    mask = mask.reshape(moved.shape)
    return np.moveaxis(mask, -1, 1) if move else mask


def nm_keeps_n_plus_1(scores, n, m):
    return _nm(scores, n, m, min(n + 1, m))


def nm_without_abs(scores, n, m):
    return _nm(scores, n, m, n, take_abs=False)


def nm_groups_along_last_axis(scores, n, m):
    s = np.asarray(scores)
    if s.ndim == 2:
        return _nm(s, n, m, n)
    return _nm(s, n, m, n, move=False) if s.shape[-1] % m == 0 else np.ones(s.shape, bool)


def agp_square(step, begin_step, end_step, initial, final, frequency=1):
    p = mc.prune.schedule.progress(step, begin_step, end_step, frequency)
    return final + (initial - final) * (1 - p) ** 2


def agp_ignores_frequency(step, begin_step, end_step, initial, final, frequency=1):
    p = min(max((step - begin_step) / (end_step - begin_step), 0.0), 1.0)
    return final + (initial - final) * (1 - p) ** 3


def agp_off_by_one_end(step, begin_step, end_step, initial, final, frequency=1):
    """Treats end_step as still ramping: the schedule reaches final one step late."""
    return mc.prune.agp_sparsity(step, begin_step, end_step + 1, initial, final, frequency)


def soft_threshold_elementwise(groups, threshold):
    """Plain lasso: every element shrunk on its own (not a group operation)."""
    return (np.sign(groups) * np.maximum(np.abs(groups) - threshold, 0)).astype(np.float32)


def group_threshold_without_max(groups, threshold):
    norms = np.linalg.norm(groups.astype(np.float64), axis=1)
    factor = 1 - threshold / np.where(norms > 0, norms, np.inf)
    return (groups * factor[:, None]).astype(np.float32)


def _kd(student, teacher, temperature, scale, reverse=False, detach=True, reduce="mean"):
    F = mc.nn.functional
    t = teacher.data if isinstance(teacher, mc.Tensor) else teacher
    teacher_t = mc.Tensor(t) if detach else (teacher if isinstance(teacher, mc.Tensor) else mc.Tensor(t))
    log_ps = F.log_softmax(student / temperature, axis=1)
    log_pt = F.log_softmax(teacher_t / temperature, axis=1)
    if reverse:
        rows = (log_ps.exp() * (log_ps - log_pt)).sum(axis=1)
    else:
        rows = (log_pt.exp() * (log_pt - log_ps)).sum(axis=1)
    return (rows.mean() if reduce == "mean" else rows.sum()) * scale


def kd_without_t_squared(student_logits, teacher_logits, temperature=4.0):
    return _kd(student_logits, teacher_logits, temperature, 1.0)


def kd_reversed_kl(student_logits, teacher_logits, temperature=4.0):
    return _kd(student_logits, teacher_logits, temperature, temperature ** 2, reverse=True)


def kd_teacher_not_detached(student_logits, teacher_logits, temperature=4.0):
    return _kd(student_logits, teacher_logits, temperature, temperature ** 2, detach=False)


def kd_batch_sum(student_logits, teacher_logits, temperature=4.0):
    return _kd(student_logits, teacher_logits, temperature, temperature ** 2, reduce="sum")


def bf16_truncate(x):
    return (np.asarray(x, np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def bf16_round_half_up(x):
    u = np.asarray(x, np.float32).view(np.uint32)
    return ((u + np.uint32(0x8000)) >> np.uint32(16)).astype(np.uint16)


def bf16_nan_unaware(x):
    u = np.asarray(x, np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def bf16_drops_sign(x):
    """Works on |x| and forgets to put the sign bit back."""
    return bf16_nan_unaware(np.abs(np.asarray(x, np.float32)))


def _fold(weight, bias, running_mean, running_var, gamma, beta, eps, use_mean=True, use_eps=True, use_beta=True):
    c = weight.shape[0]
    s = np.asarray(1.0 if gamma is None else gamma, np.float64) / np.sqrt(
        np.asarray(running_var, np.float64) + (eps if use_eps else 0.0))
    s = np.broadcast_to(s, (c,))
    b = np.zeros(c) if bias is None else np.asarray(bias, np.float64)
    new_b = (b - (np.asarray(running_mean, np.float64) if use_mean else 0.0)) * s
    if beta is not None and use_beta:
        new_b = new_b + beta
    new_w = weight * s.reshape((c,) + (1,) * (weight.ndim - 1))
    return new_w.astype(weight.dtype), new_b.astype(weight.dtype)


def fold_forgets_mean(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    return _fold(weight, bias, running_mean, running_var, gamma, beta, eps, use_mean=False)


def fold_forgets_eps(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    return _fold(weight, bias, running_mean, running_var, gamma, beta, eps, use_eps=False)


def fold_rule_forgets_beta(graph, m):
    layer, bn = m["layer"], m.root
    p = bn.params
    weight, bias = mc.graph.fold_bn_params(layer.params["weight"], layer.params.get("bias"), p["running_mean"],
                                           p["running_var"], p.get("weight"), None, bn.attrs["eps"])
    return mc.graph.Node(layer.name, layer.op, layer.inputs, layer.attrs, {"weight": weight, "bias": bias})


def fold_rule_keeps_bn_name(graph, m):
    """Folds correctly but names the result after the BatchNorm (the layer's name is lost)."""
    layer, bn = m["layer"], m.root
    p = bn.params
    weight, bias = mc.graph.fold_bn_params(layer.params["weight"], layer.params.get("bias"), p["running_mean"],
                                           p["running_var"], p.get("weight"), p.get("bias"), bn.attrs["eps"])
    return mc.graph.Node(bn.name, layer.op, layer.inputs, layer.attrs, {"weight": weight, "bias": bias})


def unbroadcast_leading_only(grad, shape):
    extra = grad.ndim - len(shape)
    return grad.sum(axis=tuple(range(extra))) if extra > 0 else grad


def unbroadcast_without_keepdims(grad, shape):
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes) if axes else grad


def qparams_no_eps_floor(min_val, max_val, qmin, qmax, symmetric=False):
    """Right formulas, but a constant tensor (min = max = 0) gets scale 0."""
    scale, zp = mc.quant.calc_qparams(min_val, max_val, qmin, qmax, symmetric)
    lo, hi = np.minimum(np.float32(min_val), 0), np.maximum(np.float32(max_val), 0)
    return np.where(hi - lo == 0, np.float32(0), scale).astype(np.float32)[()], zp


def ste_returns_the_mask(x, scale, zero_point, qmin, qmax, grad):
    q = np.rint(x * (np.float32(1) / np.float32(scale))) + zero_point
    return ((q >= qmin) & (q <= qmax)).astype(np.float32)


def agp_backwards(step, begin_step, end_step, initial, final, frequency=1):
    p = mc.prune.schedule.progress(step, begin_step, end_step, frequency)
    return initial + (final - initial) * (1 - p) ** 3


def group_threshold_forgets_norm(groups, threshold):
    norms = np.linalg.norm(groups.astype(np.float64), axis=1)
    return (groups * np.maximum(norms - threshold, 0)[:, None]).astype(np.float32)


def kd_teacher_not_tempered(student_logits, teacher_logits, temperature=4.0):
    F = mc.nn.functional
    t = teacher_logits.data if isinstance(teacher_logits, mc.Tensor) else teacher_logits
    log_ps = F.log_softmax(student_logits / temperature, axis=1)
    log_pt = F.log_softmax(mc.Tensor(t), axis=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(axis=1).mean() * temperature ** 2


def kd_negated(student_logits, teacher_logits, temperature=4.0):
    return kd_reversed_kl(student_logits, teacher_logits, temperature) * -1.0


def fold_forgets_beta(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    return _fold(weight, bias, running_mean, running_var, gamma, beta, eps, use_beta=False)


def unbroadcast_mean(grad, shape):
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.mean(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.mean(axis=axes, keepdims=True) if axes else grad


# (exercise, wrong solution, words of the property that must report it first). When that property is a
# comparison with the library, the properties from the mathematics alone must also catch it.
WRONG = [
    (1, qparams_no_widening, "0.0 is exactly representable"),
    (1, qparams_truncated_zero_point, "covers the range"),
    (1, qparams_unsigned_symmetric_127, "symmetric zero_point"),
    (1, qparams_no_eps_floor, "float32 eps"),
    (2, ste_strict_bounds, "including both ends"),
    (2, ste_no_mask, "clamped values"),
    (2, ste_mask_without_zero_point, "including both ends"),
    (2, ste_returns_the_mask, "incoming gradient or 0"),
    (3, multiplier_truncated, "relative 2^-31"),
    (3, multiplier_not_renormalised, "[2^30, 2^31)"),
    (4, nm_keeps_n_plus_1, "keeps exactly n"),
    (4, nm_without_abs, "largest |scores|"),
    (4, nm_groups_along_last_axis, "keeps exactly n"),
    (5, agp_square, "halfway"),
    (5, agp_ignores_frequency, "pruning steps"),
    (5, agp_off_by_one_end, "endpoints"),
    (5, agp_backwards, "endpoints"),
    (6, soft_threshold_elementwise, "keep their direction"),
    (6, group_threshold_without_max, "exactly zero"),
    (6, group_threshold_forgets_norm, "keep their direction"),
    (7, kd_without_t_squared, "T (p_s - p_t) / N"),
    (7, kd_reversed_kl, "T (p_s - p_t) / N"),
    (7, kd_teacher_not_detached, "teacher is a constant"),
    (7, kd_batch_sum, "T (p_s - p_t) / N"),
    (7, kd_teacher_not_tempered, "T (p_s - p_t) / N"),
    (8, bf16_truncate, "nearest"),
    (8, bf16_round_half_up, "ties to even"),
    (8, bf16_nan_unaware, "NaN stays NaN"),
    (9, fold_forgets_mean, "layer-then-BatchNorm"),
    (9, fold_forgets_eps, "layer-then-BatchNorm"),
    (9, fold_forgets_beta, "layer-then-BatchNorm"),
    (10, fold_rule_forgets_beta, "same outputs"),
    (10, fold_rule_keeps_bn_name, "keeps its name"),
    (11, unbroadcast_leading_only, "target shape"),
    (11, unbroadcast_without_keepdims, "target shape"),
    (11, unbroadcast_mean, "same total"),
]

# Every property from the mathematics, run on its own, catches at least this wrong solution.
CAUGHT_ALONE = [
    (1, "0.0 is exactly representable", qparams_no_widening),
    (1, "float32 eps", qparams_no_eps_floor),
    (1, "covers the range", qparams_truncated_zero_point),
    (1, "symmetric zero_point", qparams_unsigned_symmetric_127),
    (2, "including both ends", ste_strict_bounds),
    (2, "clamped values", ste_no_mask),
    (2, "incoming gradient or 0", ste_returns_the_mask),
    (3, "[2^30, 2^31)", multiplier_not_renormalised),
    (3, "relative 2^-31", multiplier_truncated),
    (4, "keeps exactly n", nm_keeps_n_plus_1),
    (4, "largest |scores|", nm_without_abs),
    (5, "endpoints", agp_off_by_one_end),
    (5, "monotonically", agp_backwards),
    (5, "pruning steps", agp_ignores_frequency),
    (5, "halfway", agp_square),
    (6, "exactly zero", group_threshold_without_max),
    (6, "keep their direction", soft_threshold_elementwise),
    (6, "threshold 0 changes nothing", group_threshold_forgets_norm),
    (7, "T (p_s - p_t) / N", kd_reversed_kl),
    (7, "T^2 scaling", kd_without_t_squared),
    (7, "teacher is a constant", kd_teacher_not_detached),
    (7, "student matches the teacher", kd_teacher_not_tempered),
    (7, "never negative", kd_negated),
    (8, "nearest", bf16_truncate),
    (8, "ties to even", bf16_round_half_up),
    (8, "already representable", bf16_drops_sign),
    (8, "NaN stays NaN", bf16_nan_unaware),
    (9, "layer-then-BatchNorm", fold_forgets_mean),
    (10, "same outputs", fold_rule_forgets_beta),
    (10, "keeps its name", fold_rule_keeps_bn_name),
    (11, "target shape", unbroadcast_leading_only),
    (11, "broadcast_to", unbroadcast_mean),
]


# ---- (a) the reference solutions pass ------------------------------------------------------------------------
@pytest.mark.parametrize("number", NUMBERS)
def test_reference_solution_passes(number):
    result = check.check(number, check.reference(number), max_examples=EXAMPLES)
    assert result.status == "passed", result.message
    assert result.message == f"Exercise {number} passed ({result.examples} examples)"
    assert result.examples >= EXAMPLES * len(check.PROPERTIES[number]())  # every property really ran


def test_there_are_at_least_ten_exercises_each_with_a_math_property():
    assert len(NUMBERS) >= 10
    assert [ex.number for ex in make_exercises.EXERCISES] == NUMBERS
    for number in NUMBERS:
        props = check.PROPERTIES[number]()
        assert any(not check.is_reference_property(p) for p in props), number


# ---- (b) wrong solutions fail, named by the property ---------------------------------------------------------
@pytest.mark.parametrize("number, wrong, words", WRONG, ids=[w[1].__name__ for w in WRONG])
def test_wrong_solution_fails(number, wrong, words):
    result = check.check(number, wrong, max_examples=EXAMPLES, shrink=False)
    assert result.status == "failed", f"{wrong.__name__} was not caught: {result.message}"
    first_line = result.message.split("\n")[0]
    assert first_line.startswith(f"Exercise {number} failed: property '")
    assert "counterexample:" in result.message
    assert words in first_line, result.message
    if "the library" in first_line:
        alone = check.check(number, wrong, max_examples=EXAMPLES, math_only=True, shrink=False)
        assert alone.status == "failed", f"the properties from the mathematics alone miss {wrong.__name__}"


def _property(number, words):
    found = [p for p in check.PROPERTIES[number]() if words in p.name]
    assert len(found) == 1, (number, words, [p.name for p in check.PROPERTIES[number]()])
    return found[0]


@pytest.mark.parametrize("number, words, wrong", CAUGHT_ALONE, ids=[f"{c[0]}-{c[2].__name__}" for c in CAUGHT_ALONE])
def test_each_math_property_catches_a_wrong_solution_on_its_own(number, words, wrong):
    prop = _property(number, words)
    assert not check.is_reference_property(prop)
    with pytest.raises(check.Failure):
        prop.run(wrong, EXAMPLES, [0], shrink=False)
    prop.run(check.reference(number), EXAMPLES, [0], shrink=False)  # and the reference passes it


def test_every_math_property_is_covered_by_a_wrong_solution():
    covered = {(number, _property(number, words).name) for number, words, _ in CAUGHT_ALONE}
    for number in NUMBERS:
        for prop in check.PROPERTIES[number]():
            if not check.is_reference_property(prop):
                assert (number, prop.name) in covered, (number, prop.name)


def test_every_exercise_has_a_wrong_solution_tested():
    assert sorted({w[0] for w in WRONG}) == NUMBERS


def test_failure_message_shows_the_shrunk_counterexample_in_words():
    result = check.check(3, multiplier_not_renormalised, max_examples=EXAMPLES)
    assert "m0 is in [2^30, 2^31)" in result.message
    assert "counterexample: M=" in result.message and "m0=2147483648 is not in" in result.message


def test_a_crashing_solution_is_reported_with_its_input():
    def crashes(real_multiplier):
        raise ZeroDivisionError("oops")
    result = check.check(3, crashes, max_examples=EXAMPLES)
    assert result.status == "failed"
    assert "your function raised ZeroDivisionError: oops" in result.message and "M=" in result.message


def test_shrinking_finds_the_smallest_tie_for_bf16():
    result = check.check(8, bf16_round_half_up, max_examples=EXAMPLES)
    assert "ties to even" in result.message
    assert "lies exactly halfway" in result.message  # the shrunk example is an exact tie


def test_verdicts_are_deterministic():
    first = check.check(8, bf16_round_half_up, max_examples=EXAMPLES)
    assert check.check(8, bf16_round_half_up, max_examples=EXAMPLES) == first


# ---- solutions written from the hints alone (not copied from the library) pass ---------------------------------
def student_calc_qparams(min_val, max_val, qmin, qmax, symmetric=False):
    lo, hi = np.asarray(min_val, np.float32), np.asarray(max_val, np.float32)
    min_neg, max_pos = np.minimum(lo, np.float32(0)), np.maximum(hi, np.float32(0))
    if symmetric:
        scale = np.maximum(np.maximum(-min_neg, max_pos) / np.float32((qmax - qmin) / 2), EPS32)
        zp = np.full(lo.shape, 0 if qmin < 0 else (qmin + qmax + 1) // 2, dtype=np.int64)
    else:
        scale = np.maximum((max_pos - min_neg) / np.float32(qmax - qmin), EPS32)
        zp = np.clip(qmin - np.rint(min_neg / scale).astype(np.int64), qmin, qmax)
    scale = scale.astype(np.float32)
    return (scale, zp) if lo.ndim else (np.float32(scale), int(zp))


def student_quantize_multiplier(real_multiplier):
    if real_multiplier == 0:
        return 0, 0
    mantissa, exponent = math.frexp(real_multiplier)
    m0 = round(mantissa * 2 ** 31)
    if m0 == 2 ** 31:
        m0 //= 2
        exponent += 1
    if -exponent > 62:
        return 0, 0
    return m0, -exponent


def student_kd_loss(student_logits, teacher_logits, temperature=4.0):
    F = mc.nn.functional
    t = mc.Tensor(teacher_logits.data if isinstance(teacher_logits, mc.Tensor) else teacher_logits)
    log_ps = F.log_softmax(student_logits / temperature, axis=1)
    log_pt = F.log_softmax(t / temperature, axis=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(axis=1).mean() * temperature ** 2


def student_bf16_bits(x):
    u = np.asarray(x, np.float32).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = np.isnan(x)
    r = np.where(nan, (u | np.uint32(0x00400000)) >> np.uint32(16), r)
    return r.astype(np.uint16)


def student_fold_bn_params(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    c = weight.shape[0]
    s = (1.0 if gamma is None else np.float64(gamma)) / np.sqrt(np.float64(running_var) + eps) * np.ones(c)
    b = (0.0 if bias is None else np.float64(bias)) - running_mean
    b = b * s + (0.0 if beta is None else beta)
    return (weight * s.reshape((c,) + (1,) * (weight.ndim - 1))).astype(weight.dtype), b.astype(weight.dtype)


@pytest.mark.parametrize("number, solution", [(1, student_calc_qparams), (3, student_quantize_multiplier),
                                              (7, student_kd_loss), (8, student_bf16_bits),
                                              (9, student_fold_bn_params)])
def test_a_solution_written_from_the_hints_passes(number, solution):
    result = check.check(number, solution, max_examples=EXAMPLES)
    assert result.status == "passed", result.message


# ---- (c) the stubs are generated from the library and up to date -----------------------------------------------
def test_committed_stubs_equal_freshly_generated_ones(tmp_path):
    written = make_exercises.write_all(str(tmp_path))
    assert len(written) == len(make_exercises.EXERCISES)
    for path in written:
        committed = os.path.join(EXERCISES_DIR, os.path.basename(path))
        assert os.path.exists(committed), f"{committed} is missing: run python tutorials/exercises/make_exercises.py"
        assert filecmp.cmp(path, committed, shallow=False), \
            f"{os.path.basename(path)} is out of date: run python tutorials/exercises/make_exercises.py"


@pytest.mark.parametrize("number", NUMBERS)
def test_stub_keeps_signature_and_docstring_of_the_reference(number):
    import inspect
    student = check.load_student(number)
    ref = check.reference(number)
    assert inspect.signature(student) == inspect.signature(ref)
    if ref.__doc__:
        assert student.__doc__ == ref.__doc__
    source = inspect.getsource(student)
    assert f"raise NotImplementedError(\"Exercise {number}:" in source
    assert "TODO(exercise" in source


def test_generator_replaces_the_body_found_with_ast():
    ex = make_exercises.Exercise(99, "demo", "minicompress.core.elementwise", "unbroadcast", "demo", "Do it.",
                                 ["first hint"], ["import numpy as np"])
    text = make_exercises.render(ex)
    assert "grad.sum(" not in text                      # the solution is gone
    assert 'def unbroadcast(grad, shape):\n    """Sum `grad` down to `shape`' in text
    assert "#   - first hint" in text
    namespace = {}
    exec(compile(text, "demo", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="Exercise 99"):
        namespace["unbroadcast"](np.zeros(3), (3,))


# ---- (d) the stubs say "not done yet" ---------------------------------------------------------------------------
@pytest.mark.parametrize("number", NUMBERS)
def test_stub_reports_not_done_yet(number):
    result = check.check(number, max_examples=EXAMPLES)
    assert result.status == "not done", result.message
    assert "not done yet" in result.message and f"Exercise {number}" in result.message


def test_a_finished_stub_passes_and_a_broken_one_is_reported(tmp_path):
    ex = check.EXERCISE_BY_NUMBER[11]
    stub = open(make_exercises.stub_path(ex), encoding="utf-8").read()
    finished = stub.replace('    raise NotImplementedError("Exercise 11: unbroadcast is not written yet")',
                            "    extra = grad.ndim - len(shape)\n"
                            "    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad\n"
                            "    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)\n"
                            "    return grad.sum(axis=axes, keepdims=True) if axes else grad")
    assert finished != stub
    path = make_exercises.stub_path(ex, str(tmp_path))
    with open(path, "w", encoding="utf-8") as f:
        f.write(finished)
    assert check.check(11, max_examples=EXAMPLES, folder=str(tmp_path)).status == "passed"
    with open(path, "w", encoding="utf-8") as f:
        f.write(finished.replace("def unbroadcast(grad, shape):", "def unbroadcast(grad, shape)"))
    result = check.check(11, max_examples=EXAMPLES, folder=str(tmp_path))
    assert result.status == "failed" and "cannot load unbroadcast from ex11_unbroadcast.py: SyntaxError" in result.message


def test_runner_command_line():
    cmd = [sys.executable, os.path.join(EXERCISES_DIR, "check.py"), "5", "--max-examples", "5"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 1, out.stderr
    assert out.stdout.strip() == "Exercise 5 (agp_sparsity): not done yet -- fill in the body in ex05_agp_sparsity.py"


def test_unknown_exercise_number_is_a_clear_error():
    with pytest.raises(ValueError, match="no exercise 99"):
        check.check(99)
