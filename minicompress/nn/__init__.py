"""Floor 2: layers. Module, Parameter, containers and every layer the zoo needs, PyTorch's names and shapes."""
from . import functional, init
from .containers import ModuleList, Sequential
from .linear import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Linear", "functional", "init"]
