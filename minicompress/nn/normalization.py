"""Normalisation layers, as torch.nn: LayerNorm, BatchNorm1d, BatchNorm2d.

LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)      (Ba et al., 2016)
    y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing normalized_shape axes.
    state_dict: weight, bias (shape normalized_shape; ones and zeros at start).
BatchNorm1d / BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)
    (Ioffe & Szegedy, 2015). Input (N, C) or (N, C, L) for 1d, (N, C, H, W) for 2d.
    train(): normalise with the batch's per-channel mean and biased variance, and update
        running_mean <- (1 - m) running_mean + m mean,  running_var <- (1 - m) running_var + m var_unbiased
        (momentum=None: m = 1 / num_batches_tracked, a cumulative average, as PyTorch).
    eval(): normalise with running_mean / running_var.
    state_dict: weight, bias (C,), running_mean (C,) zeros, running_var (C,) ones, num_batches_tracked () int64.
Formulas and backward passes in `nn/functional/normalization.py`.
"""
import numpy as np

from . import functional as F
from .module import Module
from .parameter import Parameter


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if not shape or not all(isinstance(n, (int, np.integer)) and n > 0 for n in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be a positive int or tuple of them, "
                             f"got {normalized_shape!r}")
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps, self.elementwise_affine = float(eps), elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=np.float32))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=np.float32))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[x.ndim - k:]) != self.normalized_shape:
            raise ValueError(f"{self!r}: input has shape {tuple(x.shape)}, expected its trailing dimensions "
                             f"to be normalized_shape={self.normalized_shape}")
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class _BatchNorm(Module):
    input_ranks = ()          # the accepted input ranks
    expected = ""             # the accepted shapes, for error messages

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive int, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=np.float32))
            self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked = np.array(0, dtype=np.int64)

    def forward(self, x):
        if x.ndim not in self.input_ranks:
            raise ValueError(f"{self!r}: expected input of shape {self.expected}, got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: input has {x.shape[1]} channels (shape {tuple(x.shape)}, channels on "
                             f"axis 1), expected num_features={self.num_features}")
        track = self.training and self.track_running_stats
        momentum = self.momentum
        if track and momentum is None:  # cumulative moving average
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        use_batch_stats = self.training or self.running_mean is None
        out = F.batch_norm(x, self.running_mean if (not self.training or track) else None,
                           self.running_var if (not self.training or track) else None,
                           self.weight, self.bias, use_batch_stats, momentum, self.eps)
        if track:  # counted after the call, so a rejected input changes nothing
            self.num_batches_tracked = np.asarray(self.num_batches_tracked + 1, dtype=np.int64)
        return out

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    input_ranks = (2, 3)
    expected = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    input_ranks = (4,)
    expected = "(N, C, H, W)"
