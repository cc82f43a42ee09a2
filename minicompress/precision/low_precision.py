"""`LowPrecision(module, dtype="bf16")`: a Module that runs the module it wraps under `autocast(dtype)`.

Used to run one layer (or a whole model) in BF16/FP16 while the rest stays FP32 -- e.g. the auto-tuner's
BF16 fallback for a layer that does not tolerate INT8:

    model.set_submodule("fc2", LowPrecision(model.get_submodule("fc2"), "bf16"))

The wrapped module is the child `module`, so its parameters appear as "module.weight" etc. (as
DataParallel in PyTorch); `last_autocast.records` tells which op ran in which precision in the last call.
"""
from ..nn import Module
from .autocast import autocast
from .casting import canonical_dtype


class LowPrecision(Module):
    def __init__(self, module, dtype="bf16"):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"LowPrecision: expected a Module to wrap, got {type(module).__name__}")
        self.dtype = canonical_dtype(dtype, allow_fp32=False, who="LowPrecision")
        self.module = module
        self.last_autocast = None

    def forward(self, *args, **kwargs):
        ctx = autocast(self.dtype)
        with ctx:
            out = self.module(*args, **kwargs)
        self.last_autocast = ctx
        return out

    def extra_repr(self):
        return f"dtype={self.dtype!r}"
