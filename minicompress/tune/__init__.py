"""minicompress.tune: accuracy-aware auto-tuning (Neural Compressor's workflow, made transparent).

    result = mc.tune.autotune(model, eval_fn, calib_data, tolerable_loss=0.01)   # -> TuneResult
    result.met, result.accuracy, result.baseline, result.model
    print(result.history.table()); result.history.save("tuning.json")
    result.save("tuned.npz")      # the model + its tuning history; `python -m minicompress report tuned.npz`

Files: criterion.py (the goal), space.py (configuration dicts), apply.py (configuration -> model),
strategies/ (basic, mse, random, exhaustive, hawq), hessian.py (Hutchinson traces), history.py, tuner.py.
"""
from .apply import apply_config, qconfig_from_entry
from .criterion import AccuracyCriterion
from .hessian import hawq_sensitivity, hessian_vector_product, hutchinson_trace
from .history import History, Trial
from .space import DEFAULT_RECIPE, DEFAULT_RECIPES, config_diff, tunable_ops, uniform_config, with_ops
from .strategies import (STRATEGIES, BasicStrategy, ExhaustiveStrategy, HAWQStrategy, MSEStrategy, RandomStrategy,
                         Strategy)
from .tuner import TuneResult, TuningContext, autotune

__all__ = ["autotune", "TuneResult", "TuningContext", "AccuracyCriterion", "History", "Trial", "apply_config",
           "qconfig_from_entry", "Strategy", "BasicStrategy", "MSEStrategy", "RandomStrategy", "ExhaustiveStrategy",
           "HAWQStrategy", "STRATEGIES", "hutchinson_trace", "hessian_vector_product", "hawq_sensitivity",
           "DEFAULT_RECIPE", "DEFAULT_RECIPES", "tunable_ops", "uniform_config", "with_ops", "config_diff"]
