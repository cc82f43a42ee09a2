"""Random strategy: draw configurations at random (each operator's dtype, one recipe for the model).

The first trial is all-INT8 with the default recipe; then each draw picks, with `mc.core.rng()` (so
`mc.manual_seed` repeats the run), a recipe and for every operator a dtype from ctx.dtypes. A drawn
configuration seen before is skipped; after `patience` duplicates in a row the space is taken as exhausted.

Reference: Intel Neural Compressor, `strategy/random.py`.
"""
from ...core import rng
from ..space import config_key, op_config, uniform_config
from .base import Strategy


class RandomStrategy(Strategy):
    name = "random"

    def __init__(self, patience=50):
        self.patience = patience

    def search(self, ctx):
        first = uniform_config(ctx.ops, "int8", ctx.recipes[0])
        seen = {config_key(first)}
        yield first, "all int8, default recipe"
        duplicates = 0
        while duplicates < self.patience:
            gen = rng()
            recipe = ctx.recipes[int(gen.integers(len(ctx.recipes)))]
            config = {op: op_config(ctx.dtypes[int(gen.integers(len(ctx.dtypes)))], recipe) for op in ctx.ops}
            key = config_key(config)
            if key in seen:
                duplicates += 1
                continue
            duplicates = 0
            seen.add(key)
            yield config, "random draw"
