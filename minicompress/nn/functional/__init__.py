"""`minicompress.nn.functional` (import as F): stateless ops on Tensors, PyTorch's names and arguments."""
from .linear import linear

__all__ = ["linear"]
