"""`NMSparseLinear`: an N:M-pruned Linear stored compressed -- the kept weights and their positions, the
format of 2:4 sparse tensor cores (NVIDIA Ampere; Mishra et al., "Accelerating Sparse Deep Neural
Networks", 2021).

    W (out, in), in a multiple of m, at most n nonzeros in every group of m consecutive inputs of a row
    values     float32 (out, in / m, n)   the kept weights of each group, in position order
    positions  their places in the group (0 .. m - 1), packed `bits` = 1, 2, 4 or 8 to a field in uint8
               (bits = ceil(log2 m) rounded up to a divisor of 8: 2 for 2:4, so four positions per byte)
    bytes of W = out * in * n / m * (4 + bits / 8)       2:4: 0.5 + 1/16 = 0.5625 of the dense float32 weight

Inference rebuilds the dense weight (one table lookup and one scatter) at every call and multiplies with BLAS:
the storage is compressed, the arithmetic is dense. Sparse tensor cores skip the zero half of the products in
hardware; NumPy has nothing of the kind, so here N:M saves bytes, not time (measured in the tour).
Inference only: no gradient.
"""
import copy
import math

import numpy as np

from ..core import Tensor
from ..nn import Linear, Module
from .masks import n_of_m_mask


def position_bits(m):
    """Bits per stored position: ceil(log2 m), rounded up to 1, 2, 4 or 8 so that fields never straddle bytes."""
    if not 2 <= m <= 256:
        raise ValueError(f"position_bits: groups of m = 2 .. 256 weights are supported, got m={m}")
    need = max(1, math.ceil(math.log2(m)))
    return next(b for b in (1, 2, 4, 8) if b >= need)


def pack_positions(positions, bits):
    """uint8 positions (any shape, each < 2^bits) -> uint8 [ceil(size * bits / 8)], first field in the low bits."""
    per_byte = 8 // bits
    flat = np.asarray(positions).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"pack_positions: positions must lie in [0, {(1 << bits) - 1}] for {bits} bits, got "
                         f"[{flat.min()}, {flat.max()}]")
    flat = flat.astype(np.uint8)
    padded = np.zeros(-(-flat.size // per_byte) * per_byte, np.uint8)
    padded[:flat.size] = flat
    fields = padded.reshape(-1, per_byte).astype(np.uint16) << (bits * np.arange(per_byte, dtype=np.uint16))
    return fields.sum(axis=1).astype(np.uint8)


def _fields_of_every_byte(bits):
    """table[byte] = the 8 // bits fields of that byte, first field (low bits) first: uint8 [256, 8 // bits]."""
    per_byte = 8 // bits
    byte = np.arange(256, dtype=np.uint16)[:, None]
    return ((byte >> (bits * np.arange(per_byte, dtype=np.uint16))) & ((1 << bits) - 1)).astype(np.uint8)


FIELDS = {bits: _fields_of_every_byte(bits) for bits in (1, 2, 4, 8)}


def unpack_positions(packed, bits, count):
    """The first `count` positions of pack_positions' bytes, as uint8 (one table lookup per byte)."""
    return FIELDS[bits][packed].reshape(-1)[:count]


class NMSparseLinear(Module):
    def __init__(self, values, packed_positions, n, m, bias=None):
        super().__init__()
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 3 or values.shape[2] != n or not 0 < n < m <= 256:
            raise ValueError(f"NMSparseLinear: values must be (out, in / m, n) with 0 < n < m <= 256, got shape "
                             f"{values.shape} for n={n}, m={m}")
        self.n, self.m, self.bits = int(n), int(m), position_bits(m)
        self.out_features, self.in_features = values.shape[0], values.shape[1] * self.m
        packed_positions = np.asarray(packed_positions)
        expected = -(-values.size * self.bits // 8)
        if packed_positions.dtype != np.uint8 or packed_positions.shape != (expected,):
            raise ValueError(f"NMSparseLinear: packed positions must be uint8 of shape ({expected},) for "
                             f"{values.size} values at {self.bits} bits, got {packed_positions.dtype} "
                             f"{packed_positions.shape}")
        self.register_buffer("values", values)
        self.register_buffer("positions", packed_positions)
        self.register_buffer("bias", None if bias is None else np.asarray(bias, dtype=np.float32).copy())

    @classmethod
    def from_dense(cls, linear, n, m, name="linear"):
        """Compress a Linear whose weight already has at most n nonzeros in every m consecutive inputs."""
        if not isinstance(linear, Linear):
            raise TypeError(f"NMSparseLinear.from_dense expects a Linear, got {type(linear).__name__}")
        w = linear.weight.data
        out, inp = w.shape
        if not 0 < n < m <= 256 or inp % m:
            raise ValueError(f"{name}: {n}:{m} needs 0 < n < m <= 256 and in_features ({inp}) a multiple of m={m}")
        keep = n_of_m_mask(w, n, m)                                  # the n largest |w| of every group
        dropped = np.count_nonzero(w[~keep])
        if dropped:
            raise ValueError(f"{name}: the weight is not {n}:{m} sparse ({dropped} nonzeros outside the {n} largest "
                             f"of their group of {m}); prune it first, e.g. mc.prune.Pruner(model, None, '{n}:{m}')")
        groups = keep.reshape(out, inp // m, m)
        values = w.reshape(out, inp // m, m)[groups].reshape(out, inp // m, n)
        positions = np.nonzero(groups)[2].astype(np.uint8)       # C order: ascending within each group
        bias = None if linear.bias is None else linear.bias.data
        return cls(values, pack_positions(positions, position_bits(m)), n, m, bias)

    def dense_weight(self):
        """The (out, in) float32 weight: the values scattered back to their positions, zeros elsewhere.
        Value v of group g (groups numbered row by row) goes to flat index g * m + position[v]."""
        count = self.values.size
        group_starts = np.arange(0, count // self.n * self.m, self.m).repeat(self.n)
        dense = np.zeros(self.out_features * self.in_features, np.float32)
        dense[group_starts + unpack_positions(self.positions, self.bits, count)] = self.values.reshape(-1)
        return dense.reshape(self.out_features, self.in_features)

    def forward(self, x):
        data = x.data if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
        if data.shape[-1] != self.in_features:
            raise ValueError(f"NMSparseLinear: input has shape {data.shape}, expected the last dimension to be "
                             f"in_features={self.in_features}")
        out = data @ self.dense_weight().T
        if self.bias is not None:
            out = out + self.bias
        return Tensor(out)

    def to_dense(self):
        """Back to a Linear with the same weight and bias."""
        linear = Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.weight.data = self.dense_weight()
        if self.bias is not None:
            linear.bias.data = self.bias.copy()
        return linear

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self.n}:{self.m}, "
                f"positions {self.bits} bits")


def compress_n_of_m(model, n=2, m=4):
    """A copy of `model` with every Linear compressed to NMSparseLinear (each must already be n:m sparse:
    a ValueError names the first that is not, and the model is left as it was)."""
    out = copy.deepcopy(model)
    linears = [(name, module) for name, module in out.named_modules() if isinstance(module, Linear) and name]
    if not linears:
        raise ValueError("compress_n_of_m: the model has no Linear layer to compress")
    compressed = [(name, NMSparseLinear.from_dense(module, n, m, name)) for name, module in linears]
    for name, layer in compressed:
        out.set_submodule(name, layer)
    return out
