"""Basic strategy (Neural Compressor's default): all-INT8 first, then fall back operators by sensitivity.

    stage 1  all-INT8 with each recipe (observer / scheme / granularity); keep the best recipe
    stage 2  fall back each operator *alone* to the first fallback dtype (bf16): n trials. The accuracy each
             single fallback recovers is that operator's measured sensitivity.
    stage 3  accumulate: fall back the 1, 2, ..., n most sensitive operators together, first to bf16,
             then to fp32, until the goal is met.

Cost: len(recipes) + n + (number of fallback dtypes) * n trials at most, for n tunable operators.
Reference: Intel Neural Compressor, `strategy/basic.py` (op-wise fallback, then accumulated fallback).
"""
from ..space import with_ops
from .base import Strategy, accumulate_stage, recipe_stage


class BasicStrategy(Strategy):
    name = "basic"

    def search(self, ctx):
        recipe, base = yield from recipe_stage(ctx)
        fallback = ctx.fallback_dtypes[0]
        recovered = []
        for position, op in enumerate(ctx.ops):
            trial = yield with_ops(base, [op], fallback), f"sensitivity: fall back {op} alone to {fallback}"
            recovered.append((trial.accuracy, position, op))
        # most sensitive first = the single fallback that recovered the most accuracy; ties keep model order
        sign = -1 if ctx.criterion.higher_is_better else 1
        order = [op for _, _, op in sorted(recovered, key=lambda r: (sign * r[0], r[1]))]
        yield from accumulate_stage(ctx, base, order, "accumulated")
