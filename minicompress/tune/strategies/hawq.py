"""HAWQ strategy: mixed 8/4-bit quantization ordered by Hessian-trace sensitivity.

1. Rank operators by Omega_i = Tr(H_ii)/n_i * ||Q_4(W_i) - W_i||^2 (see `tune/hessian.py`; Hutchinson's
   estimator with finite-difference Hessian-vector products), least sensitive first.
2. Try the k least sensitive operators in INT4 and the rest in INT8, for k = n, n-1, ..., 1 (most compressed
   first), then all-INT8.
3. Still short of the goal: fall back the most sensitive operators to bf16, then fp32 (accumulated).

`sensitivities` ({op: Omega}) skips step 1 (tests script it; users may bring their own ranking).
Reference: Dong et al., "HAWQ-V2: Hessian Aware trace-Weighted Quantization", NeurIPS 2020.
"""
from ..hessian import hawq_sensitivity
from ..space import uniform_config, with_ops
from .base import Strategy, accumulate_stage


class HAWQStrategy(Strategy):
    name = "hawq"

    def __init__(self, sensitivities=None, n_samples=8, eps=1e-5, low_bits_dtype="int4"):
        self.sensitivities = sensitivities
        self.n_samples, self.eps, self.low_bits_dtype = n_samples, eps, low_bits_dtype

    def search(self, ctx):
        sens = self.sensitivities
        if sens is None:
            sens = hawq_sensitivity(ctx.model, ctx.ops, ctx.calib_data, n_samples=self.n_samples, eps=self.eps)
        missing = [op for op in ctx.ops if op not in sens]
        if missing:
            raise ValueError(f"hawq strategy: no sensitivity for operators {missing}")
        self.sensitivities = dict(sens)
        order = sorted(ctx.ops, key=lambda op: (sens[op], ctx.ops.index(op)))  # least sensitive first
        base = uniform_config(ctx.ops, "int8", ctx.recipes[0])
        for k in range(len(order), 0, -1):
            yield with_ops(base, order[:k], self.low_bits_dtype), \
                f"hawq: {self.low_bits_dtype} for the {k} least sensitive ({', '.join(order[:k])})"
        yield base, "hawq: all int8"
        yield from accumulate_stage(ctx, base, order[::-1], "hawq most-sensitive")
