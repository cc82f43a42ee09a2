"""minicompress.precision: BF16 / FP16 / FP8 emulation, autocast by op category, mixed-precision training.

    x16 = round_to_bf16(x)                       # float32 array holding BF16 values (RNE)
    with autocast("bf16"):                       # matmul/linear/conv in BF16, softmax/norms/losses in FP32
        logits = model(x)
    fit(model, data, callbacks=[MixedPrecision("fp16")])   # FP32 master weights + dynamic loss scaling
    print(format_precision_report(precision_report(model, x, "bf16")))

Files: float_format.py (generic RNE rounding to e/m bits), bf16.py, fp16.py, fp8.py, casting.py,
op_lists.py (the three editable op lists), autocast.py, low_precision.py, grad_scaler.py, amp.py, report.py.
"""
from .amp import MixedPrecision
from .autocast import autocast
from .bf16 import BF16_MAX, bf16_bits, from_bf16_bits, round_to_bf16
from .casting import canonical_dtype, fake_cast, round_array
from .float_format import round_to_format
from .fp16 import FP16_MAX, fp16_bits, from_fp16_bits, round_to_fp16
from .fp8 import FP8_FORMATS, fp8_bits, fp8_values, from_fp8_bits, round_to_fp8
from .grad_scaler import GradScaler, scale_grad
from .low_precision import LowPrecision
from .op_lists import FALLTHROUGH_OPS, FP32_OPS, LOWER_PRECISION_OPS, PROMOTE_OPS, op_category
from .report import format_precision_report, precision_report

__all__ = ["round_to_bf16", "bf16_bits", "from_bf16_bits", "BF16_MAX", "round_to_fp16", "fp16_bits",
           "from_fp16_bits", "FP16_MAX", "round_to_fp8", "fp8_bits", "from_fp8_bits", "fp8_values", "FP8_FORMATS",
           "round_to_format", "canonical_dtype", "fake_cast", "round_array", "autocast", "LowPrecision",
           "LOWER_PRECISION_OPS", "FALLTHROUGH_OPS", "PROMOTE_OPS", "FP32_OPS", "op_category", "GradScaler", "scale_grad",
           "MixedPrecision", "precision_report", "format_precision_report"]
