"""`autotune`: accuracy-aware tuning, the Neural Compressor workflow on minicompress models.

    baseline = eval_fn(model)                                   (trial 0, the float model)
    for config in strategy.search(ctx):                         (most compressed first)
        candidate = apply_fn(model, config, calib_data)         (prepare -> calibrate -> convert)
        accuracy = eval_fn(candidate)                           (one trial, recorded in the history)
        stop if criterion.is_met(accuracy), or max_trials / timeout run out, or the strategy is exhausted

The result is never None. When a trial meets the goal, `result.model` is that model (the first one met,
which the strategy's order makes the most compressed it found). When none does, `result.model` is the best
one tried, `result.met` is False and `result.message` says so plainly (and a warning is issued).

`model` is not changed (apply_fn builds a new model each trial). `eval_fn(model) -> float`; `calib_data` is
an iterable of input batches (arrays, Tensors, or (x, y) pairs whose x is used); it is read into a list once.
Reference: Intel Neural Compressor, `quantization.fit(model, conf, calib_dataloader, eval_func)`.
"""
import functools
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core import Tensor, no_grad
from ..report.latency import measure_latency_ms
from ..report.serialize import save as save_model
from ..report.size import model_size_bytes
from .apply import APPROACHES, apply_config
from .criterion import AccuracyCriterion
from .history import History, Trial
from .space import (BITS, DEFAULT_RECIPE, DEFAULT_RECIPES, INT_DTYPES, TUNABLE_TYPES, check_config, check_recipe,
                    config_diff, config_key, tunable_ops, uniform_config)
from .strategies import get_strategy

_clock = time.perf_counter  # tests replace it with a scripted clock


@dataclass
class TuneResult:
    model: object
    met: bool
    baseline: float
    accuracy: float
    history: History
    config: dict = None
    best_trial: int = None
    trials: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    message: str = ""
    criterion: AccuracyCriterion = field(default=None, repr=False)

    def __repr__(self):
        best = self.history[self.best_trial].describe() if self.best_trial is not None else "-"
        return (f"TuneResult(met={self.met}, accuracy={self.accuracy:.6g}, baseline={self.baseline:.6g}, "
                f"trials={self.trials}, best_trial={self.best_trial}, config={best!r})")

    def save(self, path, example_input=None):
        """Save the tuned model with mc.report.save; the goal, the configuration and the whole history go in its
        metadata (so `python -m minicompress report PATH` shows what was tried). Returns the path written."""
        metadata = {"tuning": {"met": self.met, "baseline": self.baseline, "accuracy": self.accuracy,
                               "best_trial": self.best_trial, "stop_reason": self.stop_reason,
                               "config": self.config, "history": self.history.to_dict()}}
        return save_model(self.model, path, example_input=example_input, metadata=metadata)

    def summary(self):
        return (f"{self.message}\n{self.trials} trial(s) in {self.seconds:.2f} s; stopped: {self.stop_reason}\n"
                + self.history.table())


class TuningContext:
    """What a strategy may look at: the operators, the calibration batches, the goal, the search space."""

    def __init__(self, model, ops, calib_data, apply_fn, criterion, recipes, fallback_dtypes, dtypes):
        self.model, self.ops, self.calib_data = model, ops, calib_data
        self.apply_fn, self.criterion = apply_fn, criterion
        self.recipes, self.fallback_dtypes, self.dtypes = recipes, fallback_dtypes, dtypes
        self.op_params = {}
        if hasattr(model, "get_submodule"):
            for op in ops:
                weight = getattr(model.get_submodule(op), "weight", None)
                self.op_params[op] = 1 if weight is None else int(np.prod(weight.shape))
        self.reference = uniform_config(ops, "int8", DEFAULT_RECIPE)
        self._float_outputs = None

    def output_error(self, config):
        """Mean squared error of apply_fn(model, config)'s outputs against the float model's, on calib_data."""
        candidate = self.apply_fn(self.model, config, self.calib_data)
        if self._float_outputs is None:
            self._float_outputs = [_forward(self.model, batch) for batch in self.calib_data]
        errors = [np.mean((ref - _forward(candidate, batch)) ** 2)
                  for ref, batch in zip(self._float_outputs, self.calib_data)]
        return float(np.mean(errors))


def autotune(model, eval_fn, calib_data, *, tolerable_loss=0.01, criterion="relative", higher_is_better=True,
             strategy="basic", max_trials=100, timeout=None, ops=None, recipes=None, fallback_dtypes=("bf16", "fp32"),
             dtypes=None, approach="static", apply_fn=None, measure_latency=True, verbose=False):
    """Search quantization configurations of `model` until `eval_fn` meets the accuracy goal.

    tolerable_loss, criterion, higher_is_better: the goal (see tune/criterion.py).
    strategy: "basic" | "mse" | "random" | "exhaustive" | "hawq", or a Strategy instance.
    max_trials: at most this many compressed configurations are evaluated (the baseline is not counted).
    timeout: seconds; no new trial starts after it (None: no limit).
    ops: the operator names to tune (default: every Linear / Conv2d); recipes: the (scheme, granularity,
    observer) dicts tried for the whole model; fallback_dtypes: in order of preference; dtypes: what random /
    exhaustive may pick per operator (default int8 + fallbacks; hawq adds int4 itself).
    approach: "static" (prepare -> calibrate -> convert) or "dynamic" (quantize_dynamic; Linear layers only).
    apply_fn(model, config, calib_data) -> model: builds a trial's model (default `apply_config` with `approach`).
    Returns a TuneResult (never None).
    """
    if not callable(eval_fn):
        raise TypeError(f"autotune: eval_fn must be callable (eval_fn(model) -> float), got {type(eval_fn).__name__}")
    _check_count("max_trials", max_trials)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"autotune: timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    calib_data = _calibration_batches(calib_data)
    if approach not in APPROACHES:
        raise ValueError(f"autotune: approach must be one of {APPROACHES}, got {approach!r}")
    ops = tunable_ops(model, ("Linear",) if approach == "dynamic" else TUNABLE_TYPES) if ops is None else list(ops)
    if not ops:
        raise ValueError("autotune: ops is empty; nothing to tune")
    names = {name for name, _ in model.named_modules()} if hasattr(model, "named_modules") else set(ops)
    unknown = [op for op in ops if op not in names]
    if unknown:
        raise ValueError(f"autotune: ops {unknown} are not modules of {type(model).__name__} "
                         f"(tunable: {tunable_ops(model)})")
    if recipes is None:  # dynamic quantization measures activations per batch: activation observers do not matter
        recipes = [r for r in DEFAULT_RECIPES if approach == "static" or r["observer"] == "minmax"]
    recipes = [dict(r) for r in recipes]
    if not recipes:
        raise ValueError("autotune: recipes is empty; give at least one {scheme, granularity, observer} dict")
    for r in recipes:
        check_recipe(r)
    fallback_dtypes = tuple(fallback_dtypes)
    if not fallback_dtypes or any(d not in ("bf16", "fp32") for d in fallback_dtypes):
        raise ValueError(f"autotune: fallback_dtypes must be a non-empty sequence of 'bf16' / 'fp32', "
                         f"got {fallback_dtypes!r}")
    dtypes = ("int8",) + fallback_dtypes if dtypes is None else tuple(dtypes)
    for d in dtypes:
        if d not in BITS:
            raise ValueError(f"autotune: dtypes must be among {tuple(BITS)}, got {d!r}")
    if apply_fn is None:
        apply_fn = functools.partial(apply_config, approach=approach)
    strategy = get_strategy(strategy)

    start = _clock()
    baseline = eval_fn(model)
    goal = AccuracyCriterion(baseline, tolerable_loss, criterion, higher_is_better)
    ctx = TuningContext(model, ops, calib_data, apply_fn, goal, recipes, fallback_dtypes, dtypes)
    history = History(criterion=goal.criterion)
    history.append(Trial(trial=0, config=uniform_config(ops, "fp32"), diff={op: {"dtype": "fp32"} for op in ops},
                         accuracy=goal.baseline, met=True, loss=0.0, size_bytes=_size(model),
                         latency_ms=_latency(model, calib_data) if measure_latency else None,
                         seconds=_clock() - start, note="float baseline", strategy=strategy.name))
    if verbose:
        print(f"autotune[{strategy.name}]: goal {goal.describe()}")

    seen = {}
    best = None  # (trial, model)
    stop_reason = "search space exhausted"
    search = strategy.search(ctx)
    reply = None
    while True:
        try:
            config, note = search.send(reply)
        except StopIteration:
            break
        check_config(config, ops)
        key = config_key(config)
        if key in seen:  # proposed before: answer from the history, costs no trial
            reply = seen[key]
            continue
        evaluated = len(history) - 1
        if evaluated >= max_trials:
            stop_reason = f"max_trials={max_trials} reached"
            break
        if timeout is not None and _clock() - start >= timeout:
            stop_reason = f"timeout={timeout} s reached"
            break
        trial_start = _clock()
        candidate = apply_fn(model, config, calib_data)
        accuracy = _trial_metric(eval_fn(candidate))
        broken = not math.isfinite(accuracy)  # e.g. a NaN from an overflowing model: recorded, never chosen
        trial = Trial(trial=evaluated + 1, config=config, diff=config_diff(config, ctx.reference),
                      accuracy=accuracy, met=False if broken else goal.is_met(accuracy),
                      loss=math.inf if broken else goal.loss(accuracy),
                      size_bytes=_size(candidate),
                      latency_ms=_latency(candidate, calib_data) if measure_latency else None,
                      seconds=_clock() - trial_start, note=note, strategy=strategy.name)
        history.append(trial)
        seen[key] = trial
        reply = trial
        if verbose:
            print(f"  trial {trial.trial:>3}: accuracy {trial.accuracy:.6g} ({'met' if trial.met else 'not met'}) "
                  f"{trial.describe()}")
        if not broken and (best is None or goal.better(trial.accuracy, best[0].accuracy)):
            best = (trial, candidate)
        if trial.met:
            best = (trial, candidate)
            stop_reason = "goal met"
            break
    search.close()
    return _result(model, best, goal, history, stop_reason, _clock() - start, verbose)


def _result(model, best, goal, history, stop_reason, seconds, verbose):
    trials = len(history) - 1
    if best is None:
        what = "was evaluated" if trials == 0 else f"of {trials} gave a finite accuracy"
        message = (f"autotune: NO configuration {what} ({stop_reason}); returning the float model "
                   f"unchanged, accuracy {goal.baseline:.6g}.")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        result = TuneResult(model=model, met=False, baseline=goal.baseline, accuracy=goal.baseline,
                            history=history, config=history[0].config, best_trial=0, trials=trials, seconds=seconds,
                            stop_reason=stop_reason, message=message, criterion=goal)
    else:
        trial, candidate = best
        if trial.met:
            message = (f"autotune: goal met at trial {trial.trial} of {trials}: accuracy {trial.accuracy:.6g} vs "
                       f"baseline {goal.baseline:.6g} ({goal.describe()}); configuration: {trial.describe()}.")
        else:
            message = (f"autotune: goal NOT met ({goal.describe()}); {stop_reason} after {trials} trial(s). "
                       f"Returning the best configuration found, trial {trial.trial}: accuracy {trial.accuracy:.6g} "
                       f"({trial.describe()}).")
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        result = TuneResult(model=candidate, met=trial.met, baseline=goal.baseline, accuracy=trial.accuracy,
                            history=history, config=trial.config, best_trial=trial.trial, trials=trials,
                            seconds=seconds, stop_reason=stop_reason, message=message, criterion=goal)
    if verbose:
        print(result.message)
    return result


def _trial_metric(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"autotune: eval_fn must return a number, got {type(value).__name__}") from None


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"autotune: {name} must be an int >= 0, got {value!r}")


def _calibration_batches(calib_data):
    if calib_data is None:
        raise TypeError("autotune: calib_data is None; give an iterable of input batches (arrays or Tensors)")
    if isinstance(calib_data, (np.ndarray, Tensor)):
        batches = [calib_data]  # one batch
    else:
        try:
            batches = list(calib_data)
        except TypeError:
            raise TypeError(f"autotune: calib_data must be an iterable of input batches, "
                            f"got {type(calib_data).__name__}") from None
    if not batches:
        raise ValueError("autotune: calib_data is empty; give at least one input batch")
    return batches


def batch_input(batch):
    """The input Tensor of a calibration batch (an array, a Tensor, or an (x, y) pair)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        batch = batch[0]
    return batch if isinstance(batch, Tensor) else Tensor(np.asarray(batch))


def _forward(model, batch):
    with no_grad():
        out = model(batch_input(batch))
    return np.asarray(out.data if isinstance(out, Tensor) else out, dtype=np.float64)


def _size(model):
    return model_size_bytes(model) if hasattr(model, "modules") else None


def _latency(model, calib_data):
    return measure_latency_ms(model, batch_input(calib_data[0]), repeat=3, warmup=1)


__all__ = ["autotune", "TuneResult", "TuningContext", "INT_DTYPES", "batch_input"]
