"""Small helpers shared by the functional ops: wrap inputs as Tensors, read PyTorch-style int-or-pair args."""
import numpy as np

from ...core import Tensor


def as_tensor(x):
    """`x` as a Tensor (arrays and numbers are wrapped without a copy when possible)."""
    return x if isinstance(x, Tensor) else Tensor(x)


def raw(x):
    """The ndarray behind `x` (a Tensor, an array or None)."""
    return x.data if isinstance(x, Tensor) else x


def pair(value, name, op, minimum=0):
    """An int or a pair of ints -> a tuple of two ints >= `minimum` (kernel_size=3 means (3, 3))."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def resolve_axis(axis, dim, ndim, op):
    """PyTorch spells the axis `dim`; NumPy `axis`. Accept either (not both) and check the range."""
    if dim is not None:
        if axis not in (-1, dim):
            raise ValueError(f"{op}: got axis={axis!r} and dim={dim!r}; give one of them (they are the same thing)")
        axis = dim
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ValueError(f"{op}: axis/dim must be an int, got {axis!r}")
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise ValueError(f"{op}: dim {axis} is out of range for an input with {ndim} dimensions")
    return int(axis) % max(ndim, 1)


def check_reduction(reduction, op, allowed=("none", "mean", "sum")):
    if reduction not in allowed:
        raise ValueError(f"{op}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction
