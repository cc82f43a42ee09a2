"""Model size in bytes: what the model really stores, counted array by array.

    size(model) = sum over distinct arrays a held by any module of a.nbytes

An array counts if it is a Parameter, a registered buffer, or a NumPy array / Tensor kept as a plain
attribute (quantized modules keep int8 weights, scales and zero points that way). Arrays shared between
modules (tied weights) are counted once; a scipy.sparse matrix (prune.SparseLinear) counts its data, indices
and indptr arrays; an optimised graph (graph.GraphModule) counts the arrays its nodes hold. Run-time caches
kept in tuples (packed GEMM operands) are not counted. So an INT8 Linear
costs 1 byte per weight plus its bias and scales, and a pruned-but-not-shrunk layer costs as much as the
dense one (its zeros are still stored). INT4 weight codes are stored two per byte (quant/int4.py).
"""
import numpy as np

from ..core import Tensor
from ..graph import GraphModule


def module_arrays(module):
    """(name, ndarray) for every array a module holds directly (not its children's)."""
    out = []
    for name, p in module._parameters.items():
        if p is not None:
            out.append((name, p.data))
    for name, b in module._buffers.items():
        if b is not None:
            out.append((name, np.asarray(b)))
    for name, value in vars(module).items():
        if isinstance(value, Tensor):
            out.append((name, value.data))
        elif isinstance(value, np.ndarray):
            out.append((name, value))
        elif all(hasattr(value, a) for a in ("data", "indices", "indptr", "nnz")):  # a scipy.sparse CSR/CSC matrix
            out += [(f"{name}.{a}", getattr(value, a)) for a in ("data", "indices", "indptr")]
    if isinstance(module, GraphModule):              # its weights live in the graph's nodes
        out += module.graph.arrays()
    return out


def module_size_bytes(module, recurse=True, _seen=None):
    """Bytes of the arrays `module` holds (and its descendants' when recurse), each array once."""
    seen = set() if _seen is None else _seen
    modules = module.modules() if recurse else [module]
    total = 0
    for m in modules:
        for _, arr in module_arrays(m):
            if id(arr) not in seen:
                seen.add(id(arr))
                total += int(arr.nbytes)
    return total


def model_size_bytes(model):
    """Total bytes of every distinct array in the model (see module docstring)."""
    return module_size_bytes(model, recurse=True)
