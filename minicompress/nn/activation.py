"""Activation layers: thin Modules over nn.functional, PyTorch's names, arguments and reprs.

    ReLU, GELU(approximate="none" | "tanh"), SiLU, Sigmoid, Tanh, ELU(alpha), Hardtanh(min_val, max_val),
    ReLU6, LeakyReLU(negative_slope), Softmax(dim), LogSoftmax(dim)
No parameters (empty state_dict). Formulas in `nn/functional/activation.py` and `softmax.py`.
`inplace=` is accepted for PyTorch compatibility and ignored (every op here returns a new array).
"""
import warnings

from . import functional as F
from .module import Module


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x)


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.silu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class ELU(Module):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = float(alpha), inplace

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Hardtanh(Module):
    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if not min_val < max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) must be smaller than max_val ({max_val})")
        self.min_val, self.max_val, self.inplace = float(min_val), float(max_val), inplace

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = float(negative_slope), inplace

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


def _implicit_dim(ndim, layer):
    """PyTorch's legacy rule when Softmax(dim=None): dim 0 for 0-, 1- and 3-D inputs, else 1 (with a warning)."""
    warnings.warn(f"{layer}: implicit dimension choice is deprecated (as in PyTorch); pass dim=", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        dim = self.dim if self.dim is not None else _implicit_dim(x.ndim, "Softmax")
        return F.softmax(x, dim=dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        dim = self.dim if self.dim is not None else _implicit_dim(x.ndim, "LogSoftmax")
        return F.log_softmax(x, dim=dim)

    def extra_repr(self):
        return f"dim={self.dim}"
