"""Folding an eval-mode BatchNorm into the convolution or linear layer before it.

In eval mode BatchNorm is an affine map per channel c, so it can be baked into the weights:

    y = gamma_c (conv(x)_c - mu_c) / sqrt(var_c + eps) + beta_c,   s_c = gamma_c / sqrt(var_c + eps)
    w'_c = w_c s_c          b'_c = (b_c - mu_c) s_c + beta_c

(Jacob et al., CVPR 2018, section 3.2; torch.nn.utils.fusion.fuse_conv_bn_eval). The product is formed
in float64 and rounded once to the layer's dtype. Linear + BatchNorm1d on (N, C) inputs is the same with
w of shape (C, in). `fold_bn_params` works on arrays (graph rewrites); `fuse_conv_bn` / `fuse_linear_bn`
on layers, returning a new layer and leaving both inputs unchanged.
"""
import copy

import numpy as np

from .. import nn


def fold_bn_params(weight, bias, running_mean, running_var, gamma=None, beta=None, eps=1e-5):
    """(w', b') for a layer with weight (C, ...) and bias (C,) or None, followed by eval-mode BatchNorm."""
    c = weight.shape[0]
    for arg, value in (("running_mean", running_mean), ("running_var", running_var), ("gamma", gamma),
                       ("beta", beta), ("bias", bias)):
        if value is not None and np.shape(value) != (c,):
            raise ValueError(f"fold_bn_params: {arg} has shape {np.shape(value)}, expected ({c},) -- one value "
                             f"per output channel of the weight of shape {weight.shape}")
    scale = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    if gamma is not None:
        scale = scale * np.asarray(gamma, np.float64)
    b = np.zeros(c) if bias is None else np.asarray(bias, np.float64)
    new_bias = (b - np.asarray(running_mean, np.float64)) * scale
    if beta is not None:
        new_bias = new_bias + np.asarray(beta, np.float64)
    new_weight = np.asarray(weight, np.float64) * scale.reshape((c,) + (1,) * (weight.ndim - 1))
    return new_weight.astype(weight.dtype), new_bias.astype(weight.dtype)


def _fuse(layer, bn, kind, bn_types):
    if not isinstance(bn, bn_types):
        raise TypeError(f"fuse_{kind}_bn: bn must be {' or '.join(t.__name__ for t in bn_types)}, "
                        f"got {type(bn).__name__}")
    if bn.training:
        raise ValueError(f"fuse_{kind}_bn: the BatchNorm is in training mode; folding uses its running "
                         "statistics, which is only exact in eval mode -- call .eval() first")
    if bn.running_mean is None:
        raise ValueError(f"fuse_{kind}_bn: the BatchNorm has no running statistics (track_running_stats=False)")
    out_channels = layer.weight.shape[0]
    if bn.num_features != out_channels:
        raise ValueError(f"fuse_{kind}_bn: the layer has {out_channels} output channels but the BatchNorm has "
                         f"num_features={bn.num_features}")
    weight, bias = fold_bn_params(layer.weight.data, None if layer.bias is None else layer.bias.data,
                                  bn.running_mean, bn.running_var,
                                  None if bn.weight is None else bn.weight.data,
                                  None if bn.bias is None else bn.bias.data, bn.eps)
    fused = copy.deepcopy(layer)
    fused.weight = nn.Parameter(weight)
    fused.bias = nn.Parameter(bias)
    return fused.eval()


def fuse_conv_bn(conv, bn):
    """A new Conv2d computing bn(conv(x)) for eval-mode `bn` (see the module docstring)."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"fuse_conv_bn: conv must be an nn.Conv2d, got {type(conv).__name__}")
    return _fuse(conv, bn, "conv", (nn.BatchNorm2d,))


def fuse_linear_bn(linear, bn):
    """A new Linear computing bn(linear(x)) for eval-mode BatchNorm1d on (N, C) inputs."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"fuse_linear_bn: linear must be an nn.Linear, got {type(linear).__name__}")
    return _fuse(linear, bn, "linear", (nn.BatchNorm1d,))
