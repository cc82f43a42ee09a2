"""Pruning schedules: the target sparsity as a pure function of the training step (Distiller's style).

Gradual pruning (AGP, Zhu & Gupta, "To prune, or not to prune", 2017), with t0 = begin_step,
n*dt = end_step - begin_step and pruning every `frequency` steps:

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3        for t0 <= t <= t0 + n dt

`t` is rounded down to the last pruning step, t = t0 + floor((step - t0) / frequency) * frequency, so the
sparsity changes only every `frequency` steps; before t0 the schedule gives s_i, from end_step on s_f.
The variants replace the cubic by another ramp of the progress p = (t - t0) / (n dt) in [0, 1]:

    linear       s_i + (s_f - s_i) p
    cosine       s_i + (s_f - s_i) (1 - cos(pi p)) / 2
    exponential  the kept fraction decays geometrically: 1 - s_t = (1 - s_i) ((1 - s_f)/(1 - s_i))^p
    one_shot     s_f from prune_step on, 0 before
    iterative    `rounds` prune-then-finetune rounds (Han et al. 2015): after round k (k = 1..rounds,
                 starting at begin_step + (k-1) round_steps) the sparsity is s_i + (s_f - s_i) k / rounds

`make_schedule(kind, ...)` binds everything but (step, final), which is the callable a Pruner takes.
"""
import math

from .masks import check_sparsity


def _check_steps(begin_step, end_step, frequency):
    for arg, value in (("begin_step", begin_step), ("end_step", end_step), ("frequency", frequency)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{arg} must be an int, got {type(value).__name__}")
    if begin_step < 0 or end_step <= begin_step:
        raise ValueError(f"need 0 <= begin_step < end_step, got begin_step={begin_step}, end_step={end_step}")
    if frequency < 1:
        raise ValueError(f"frequency must be >= 1, got {frequency}")


def progress(step, begin_step, end_step, frequency=1):
    """p in [0, 1]: how far `step` (rounded down to the last pruning step) is from begin to end."""
    _check_steps(begin_step, end_step, frequency)
    if step <= begin_step:
        return 0.0
    if step >= end_step:
        return 1.0
    t = begin_step + ((step - begin_step) // frequency) * frequency
    return (t - begin_step) / (end_step - begin_step)


def _endpoints(initial, final):
    return check_sparsity(initial), check_sparsity(final)


def agp_sparsity(step, begin_step, end_step, initial, final, frequency=1):
    """Zhu & Gupta's cubic: s_f + (s_i - s_f) (1 - p)^3."""
    initial, final = _endpoints(initial, final)
    p = progress(step, begin_step, end_step, frequency)
    return final + (initial - final) * (1.0 - p) ** 3


def linear_sparsity(step, begin_step, end_step, initial, final, frequency=1):
    initial, final = _endpoints(initial, final)
    return initial + (final - initial) * progress(step, begin_step, end_step, frequency)


def cosine_sparsity(step, begin_step, end_step, initial, final, frequency=1):
    initial, final = _endpoints(initial, final)
    p = progress(step, begin_step, end_step, frequency)
    return initial + (final - initial) * (1.0 - math.cos(math.pi * p)) / 2.0


def exponential_sparsity(step, begin_step, end_step, initial, final, frequency=1):
    initial, final = _endpoints(initial, final)
    p = progress(step, begin_step, end_step, frequency)
    return 1.0 - (1.0 - initial) * ((1.0 - final) / (1.0 - initial)) ** p


def one_shot_sparsity(step, prune_step, final):
    final = check_sparsity(final)
    return final if step >= prune_step else 0.0


def iterative_sparsity(step, begin_step, round_steps, rounds, final, initial=0.0):
    initial, final = _endpoints(initial, final)
    if not isinstance(rounds, int) or rounds < 1 or not isinstance(round_steps, int) or round_steps < 1:
        raise ValueError(f"rounds and round_steps must be ints >= 1, got {rounds}, {round_steps}")
    if step < begin_step:
        return initial
    done = min(rounds, (step - begin_step) // round_steps + 1)
    return initial + (final - initial) * done / rounds


_RAMPS = {"agp": agp_sparsity, "linear": linear_sparsity, "cosine": cosine_sparsity,
          "exponential": exponential_sparsity}


def make_schedule(kind="agp", *, begin_step=0, end_step=None, frequency=1, initial=0.0, rounds=None,
                  round_steps=None):
    """A callable `schedule(step, final) -> sparsity` for the Pruner.

    kind: "agp" | "linear" | "cosine" | "exponential" (need end_step), "one_shot" (prunes at begin_step),
    "iterative" (needs rounds and round_steps).
    """
    if kind in _RAMPS:
        if end_step is None:
            raise ValueError(f"make_schedule({kind!r}): end_step is required")
        _check_steps(begin_step, end_step, frequency)
        ramp = _RAMPS[kind]
        return lambda step, final: ramp(step, begin_step, end_step, initial, final, frequency)
    if kind == "one_shot":
        return lambda step, final: one_shot_sparsity(step, begin_step, final)
    if kind == "iterative":
        if rounds is None or round_steps is None:
            raise ValueError("make_schedule('iterative'): rounds and round_steps are required")
        return lambda step, final: iterative_sparsity(step, begin_step, round_steps, rounds, final, initial)
    raise ValueError(f"unknown schedule kind {kind!r}: expected one of "
                     f"{sorted(list(_RAMPS) + ['one_shot', 'iterative'])}")
