"""minicompress: neural-network compression from first principles, in NumPy.

    import minicompress as mc
    mc.manual_seed(0)
    model = mc.models.mlp()

The core (Tensor, no_grad, manual_seed, ...) is imported at once; the subpackages (`mc.nn`, `mc.quant`,
`mc.prune`, ...) are imported the first time they are used, so `import minicompress` stays fast and a
script pays only for what it touches (Numba kernels compile on first use).
"""
import importlib

from . import core
from .core import Function, Tensor, cat, concat, enable_grad, gradcheck, manual_seed, no_grad, stack, tensor, where

__version__ = "0.1.0"

_SUBMODULES = ("nn", "optim", "data", "models", "train", "kernels", "precision", "quant", "prune", "distill",
               "graph", "tune", "report", "cli")


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'minicompress' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
