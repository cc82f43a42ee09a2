"""minicompress: neural-network compression from first principles, in NumPy.

    import minicompress as mc
    mc.manual_seed(0)
    model = mc.models.mlp()
"""
from .core import Function, Tensor, cat, concat, gradcheck, manual_seed, no_grad, enable_grad, stack, tensor, where
from . import core

__version__ = "0.1.0"
