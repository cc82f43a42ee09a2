"""Exercise 7: the knowledge-distillation loss.

Hinton's soft-target loss T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch, written
with minicompress Tensor operations so that backward() gives the student's gradient. The teacher is
a constant: no gradient may flow into it.

Fill in the body of `kd_loss` below, then check it with

    python tutorials/exercises/check.py 7

Reference solution: `kd_loss` in minicompress/distill/losses.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
import numpy as np

from minicompress.core import Tensor
from minicompress.nn import functional as F


def kd_loss(student_logits, teacher_logits, temperature=4.0):
    """Hinton's soft-target loss T² · KL(p_teacher ‖ p_student), batch mean; a scalar Tensor."""
    # TODO(exercise 7): hints
    #   - Wrap the teacher as a constant: Tensor(teacher.data if it is a Tensor else teacher).
    #   - F.log_softmax(z / T, axis=1) for both; p_t = log_p_t.exp().
    #   - KL per row: (p_t * (log_p_t - log_p_s)).sum(axis=1); then .mean() over the batch.
    #   - Multiply by T ** 2 and return the scalar Tensor.
    raise NotImplementedError("Exercise 7: kd_loss is not written yet")
