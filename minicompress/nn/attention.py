"""`MultiheadAttention`: scaled dot-product attention over several heads (Vaswani et al., 2017), as
torch.nn.MultiheadAttention.

    Q = x_q W_q^T + b_q,  K = x_k W_k^T + b_k,  V = x_v W_v^T + b_v      (W_q, W_k, W_v: rows of in_proj_weight)
    split E into H heads of D = E / H:  Q, K, V -> (N, H, L, D)
    scores = Q K^T / sqrt(D) + mask                                       (N, H, L, S)
    A = softmax(scores, axis=-1);  out = concat_heads(A V) W_o^T + b_o    (N, L, E)

Parameters (PyTorch's names and shapes): in_proj_weight (3E, E), in_proj_bias (3E,), out_proj (Linear E->E).
Masks as PyTorch: `attn_mask` (L, S) or (N·H, L, S), boolean (True = may NOT attend) or float (added to the
scores); `key_padding_mask` (N, S) boolean (True = padding, ignored). The scores are computed as
`(Q K^T) / sqrt(D) + mask -> softmax`, the "Div + Add + Softmax" chain that graph fusion targets.
"""
import math

import numpy as np

from ..core import Tensor
from . import init
from .functional import dropout, linear, softmax
from .linear import Linear
from .module import Module
from .parameter import Parameter


class MultiheadAttention(Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={embed_dim} must be a positive multiple of "
                             f"num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj_weight = Parameter(np.empty((3 * embed_dim, embed_dim), dtype=np.float32))
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, dtype=np.float32))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"

    def _check(self, name, t):
        if t.ndim != 3 or t.shape[-1] != self.embed_dim:
            layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
            raise ValueError(f"{type(self).__name__}: {name} has shape {tuple(t.shape)}, expected {layout} "
                             f"with E = embed_dim = {self.embed_dim}")

    def _project(self, x, index):
        """Rows index*E..(index+1)*E of the packed projection: W_q (0), W_k (1) or W_v (2)."""
        E = self.embed_dim
        w = self.in_proj_weight[index * E:(index + 1) * E]
        b = None if self.in_proj_bias is None else self.in_proj_bias[index * E:(index + 1) * E]
        return linear(x, w, b)

    def _project_packed(self, x):
        """Q, K and V of one input in a single GEMM: (N, L, E) -> (N, L, 3E)."""
        return linear(x, self.in_proj_weight, self.in_proj_bias)

    def _in_projection(self, query, key, value):
        """(N, L, E) inputs -> Q, K, V of shape (N, H, L, D). Quantized variants override the two projections."""
        n, tgt_len, _ = query.shape
        if query is key and key is value:  # self-attention: one GEMM for Q, K and V
            qkv = self._project_packed(query)
            qkv = qkv.reshape(n, tgt_len, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            return qkv[0], qkv[1], qkv[2]
        return tuple(self._split_heads(self._project(t, i)) for i, t in enumerate((query, key, value)))

    def _split_heads(self, x):
        """(N, L, E) -> (N, H, L, D)."""
        n, length, _ = x.shape
        return x.reshape(n, length, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True):
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            self._check(name, t)
        if not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, tgt_len, _ = query.shape
        src_len = key.shape[1]
        if key.shape[0] != n or value.shape[:2] != key.shape[:2]:
            raise ValueError(f"{type(self).__name__}: query {tuple(query.shape)}, key {tuple(key.shape)} and "
                             f"value {tuple(value.shape)} disagree on batch size or source length")

        q, k, v = self._in_projection(query, key, value)

        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mask = self._merge_masks(attn_mask, key_padding_mask, n, tgt_len, src_len, scores.dtype)
        if mask is not None:
            scores = scores + mask
        weights = softmax(scores, axis=-1)
        if self.training and self.dropout > 0:
            weights = dropout(weights, self.dropout, training=True)
        out = (weights @ v).permute(0, 2, 1, 3).reshape(n, tgt_len, self.embed_dim)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, (weights.mean(axis=1) if average_attn_weights else weights)

    def _merge_masks(self, attn_mask, key_padding_mask, n, tgt_len, src_len, dtype):
        """One additive float mask broadcastable to (N, H, L, S): 0 where allowed, -inf where not."""
        total = None
        if attn_mask is not None:
            m = _additive(attn_mask, dtype, "attn_mask")
            if m.shape == (tgt_len, src_len):
                m = m[None, None]
            elif m.shape == (n * self.num_heads, tgt_len, src_len):
                m = m.reshape(n, self.num_heads, tgt_len, src_len)
            else:
                raise ValueError(f"{type(self).__name__}: attn_mask has shape {m.shape}, expected "
                                 f"({tgt_len}, {src_len}) or ({n * self.num_heads}, {tgt_len}, {src_len})")
            total = m
        if key_padding_mask is not None:
            m = _additive(key_padding_mask, dtype, "key_padding_mask")
            if m.shape != (n, src_len):
                raise ValueError(f"{type(self).__name__}: key_padding_mask has shape {m.shape}, "
                                 f"expected (N, S) = ({n}, {src_len})")
            m = m[:, None, None, :]
            total = m if total is None else total + m
        return total


def _additive(mask, dtype, name):
    """Boolean mask (True = blocked) -> 0 / -inf; float mask -> itself."""
    arr = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.dtype == np.bool_:
        return np.where(arr, -np.inf, 0.0).astype(dtype)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(dtype, copy=False)
    raise TypeError(f"MultiheadAttention: {name} must be boolean or floating, got dtype {arr.dtype}")
