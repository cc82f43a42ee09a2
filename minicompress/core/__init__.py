"""Floor 1: the autograd engine. Tensor, Function/Context, reverse-mode backward, ops, gradcheck, seeding."""
from .function import Context, Function, get_op_hook, set_op_hook
from .grad_mode import enable_grad, is_grad_enabled, no_grad
from .random import manual_seed, rng
from .tensor import Tensor, cat, concat, stack, tensor, where
from .gradcheck import gradcheck

__all__ = ["Tensor", "Function", "Context", "no_grad", "enable_grad", "is_grad_enabled", "manual_seed", "rng",
           "tensor", "concat", "cat", "stack", "where", "gradcheck", "set_op_hook", "get_op_hook"]
