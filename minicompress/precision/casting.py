"""Casting to a low precision and back, on arrays and on Tensors (with a straight-through gradient).

The emulation keeps every value in a float32 (or float64) array; "casting to BF16" means replacing each
value by the nearest BF16 value, so  x_low = round_to_bf16(x)  is still a float32 array and all the
float32 code that follows runs unchanged. A real cast's gradient is the identity (cast back), so

    fake_cast(x, dtype)  forward: round(x)     backward: dL/dx = dL/dx_low   (straight-through)

Names accepted for `dtype`: "bf16" / "bfloat16", "fp16" / "float16" / "half" (and np.float16), and
"fp32" / "float32" (no rounding) -- `canonical_dtype` maps them to "bf16", "fp16", "fp32".
"""
import numpy as np

from ..core import Function, Tensor
from .bf16 import round_to_bf16
from .fp16 import round_to_fp16

DTYPE_ALIASES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "half": "fp16",
                 "fp32": "fp32", "float32": "fp32"}


def canonical_dtype(dtype, allow_fp32=True, who="precision"):
    """"bf16", "fp16" or "fp32" for any accepted spelling; ValueError naming the accepted ones otherwise."""
    if isinstance(dtype, type) or isinstance(dtype, np.dtype):
        dtype = np.dtype(dtype).name
    name = DTYPE_ALIASES.get(dtype.lower()) if isinstance(dtype, str) else None
    if name is None or (name == "fp32" and not allow_fp32):
        accepted = sorted(k for k, v in DTYPE_ALIASES.items() if allow_fp32 or v != "fp32")
        raise ValueError(f"{who}: unknown dtype {dtype!r}; expected one of {accepted}")
    return name


def round_array(array, dtype):
    """`array` with every value rounded to `dtype` ("bf16" | "fp16" | "fp32"), keeping its float dtype."""
    if dtype == "fp32":
        return array
    rounded = round_to_bf16(array) if dtype == "bf16" else round_to_fp16(array)
    return rounded if rounded.dtype == array.dtype else rounded.astype(array.dtype)


def is_float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


class FakeCast(Function):
    name = "fake_cast"

    @staticmethod
    def forward(ctx, x, dtype):
        return round_array(x, dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def fake_cast(x, dtype="bf16"):
    """Tensor `x` rounded to `dtype`, straight-through gradient (a cast there and back)."""
    dtype = canonical_dtype(dtype, who="fake_cast")
    return FakeCast.apply(x if isinstance(x, Tensor) else Tensor(x), dtype)
