"""Conv + BatchNorm for quantization-aware training: BN folded into the conv weights *during* training.

At inference the BN is folded (w' = w gamma / sqrt(var + eps)), so QAT must fake-quantize the folded weight,
not w. Following Jacob et al. (CVPR 2018, section 3.2, fig. C.8) and Krishnamoorthi (2018, section 3.2),
as torch.ao.nn.intrinsic.qat.ConvBn2d does:

    f     = gamma / sqrt(running_var + eps)                  (per output channel)
    y     = conv(x, fake_quant(w * f))                       the weight the integer model will use
    train (BN live):  y = bn(y / f + b)                      BN sees the un-scaled output: batch statistics
                                                             are used and the running ones updated
    frozen or eval:   y = y + (b - running_mean) f + beta    exactly the folded conv of inference

After `freeze_bn_step` training steps (or freeze_bn_stats(model)) the BN statistics stop moving and training
continues on exactly the folded graph (Krishnamoorthi: freeze after enough steps).
"""
import numpy as np

from ..core import Tensor
from ..nn.module import Module
from .fuse import fold_bn_into_conv


class ConvBn2d(Module):
    def __init__(self, conv, bn, freeze_bn_step=None):
        super().__init__()
        self.conv, self.bn = conv, bn
        self.freeze_bn_step = freeze_bn_step
        self.register_buffer("steps", np.array(0, dtype=np.int64))
        self.register_buffer("bn_frozen", np.array(0, dtype=np.uint8))

    @property
    def weight(self):
        """The BN-folded weight w * gamma / sqrt(running_var + eps) (differentiable in w and gamma)."""
        return self.conv.weight * self._factor().reshape(-1, 1, 1, 1)

    @property
    def bias(self):
        return None

    def _factor(self):
        bn = self.bn
        std = np.sqrt(np.asarray(bn.running_var, dtype=np.float32) + np.float32(bn.eps)).astype(np.float32)
        gamma = bn.weight if bn.weight is not None else Tensor(np.ones_like(std))
        return gamma / Tensor(std)

    def freeze_bn_stats(self, frozen=True):
        self.bn_frozen = np.array(int(frozen), dtype=np.uint8)
        return self

    def forward(self, x, weight_fake_quant=None):
        from ..nn import functional as F
        factor = self._factor()
        w = self.conv.weight * factor.reshape(-1, 1, 1, 1)
        if weight_fake_quant is not None:
            w = weight_fake_quant(w)
        c = self.conv
        y = F.conv2d(x, w, None, stride=c.stride, padding=c.padding, dilation=c.dilation, groups=c.groups)
        live = self.training and not self.bn_frozen
        if live:
            y = y / factor.reshape(1, -1, 1, 1)
            if c.bias is not None:
                y = y + c.bias.reshape(1, -1, 1, 1)
            y = self.bn(y)
        else:
            b = c.bias if c.bias is not None else Tensor(np.zeros(factor.shape, dtype=np.float32))
            beta = self.bn.bias if self.bn.bias is not None else Tensor(np.zeros(factor.shape, dtype=np.float32))
            bias = (b - Tensor(np.asarray(self.bn.running_mean, dtype=np.float32))) * factor + beta
            y = y + bias.reshape(1, -1, 1, 1)
        if self.training:
            self.steps = np.array(self.steps + 1, dtype=np.int64)
            if self.freeze_bn_step is not None and self.steps >= self.freeze_bn_step:
                self.freeze_bn_stats()
        return y

    def folded(self):
        """The inference Conv2d with the BN folded in (running statistics)."""
        return fold_bn_into_conv(self.conv, self.bn)

    def extra_repr(self):
        return f"freeze_bn_step={self.freeze_bn_step}, steps={int(self.steps)}, bn_frozen={bool(self.bn_frozen)}"


def freeze_bn_stats(model, frozen=True):
    """Freeze (or unfreeze) the BN statistics of every ConvBn2d in `model`."""
    for m in model.modules():
        if isinstance(m, ConvBn2d):
            m.freeze_bn_stats(frozen)
    return model
