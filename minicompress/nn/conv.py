"""`Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True)`.

y = conv2d(x, weight, bias): x (N, C_in, H, W) or unbatched (C_in, H, W) -> (N, C_out, Ho, Wo) with
Ho = (H + 2 padding - dilation (kh - 1) - 1) // stride + 1 (im2col + one matrix product, see
`nn/functional/conv.py`). Parameters as torch.nn.Conv2d: weight (out_channels, in_channels, kh, kw),
bias (out_channels,); default initialisation weight ~ kaiming_uniform(a = sqrt 5) = U(-1/sqrt(fan_in),
1/sqrt(fan_in)) and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels kh kw.
Only groups=1 and padding_mode="zeros" are supported (a clear ValueError otherwise).
"""
import math

import numpy as np

from . import init
from .functional.conv import conv2d
from .functional.utils import pair
from .module import Module
from .parameter import Parameter


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Conv2d: {arg} must be a positive int, got {value!r}")
        if groups != 1:
            raise ValueError(f"Conv2d: only groups=1 is supported in minicompress, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", minimum=1)
        self.stride = pair(stride, "stride", "Conv2d", minimum=1)
        self.dilation = pair(dilation, "dilation", "Conv2d", minimum=1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride=1, got stride={self.stride}")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", "Conv2d")
        self.groups, self.padding_mode = 1, padding_mode
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((out_channels, in_channels, kh, kw), dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calc_fan_in_and_fan_out(self.weight.shape)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"{self!r}: expected input of shape (N, C, H, W) (or unbatched (C, H, W)), got "
                             f"shape {tuple(x.shape)}")
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"{self!r}: input has {x.shape[-3]} channels (shape {tuple(x.shape)}), expected "
                             f"in_channels={self.in_channels}")
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
