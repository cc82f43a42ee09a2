"""`Embedding(num_embeddings, embedding_dim, padding_idx=None)`: a lookup table (torch.nn.Embedding).

Parameter: weight (num_embeddings, embedding_dim), initialised N(0, 1) as PyTorch; the row padding_idx
(if given) starts at zero and receives no gradient. Input: integer indices of any shape (...);
output (..., embedding_dim). Non-integer or out-of-range indices raise an error naming the layer.
"""
import numpy as np

from . import init
from .functional.embedding import EmbeddingFn, check_indices
from .functional.utils import raw
from .module import Module
from .parameter import Parameter
from ..core import Tensor


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, _weight=None):
        super().__init__()
        for arg, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Embedding: {arg} must be a positive int, got {value!r}")
        if max_norm is not None:
            raise ValueError("Embedding: max_norm is not supported in minicompress (leave it None)")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings={num_embeddings}")
            padding_idx = int(padding_idx) % num_embeddings
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        if _weight is None:
            self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype=np.float32))
            self.reset_parameters()
        else:
            if tuple(np.shape(raw(_weight))) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight has shape {tuple(np.shape(raw(_weight)))}, expected "
                                 f"({num_embeddings}, {embedding_dim})")
            self.weight = Parameter(raw(_weight))

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """An Embedding holding `embeddings` (num_embeddings, embedding_dim); frozen unless freeze=False."""
        arr = np.asarray(raw(embeddings))
        if arr.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape {arr.shape}")
        layer = cls(arr.shape[0], arr.shape[1], padding_idx=padding_idx, _weight=arr)
        layer.weight.requires_grad = not freeze
        return layer

    def forward(self, indices):
        idx = check_indices(indices, self.num_embeddings, repr(self))
        return EmbeddingFn.apply(Tensor._wrap(idx, False), self.weight, self.padding_idx)

    def extra_repr(self):
        extra = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{extra}"
