"""`MixedPrecision(dtype)`: a `fit` callback for automatic mixed-precision training.

    fit(model, data, callbacks=[MixedPrecision("fp16")])

What a step does with it (FP32 "master" weights, low-precision compute -- Micikevicius et al., 2018):
    on_step_begin       enter autocast(dtype): the forward's matmul/linear/conv run on BF16/FP16-rounded
                        inputs, their outputs and (in backward) gradients are BF16/FP16 values
    on_loss             leave autocast (losses are FP32 ops anyway); with a GradScaler (FP16's default),
                        scale the *gradient* of the loss by S -- `scale_grad` keeps the loss value, so the
                        History shows the true loss
    on_after_backward   unscale the FP32 gradients by 1/S; if one is inf/NaN, drop all gradients (the
                        optimiser skips parameters without a gradient, so no step is taken) and let the
                        scaler back off; then `scaler.update()`
The parameters themselves never leave FP32: rounding happens on the copies each op sees, so the tiny
updates that BF16 weights would swallow (w + Δw == w when |Δw| < 2^-9 |w|) still accumulate.

Order: list MixedPrecision *last* in `callbacks`, so that it scales the final loss (after e.g. a
distillation term was added) and leaves autocast after the other callbacks' on_loss work (a teacher's
forward in a `Distiller` runs in low precision too). Callbacks reading gradient magnitudes in
on_after_backward before it see them multiplied by S.
"""
import numpy as np

from .autocast import autocast
from .casting import canonical_dtype
from .grad_scaler import GradScaler, scale_grad


class MixedPrecision:
    def __init__(self, dtype="bf16", scaler="auto", round_grads=True):
        self.dtype = canonical_dtype(dtype, allow_fp32=False, who="MixedPrecision")
        if scaler == "auto":
            scaler = GradScaler() if self.dtype == "fp16" else None
        if scaler is not None and not isinstance(scaler, GradScaler):
            raise TypeError(f"MixedPrecision: scaler must be a GradScaler, None or 'auto', got {type(scaler).__name__}")
        self.scaler = scaler
        self.round_grads = round_grads
        self.scales = []              # the loss scale used at each step (with a scaler)
        self.skipped_steps = []       # global step numbers of the steps skipped for inf/NaN gradients
        self._autocast = None
        self._saved_errstate = None

    def on_step_begin(self, state):
        self._leave()                 # a previous step that raised may have left it entered
        if self.scaler is not None and self._saved_errstate is None:
            # overflow to inf (and inf·0 = NaN) in a scaled backward is expected: the scaler handles it
            self._saved_errstate = np.seterr(over="ignore", invalid="ignore")
        self._autocast = autocast(self.dtype, round_grads=self.round_grads)
        self._autocast.__enter__()

    def on_loss(self, state):
        self._leave()
        if self.scaler is not None and self.scaler.is_enabled():
            self.scales.append(self.scaler.get_scale())
            state.loss = scale_grad(state.loss, self.scaler.get_scale())

    def on_after_backward(self, state):
        if self.scaler is None or not self.scaler.is_enabled():
            return
        self.scaler.unscale_(state.optimizer)
        if self.scaler.found_inf(state.optimizer):
            for group in state.optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self.scaler.steps_skipped += 1
            self.skipped_steps.append(state.step)
        else:
            self.scaler.steps_taken += 1
        self.scaler.update()

    def on_train_end(self, state):
        self._leave()
        if self._saved_errstate is not None:
            np.seterr(**self._saved_errstate)
            self._saved_errstate = None

    def _leave(self):
        if self._autocast is not None:
            self._autocast.__exit__(None, None, None)
            self._autocast = None
