"""`Parameter`: a Tensor that a Module owns and an optimiser updates (requires_grad=True by default)."""
import numpy as np

from ..core import Tensor


class Parameter(Tensor):
    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        arr = data.data if isinstance(data, Tensor) else data
        super().__init__(np.array(arr, dtype=np.float32 if np.asarray(arr).dtype == np.float64 else None),
                         requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
