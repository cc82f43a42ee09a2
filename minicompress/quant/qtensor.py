"""QTensor: what flows between integer layers -- an integer array and the (scale, zero_point) that give it meaning.

    real value = (q - zero_point) * scale          q: int8 / uint8 array, per-tensor scale and zero point

Quantized modules take a float Tensor (quantizing it at the float boundary) or a QTensor, and return a QTensor
when the next module is integer too, a float Tensor otherwise.
"""
import numpy as np

from ..core import Tensor
from .qparams import dequantize, quantize


class QTensor:
    __slots__ = ("q", "scale", "zero_point", "qmin", "qmax")

    def __init__(self, q, scale, zero_point, qmin, qmax):
        self.q, self.scale, self.zero_point, self.qmin, self.qmax = q, np.float32(scale), int(zero_point), qmin, qmax

    @classmethod
    def from_float(cls, x, scale, zero_point, qmin, qmax):
        arr = x.data if isinstance(x, Tensor) else np.asarray(x)
        return cls(quantize(arr, scale, zero_point, qmin, qmax), scale, zero_point, qmin, qmax)

    @property
    def shape(self):
        return self.q.shape

    def dequantize(self):
        return Tensor(dequantize(self.q, self.scale, self.zero_point))

    def with_q(self, q):
        return QTensor(q, self.scale, self.zero_point, self.qmin, self.qmax)

    def __repr__(self):
        return f"QTensor(shape={self.q.shape}, dtype={self.q.dtype}, scale={self.scale:.4g}, zero_point={self.zero_point})"
