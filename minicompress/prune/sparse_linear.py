"""`SparseLinear`: inference for an unstructured-pruned Linear with the weight in CSR form (scipy.sparse).

    y = x W^T + b   computed as   y^T = W_csr @ x^T        W (out, in) with nnz nonzeros

CSR stores the nonzeros row by row (`data`, `indices` = their columns, `indptr` = where each row starts),
so the product costs O(nnz * batch) instead of O(out * in * batch), but with indirect, irregular memory
access. It beats a dense BLAS GEMM only when the weight is very sparse *and* the batch is small; see
benchmarks/pruning.py for where it wins and where it loses on this machine. Inference only: no gradient.
(Gale et al., "The State of Sparsity in Deep Neural Networks", 2019, on why unstructured sparsity
rarely speeds things up on dense hardware.)
"""
import copy

import numpy as np
import scipy.sparse

from ..core import Tensor
from ..nn import Linear, Module


class SparseLinear(Module):
    def __init__(self, weight_csr, bias=None):
        super().__init__()
        self.weight_csr = scipy.sparse.csr_matrix(weight_csr, dtype=np.float32)
        self.out_features, self.in_features = self.weight_csr.shape
        self.register_buffer("bias", None if bias is None else np.asarray(bias, dtype=np.float32).copy())

    @classmethod
    def from_dense(cls, linear):
        """CSR copy of a Linear's weight (its zeros are dropped) and its bias."""
        if not isinstance(linear, Linear):
            raise TypeError(f"SparseLinear.from_dense expects a Linear, got {type(linear).__name__}")
        bias = None if linear.bias is None else linear.bias.data
        return cls(scipy.sparse.csr_matrix(linear.weight.data), bias)

    @property
    def nnz(self):
        return int(self.weight_csr.nnz)

    @property
    def density(self):
        return self.nnz / (self.out_features * self.in_features)

    def forward(self, x):
        data = x.data if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
        if data.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear: input has shape {data.shape}, expected the last dimension to be "
                             f"in_features={self.in_features}")
        rows = data.reshape(-1, self.in_features)
        out = np.asarray((self.weight_csr @ rows.T).T, dtype=np.float32)
        if self.bias is not None:
            out = out + self.bias
        return Tensor(out.reshape(data.shape[:-1] + (self.out_features,)))

    def to_dense(self):
        """Back to a Linear with the same weight and bias."""
        linear = Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.weight.data = self.weight_csr.toarray().astype(np.float32)
        if self.bias is not None:
            linear.bias.data = self.bias.copy()
        return linear

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}"


def sparsify_linears(model, min_sparsity=0.0):
    """A copy of `model` with every Linear whose weight sparsity is >= min_sparsity replaced by SparseLinear."""
    out = copy.deepcopy(model)
    for name, module in list(out.named_modules()):
        if isinstance(module, Linear) and name:
            sparsity = 1.0 - np.count_nonzero(module.weight.data) / module.weight.data.size
            if sparsity >= min_sparsity:
                out.set_submodule(name, SparseLinear.from_dense(module))
    return out
