"""Distillation losses on logits (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).

With student logits s and teacher logits t, shape (N, C), and temperature T > 0:

    p_t = softmax(t / T),   p_s = softmax(s / T)
    kd_loss       = T² · (1/N) Σ_i KL(p_t,i ‖ p_s,i) = T² · (1/N) Σ_i Σ_c p_t,ic (log p_t,ic - log p_s,ic)
    d kd / d s    = T · (p_s - p_t) / N                 (the teacher is a constant: no gradient to it)

Why T²: the gradient of the KL term scales as 1/T (and, for large T, as 1/T² in the logit differences),
so multiplying by T² keeps the soft term's gradient comparable when T changes (Hinton et al., §2).
High T flattens both distributions and exposes the "dark knowledge" -- how the teacher ranks wrong classes.

    distillation_loss  = α · kd_loss + (1 - α) · cross_entropy(s, targets)      (Hinton's combined loss)
    soft_cross_entropy = T² · (1/N) Σ_i -Σ_c p_t,ic log p_s,ic  = kd_loss + T² · mean entropy(p_t)
                         (same gradient as kd_loss; the form used when only soft targets are stored)
    logit_mse_loss     = (1/(N C)) Σ (s - t)²                 (Ba & Caruana, "Do deep nets really need to be
                         deep?", 2014: matching logits, the T -> ∞ limit of KD up to a constant)

Inputs are checked: same 2-D shape (N, C), finite values (a NaN from a diverging teacher or student is
reported here, not silently turned into a NaN training step), T > 0 finite, α in [0, 1].
"""
import math

import numpy as np

from ..core import Function, Tensor
from ..nn import functional as F


def _check_logits(student_logits, teacher_logits, op):
    if not isinstance(student_logits, Tensor):
        raise TypeError(f"{op}: student_logits must be a Tensor (it needs a gradient), got "
                        f"{type(student_logits).__name__}")
    teacher = teacher_logits.data if isinstance(teacher_logits, Tensor) else np.asarray(teacher_logits)
    if student_logits.ndim != 2 or teacher.shape != student_logits.shape:
        raise ValueError(f"{op}: student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher.shape)} must have the same shape (N, C)")
    for name, arr in (("student_logits", student_logits.data), ("teacher_logits", teacher)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{op}: {name} contains NaN or inf ({int((~np.isfinite(arr)).sum())} entries); "
                             "check the model's outputs (diverged training, bad inputs)")
    return teacher


def _check_temperature(temperature, op):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{op}: temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def _log_softmax64(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class KDLossFn(Function):
    """T² · mean_i KL(softmax(t_i/T) ‖ softmax(s_i/T)), computed in float64; gradient T (p_s - p_t) / N."""
    name = "kd_loss"

    @staticmethod
    def forward(ctx, student, teacher, temperature, cross_entropy_form):
        log_ps = _log_softmax64(student.astype(np.float64) / temperature)
        log_pt = _log_softmax64(teacher.astype(np.float64) / temperature)
        pt = np.exp(log_pt)
        n = student.shape[0]
        if cross_entropy_form:
            rows = -(pt * log_ps).sum(axis=1)
        else:
            rows = np.maximum((pt * (log_pt - log_ps)).sum(axis=1), 0.0)   # KL >= 0 (clip rounding noise)
        ctx.save_for_backward(np.exp(log_ps) - pt)
        ctx.scale = temperature / n
        return np.asarray(temperature ** 2 * rows.mean(), dtype=student.dtype)

    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved
        return ((grad * ctx.scale * diff).astype(grad.dtype), None, None, None)


def kd_loss(student_logits, teacher_logits, temperature=4.0):
    """Hinton's soft-target loss T² · KL(p_teacher ‖ p_student), batch mean; a scalar Tensor."""
    teacher = _check_logits(student_logits, teacher_logits, "kd_loss")
    temperature = _check_temperature(temperature, "kd_loss")
    return KDLossFn.apply(student_logits, teacher, temperature, False)


def soft_cross_entropy(student_logits, teacher_logits, temperature=4.0):
    """T² · mean_i H(p_teacher, p_student): cross-entropy against the teacher's soft targets."""
    teacher = _check_logits(student_logits, teacher_logits, "soft_cross_entropy")
    temperature = _check_temperature(temperature, "soft_cross_entropy")
    return KDLossFn.apply(student_logits, teacher, temperature, True)


def logit_mse_loss(student_logits, teacher_logits):
    """mean((s - t)²) over all entries: regress the teacher's logits (Ba & Caruana, 2014)."""
    teacher = _check_logits(student_logits, teacher_logits, "logit_mse_loss")
    return F.mse_loss(student_logits, Tensor(teacher, dtype=student_logits.dtype))


def distillation_loss(student_logits, teacher_logits, targets, temperature=4.0, alpha=0.9):
    """α · kd_loss(s, t, T) + (1 - α) · cross_entropy(s, targets)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation_loss: alpha must be a number in [0, 1], got {alpha!r}")
    soft = kd_loss(student_logits, teacher_logits, temperature)
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if targets.shape != (student_logits.shape[0],):
        raise ValueError(f"distillation_loss: targets have shape {targets.shape}, expected "
                         f"({student_logits.shape[0]},) -- one class index per row of the logits")
    hard = F.cross_entropy(student_logits, targets)
    return soft * float(alpha) + hard * (1.0 - float(alpha))
