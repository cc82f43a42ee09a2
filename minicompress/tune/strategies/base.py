"""What a tuning strategy is: a generator of configurations that sees each one's result before the next.

    class MyStrategy(Strategy):
        name = "mine"
        def search(self, ctx):                        # ctx: TuningContext (ops, calib data, criterion, ...)
            trial = yield all_int8, "why this one"    # the tuner evaluates it and sends back the Trial
            ...

The tuner stops the generator as soon as a trial meets the goal, or when `max_trials` / `timeout` run out;
a strategy only decides the *order* in which configurations are visited (most compressed first), so each
one is testable with a scripted evaluation function. A configuration proposed twice is not re-evaluated:
the tuner sends back the earlier Trial.

Shared stage (Neural Compressor's first step): `recipe_stage` tries all-INT8 with each recipe (observer,
scheme, granularity) and returns the best recipe, which the fallback stages then keep.
"""
from ..space import uniform_config, with_ops


class Strategy:
    name = "strategy"

    def search(self, ctx):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


def recipe_name(recipe):
    return f"{recipe['scheme']}/{recipe['granularity']}/{recipe['observer']}"


def recipe_stage(ctx):
    """Generator: all-INT8 with each of ctx.recipes; returns (best recipe, its all-INT8 configuration)."""
    best = None
    for recipe in ctx.recipes:
        config = uniform_config(ctx.ops, "int8", recipe)
        trial = yield config, f"all int8, recipe {recipe_name(recipe)}"
        if best is None or ctx.criterion.better(trial.accuracy, best[0]):
            best = (trial.accuracy, recipe, config)
    return best[1], best[2]


def accumulate_stage(ctx, base, order, label):
    """Generator: fall back order[:1], order[:2], ... to each of ctx.fallback_dtypes in turn."""
    for dtype in ctx.fallback_dtypes:
        for k in range(1, len(order) + 1):
            yield with_ops(base, order[:k], dtype), f"{label}: fall back {k} op(s) to {dtype} ({', '.join(order[:k])})"
