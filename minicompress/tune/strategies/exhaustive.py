"""Exhaustive strategy (small models): every combination of per-operator dtypes and model-wide recipes.

The configurations are visited smallest first: sorted by total weight bits, sum_i bits(dtype_i) * |W_i|
(ties: enumeration order), so the first one that meets the goal is the smallest model that does. The
number of configurations is len(recipes) * len(dtypes) ** n; more than `max_configs` raises a ValueError
rather than running for hours.
"""
import itertools

from ..space import config_key, op_config, weight_bits
from .base import Strategy


class ExhaustiveStrategy(Strategy):
    name = "exhaustive"

    def __init__(self, max_configs=4096):
        self.max_configs = max_configs

    def search(self, ctx):
        count = len(ctx.recipes) * len(ctx.dtypes) ** len(ctx.ops)
        if count > self.max_configs:
            raise ValueError(f"exhaustive strategy: {len(ctx.dtypes)} dtypes ** {len(ctx.ops)} operators x "
                             f"{len(ctx.recipes)} recipes = {count} configurations > max_configs={self.max_configs}; "
                             "use strategy='basic' or 'random', or raise max_configs")
        configs, seen = [], set()
        for recipe in ctx.recipes:
            for dtypes in itertools.product(ctx.dtypes, repeat=len(ctx.ops)):
                config = {op: op_config(d, recipe) for op, d in zip(ctx.ops, dtypes)}
                key = config_key(config)
                if key not in seen:
                    seen.add(key)
                    configs.append(config)
        order = sorted(range(len(configs)), key=lambda i: (weight_bits(configs[i], ctx.op_params), i))
        for i in order:
            yield configs[i], f"exhaustive {weight_bits(configs[i], ctx.op_params)} weight bits"
