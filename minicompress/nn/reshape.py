"""Layers that move no numbers: Flatten, Unflatten and Identity (as torch.nn).

Flatten(start_dim=1, end_dim=-1): (N, C, H, W) -> (N, C H W) by default.
Unflatten(dim, unflattened_size): (N, C H W) -> (N, C, H, W) for dim=1, unflattened_size=(C, H, W).
Identity(*args, **kwargs): returns its input (a placeholder, e.g. where fusion removed a BatchNorm).
"""
import numpy as np

from ..core import Tensor
from .module import Module


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        nd = max(x.ndim, 1)
        if not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd):
            raise ValueError(f"{self!r}: start_dim/end_dim out of range for input of shape {tuple(x.shape)}")
        if self.start_dim % nd > self.end_dim % nd:
            raise ValueError(f"{self!r}: start_dim must not come after end_dim (input shape {tuple(x.shape)})")
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self!r}: dim {self.dim} out of range for input of shape {tuple(x.shape)}")
        d = self.dim % x.ndim
        sizes = self.unflattened_size
        known = int(np.prod([s for s in sizes if s != -1]))
        if (-1 not in sizes and known != x.shape[d]) or (-1 in sizes and (known == 0 or x.shape[d] % known)):
            raise ValueError(f"{self!r}: cannot unflatten dimension {d} of size {x.shape[d]} (input shape "
                             f"{tuple(x.shape)}) into {sizes}")
        return x.reshape(x.shape[:d] + sizes + x.shape[d + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x
