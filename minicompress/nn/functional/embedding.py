"""embedding(indices, weight): row lookup, out[..., :] = weight[indices[...], :].

    indices: integer array of any shape (...), values in [0, num_embeddings)
    weight:  (num_embeddings, embedding_dim)   ->   out: (..., embedding_dim)
    backward: dL/dweight[k] = sum of g over the positions where indices == k (a scatter-add);
              the row `padding_idx` gets no gradient (as torch.nn.functional.embedding).
Function name "embedding". Indices carry no gradient.
"""
import numpy as np

from ...core import Function, Tensor
from .utils import as_tensor, raw


class EmbeddingFn(Function):
    name = "embedding"

    @staticmethod
    def forward(ctx, indices, weight, padding_idx=None):
        ctx.save_for_backward(indices)
        ctx.args = (weight.shape, padding_idx)
        return weight[indices]

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved
        shape, padding_idx = ctx.args
        flat = indices.reshape(-1)
        g = grad.reshape(-1, shape[1])
        grad_w = np.zeros(shape, dtype=grad.dtype)
        np.add.at(grad_w, flat, g)  # repeated indices accumulate
        if padding_idx is not None:
            grad_w[padding_idx] = 0
        return None, grad_w, None


def check_indices(indices, num_embeddings, op):
    """Integer indices within [0, num_embeddings), as an int64-compatible array (ValueError/TypeError otherwise)."""
    idx = np.asarray(raw(indices))
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"{op}: indices must be an integer array, got dtype {idx.dtype} "
                        f"(convert with .astype(np.int64) if these are whole numbers)")
    if idx.size and (idx.min() < 0 or idx.max() >= num_embeddings):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise ValueError(f"{op}: index {int(bad)} is out of range for num_embeddings={num_embeddings} "
                         f"(valid: 0 .. {num_embeddings - 1})")
    return idx


def embedding(indices, weight, padding_idx=None):
    """Look up rows of `weight` (num_embeddings, embedding_dim) for integer `indices` of any shape."""
    weight = as_tensor(weight)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {tuple(weight.shape)}")
    idx = check_indices(indices, weight.shape[0], "embedding")
    if padding_idx is not None:
        padding_idx = int(padding_idx) % weight.shape[0] if padding_idx < 0 else int(padding_idx)
    return EmbeddingFn.apply(Tensor._wrap(idx, False), weight, padding_idx)
