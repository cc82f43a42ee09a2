"""The accuracy goal of a tuning run: how much worse than the float model a compressed model may be.

With baseline accuracy `a0` (the float model's), tolerable loss `t` and a candidate accuracy `a`:

    relative, higher is better:   a >= a0 * (1 - t)          (Neural Compressor's default, t = 0.01)
    absolute, higher is better:   a >= a0 - t
    relative, lower is better:    a <= a0 * (1 + t)          (a loss or an error rate)
    absolute, lower is better:    a <= a0 + t

`loss(a)` is the degradation in the same units as the goal (a fraction of `a0` for "relative", metric units
for "absolute"), positive when `a` is worse than the baseline. A relative goal on a baseline of 0 is
meaningless (any degradation is infinite); it raises instead of silently passing every model.

Reference: Intel Neural Compressor, `AccuracyCriterion(criterion="relative", tolerable_loss=0.01)`.
"""
import math

CRITERIA = ("relative", "absolute")


class AccuracyCriterion:
    def __init__(self, baseline, tolerable_loss=0.01, criterion="relative", higher_is_better=True):
        if criterion not in CRITERIA:
            raise ValueError(f"AccuracyCriterion: criterion must be one of {CRITERIA}, got {criterion!r}")
        if isinstance(tolerable_loss, bool) or not isinstance(tolerable_loss, (int, float)) \
                or not math.isfinite(tolerable_loss) or tolerable_loss < 0:
            raise ValueError(f"AccuracyCriterion: tolerable_loss must be a finite number >= 0, got {tolerable_loss!r}")
        baseline = _as_metric(baseline, "baseline (eval_fn of the float model)")
        if criterion == "relative" and baseline == 0:
            raise ValueError("AccuracyCriterion: a relative goal needs a non-zero baseline; the float model scored 0 "
                             "(use criterion='absolute')")
        self.baseline = baseline
        self.tolerable_loss = float(tolerable_loss)
        self.criterion = criterion
        self.higher_is_better = bool(higher_is_better)

    @property
    def target(self):
        """The worst accuracy that still meets the goal."""
        a0, t = self.baseline, self.tolerable_loss
        sign = -1.0 if self.higher_is_better else 1.0
        return a0 + sign * (abs(a0) * t if self.criterion == "relative" else t)

    def loss(self, accuracy):
        """Degradation versus the baseline, in the goal's units (> 0: worse than the float model)."""
        accuracy = _as_metric(accuracy, "accuracy")
        drop = (self.baseline - accuracy) if self.higher_is_better else (accuracy - self.baseline)
        return drop / abs(self.baseline) if self.criterion == "relative" else drop

    def is_met(self, accuracy):
        accuracy = _as_metric(accuracy, "accuracy")
        # compare against the target with a tiny tolerance for float round-off (a0 * (1 - t) is inexact)
        slack = 1e-12 * max(1.0, abs(self.baseline))
        if self.higher_is_better:
            return accuracy >= self.target - slack
        return accuracy <= self.target + slack

    def better(self, a, b):
        """True when accuracy `a` is strictly better than `b` (in the metric's direction)."""
        return a > b if self.higher_is_better else a < b

    def describe(self):
        sense = ">=" if self.higher_is_better else "<="
        unit = f"{self.tolerable_loss:.2%} relative" if self.criterion == "relative" \
            else f"{self.tolerable_loss:g} absolute"
        return f"accuracy {sense} {self.target:.6g} (baseline {self.baseline:.6g}, {unit} loss allowed)"

    def __repr__(self):
        return (f"AccuracyCriterion(baseline={self.baseline!r}, tolerable_loss={self.tolerable_loss!r}, "
                f"criterion={self.criterion!r}, higher_is_better={self.higher_is_better})")


def _as_metric(value, what):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"autotune: {what} must be a number (eval_fn(model) -> float), got {type(value).__name__}") \
            from None
    if not math.isfinite(value):
        raise ValueError(f"autotune: {what} is {value}; eval_fn must return a finite number")
    return value + 0.0  # -0.0 -> 0.0 (prints as 0)
