"""Fold an eval-mode BatchNorm into the convolution before it (inference only):

    w' = w * gamma / sqrt(var + eps)          (per output channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta

so conv'(x) = bn(conv(x)) with BN's running statistics. (Jacob et al. 2018, section 3.2; torch.ao's
fuse_conv_bn_eval.) Returns a NEW Conv2d; the inputs are not changed.
"""
import copy

import numpy as np

from ..nn.parameter import Parameter


def fold_bn_into_conv(conv, bn):
    w = conv.weight.data.astype(np.float64)
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"fold_bn_into_conv: {type(bn).__name__} has no running statistics to fold")
    if w.shape[0] != np.asarray(bn.running_mean).shape[0]:
        raise ValueError(f"fold_bn_into_conv: conv has {w.shape[0]} output channels, BatchNorm has "
                         f"{np.asarray(bn.running_mean).shape[0]} features")
    gamma = bn.weight.data.astype(np.float64) if getattr(bn, "weight", None) is not None else 1.0
    beta = bn.bias.data.astype(np.float64) if getattr(bn, "bias", None) is not None else 0.0
    factor = gamma / np.sqrt(np.asarray(bn.running_var, dtype=np.float64) + bn.eps)
    b = conv.bias.data.astype(np.float64) if conv.bias is not None else 0.0
    fused = copy.deepcopy(conv)
    fused.weight = Parameter((w * factor.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32))
    fused.bias = Parameter(((b - np.asarray(bn.running_mean, dtype=np.float64)) * factor + beta).astype(np.float32))
    return fused
