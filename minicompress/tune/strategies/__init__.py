"""Tuning strategies: generators of configurations, each in its own file (see base.py for the protocol)."""
from .base import Strategy
from .basic import BasicStrategy
from .exhaustive import ExhaustiveStrategy
from .hawq import HAWQStrategy
from .mse import MSEStrategy
from .random_search import RandomStrategy

STRATEGIES = {"basic": BasicStrategy, "mse": MSEStrategy, "random": RandomStrategy,
              "exhaustive": ExhaustiveStrategy, "hawq": HAWQStrategy}


def get_strategy(strategy):
    """A Strategy instance from a name in STRATEGIES or an instance (returned as is)."""
    if isinstance(strategy, Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"autotune: strategy must be one of {sorted(STRATEGIES)} or a Strategy instance, "
                         f"got {strategy!r}")
    return STRATEGIES[strategy]()


__all__ = ["Strategy", "BasicStrategy", "MSEStrategy", "RandomStrategy", "ExhaustiveStrategy", "HAWQStrategy",
           "STRATEGIES", "get_strategy"]
