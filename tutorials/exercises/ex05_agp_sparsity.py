"""Exercise 5: the gradual (AGP) pruning schedule.

Zhu & Gupta's cubic schedule s_t = s_f + (s_i - s_f)(1 - p)^3, with the progress p computed from the
step rounded down to the last pruning step (every `frequency` steps).

Fill in the body of `agp_sparsity` below, then check it with

    python tutorials/exercises/check.py 5

Reference solution: `agp_sparsity` in minicompress/prune/schedule.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""


def agp_sparsity(step, begin_step, end_step, initial, final, frequency=1):
    """Zhu & Gupta's cubic: s_f + (s_i - s_f) (1 - p)^3."""
    # TODO(exercise 5): hints
    #   - Before (or at) begin_step p = 0; from end_step on p = 1.
    #   - Otherwise t = begin_step + ((step - begin_step) // frequency) * frequency and p = (t -
    #     begin_step) / (end_step - begin_step).
    #   - Return a float.
    raise NotImplementedError("Exercise 5: agp_sparsity is not written yet")
