"""`Distiller`: knowledge distillation as a `fit` callback -- the training loop stays fit's own.

    fit(student, (X, y), callbacks=[Distiller(teacher, temperature=4.0, alpha=0.9)])

Each step, in `on_loss` (after fit computed logits = student(x) and its hard loss L_hard = loss_fn(logits, y)):

    teacher logits t = teacher(x)          (eval mode, no_grad: the teacher is frozen)
    loss = α · L_soft(s, t, T) + (1 - α) · L_hard + Σ_k β_k · L_k        (L_k: FeatureDistiller/AttentionDistiller)

L_soft is `kd_loss` (default), `soft_cross_entropy` or `logit_mse_loss` (soft="kl" | "soft_ce" | "mse").
Rows whose label is -100 (cross_entropy's ignore_index) are *unlabelled*: they get only the soft term -- train
on a few labels plus the teacher's soft labels on the rest (Hinton et al.'s "transfer set"). A batch with no
labelled row uses L_hard = 0.

Works with any other callback that changes the student: distil into a pruned student (the pruner's masks
are re-applied in its on_step_end) or a fake-quantized student from `prepare_qat` (it is just a model).
The projections of FeatureDistillers are trained too: on_train_begin adds them to fit's optimiser as a new
parameter group (and to the lr schedule). Hooks are removed in on_train_end.
"""
import numpy as np

from ..core import Tensor, no_grad
from .losses import kd_loss, logit_mse_loss, soft_cross_entropy

SOFT_LOSSES = {"kl": kd_loss, "soft_ce": soft_cross_entropy, "mse": lambda s, t, temperature: logit_mse_loss(s, t)}
UNLABELLED = -100


class Distiller:
    def __init__(self, teacher, temperature=4.0, alpha=0.9, soft="kl", extra_losses=(), extra_weights=None):
        if not callable(teacher):
            raise TypeError(f"Distiller: teacher must be a model (callable), got {type(teacher).__name__}")
        if soft not in SOFT_LOSSES:
            raise ValueError(f"Distiller: soft must be one of {sorted(SOFT_LOSSES)}, got {soft!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Distiller: alpha must be a number in [0, 1], got {alpha!r}")
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"Distiller: temperature must be a finite number > 0, got {temperature!r}")
        self.teacher, self.temperature, self.alpha, self.soft = teacher, float(temperature), float(alpha), soft
        self.extra_losses = list(extra_losses)
        weights = [1.0] * len(self.extra_losses) if extra_weights is None else list(extra_weights)
        if len(weights) != len(self.extra_losses):
            raise ValueError(f"Distiller: {len(weights)} extra_weights for {len(self.extra_losses)} extra_losses")
        self.extra_weights = weights
        self.last_terms = {}          # the terms of the latest step, as floats (soft, hard, extra_k)

    def on_train_begin(self, state):
        if hasattr(self.teacher, "eval"):
            self.teacher.eval()
        for extra in self.extra_losses:
            extra.attach()
            params = list(extra.parameters())
            if params and not any(p is q for g in state.optimizer.param_groups for q in g["params"] for p in params):
                lr = state.optimizer.param_groups[0].get("initial_lr", state.optimizer.param_groups[0]["lr"])
                state.optimizer.add_param_group({"params": params, "lr": state.optimizer.param_groups[0]["lr"]})
                if state.scheduler is not None:                   # schedule the new group like the others
                    state.optimizer.param_groups[-1]["initial_lr"] = lr
                    state.scheduler.base_lrs.append(lr)

    def on_loss(self, state):
        with no_grad():
            teacher_logits = self.teacher(state.x)
        teacher_logits = teacher_logits.data if isinstance(teacher_logits, Tensor) else np.asarray(teacher_logits)
        soft = SOFT_LOSSES[self.soft](state.logits, teacher_logits, temperature=self.temperature)
        labelled = np.asarray(state.y) != UNLABELLED
        if labelled.any():
            hard = state.loss
            loss = soft * self.alpha + hard * (1.0 - self.alpha) if self.alpha < 1.0 else soft
        else:
            hard, loss = None, soft
        self.last_terms = {"soft": soft.item(), "hard": None if hard is None else hard.item()}
        for k, (extra, weight) in enumerate(zip(self.extra_losses, self.extra_weights)):
            term = extra.loss()
            self.last_terms[f"extra_{k}"] = term.item()
            loss = loss + term * float(weight)
        state.loss = loss

    def on_train_end(self, state):
        for extra in self.extra_losses:
            extra.detach()
