"""Dynamic loss scaling for FP16 training (torch.amp.GradScaler's algorithm and defaults).

FP16 gradients underflow: anything below 2^-24 ≈ 6e-8 becomes 0 (Micikevicius et al. found a large part
of an SSD's activation gradients there). Multiplying the loss by a scale S multiplies every gradient by S
(chain rule) and lifts them into FP16's range; the FP32 master gradients are divided by S before the step:

    backward(S · loss)  ->  g_S = S · g          unscale: g = g_S / S  (in FP32, by 1/S computed in float64)
    if any g is inf/NaN: skip this step, S <- S · backoff_factor (0.5), growth counter <- 0
    else:                take the step,  counter += 1; when counter == growth_interval (2000): S <- S · 2

Too large an S overflows (inf) and the step is skipped while S halves; S grows again after 2000 clean
steps -- so S hovers just below the overflow threshold. Defaults as PyTorch: init_scale 2^16,
growth_factor 2, backoff_factor 0.5, growth_interval 2000.

    scaler = GradScaler()
    loss = loss_fn(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)      # unscales (unless unscale_ was called), skips the step on inf/NaN
    scaler.update()             # adjusts the scale
Reference: Micikevicius et al., "Mixed Precision Training", ICLR 2018; torch.amp.GradScaler.
"""
import math

import numpy as np

from ..core import Function, Tensor


class ScaleGrad(Function):
    """Identity forward, gradient multiplied by `scale` backward: scales the gradients, not the loss value."""
    name = "scale_grad"

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return (grad * np.asarray(ctx.scale, dtype=grad.dtype), None)


def scale_grad(loss, scale):
    """`loss` unchanged in value, its gradient multiplied by `scale` (for loss scaling inside `fit`)."""
    return ScaleGrad.apply(loss, float(scale))


def _optimizer_params(optimizer):
    groups = getattr(optimizer, "param_groups", None)
    if groups is None:
        raise TypeError(f"GradScaler: expected an optimizer with param_groups, got {type(optimizer).__name__}")
    return [p for g in groups for p in g["params"]]


class GradScaler:
    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 enabled=True):
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"GradScaler: init_scale must be a positive finite number, got {init_scale!r}")
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor!r}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if not (isinstance(growth_interval, int) and growth_interval > 0):
            raise ValueError(f"GradScaler: growth_interval must be a positive int, got {growth_interval!r}")
        self._scale = float(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = growth_interval
        self._growth_tracker = 0
        self._enabled = bool(enabled)
        self._found_inf = {}          # id(optimizer) -> bool, for this iteration
        self._unscaled = set()        # ids of optimizers already unscaled this iteration
        self.steps_taken = 0
        self.steps_skipped = 0

    def is_enabled(self):
        return self._enabled

    def get_scale(self):
        return self._scale if self._enabled else 1.0

    def scale(self, loss):
        """`loss · S` (a Tensor); backward of it gives S-times-larger gradients."""
        if not self._enabled:
            return loss
        if not isinstance(loss, Tensor):
            raise TypeError(f"GradScaler.scale: expected a Tensor loss, got {type(loss).__name__}")
        return loss * self._scale

    def unscale_(self, optimizer):
        """Divide the gradients of the optimizer's parameters by S (in place) and check them for inf/NaN."""
        if not self._enabled:
            return
        if id(optimizer) in self._unscaled:
            raise RuntimeError("GradScaler.unscale_: already called for this optimizer since the last update()")
        inv_scale = np.float32(np.float64(1.0) / np.float64(self._scale))
        found_inf = False
        for p in _optimizer_params(optimizer):
            if p.grad is None:
                continue
            p.grad *= inv_scale
            found_inf = found_inf or not bool(np.isfinite(p.grad).all())
        self._found_inf[id(optimizer)] = found_inf
        self._unscaled.add(id(optimizer))

    def found_inf(self, optimizer):
        """Whether the last unscale_ of this optimizer found an inf/NaN gradient."""
        return self._found_inf.get(id(optimizer), False)

    def step(self, optimizer, *args, **kwargs):
        """Unscale if needed, then `optimizer.step()` unless a gradient is inf/NaN (returns None then)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if id(optimizer) not in self._unscaled:
            self.unscale_(optimizer)
        if self._found_inf[id(optimizer)]:
            self.steps_skipped += 1
            return None
        self.steps_taken += 1
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        """Back off after an overflow, grow after `growth_interval` clean steps; resets per-iteration state."""
        if not self._enabled:
            return
        if new_scale is not None:
            if not (isinstance(new_scale, (int, float)) and math.isfinite(new_scale) and new_scale > 0):
                raise ValueError(f"GradScaler.update: new_scale must be a positive finite number, got {new_scale!r}")
            self._scale = float(new_scale)
        elif any(self._found_inf.values()):
            self._scale *= self._backoff_factor
            self._growth_tracker = 0
        elif self._found_inf:
            self._growth_tracker += 1
            if self._growth_tracker == self._growth_interval:
                self._scale *= self._growth_factor
                self._growth_tracker = 0
        self._found_inf.clear()
        self._unscaled.clear()

    def state_dict(self):
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state):
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"} - set(state)
        if missing:
            raise ValueError(f"GradScaler.load_state_dict: missing keys {sorted(missing)}")
        self._scale = float(state["scale"])
        self._growth_factor, self._backoff_factor = float(state["growth_factor"]), float(state["backoff_factor"])
        self._growth_interval, self._growth_tracker = int(state["growth_interval"]), int(state["_growth_tracker"])

    def __repr__(self):
        return f"GradScaler(scale={self.get_scale():g}, skipped={self.steps_skipped}, taken={self.steps_taken})"
