"""`Dropout(p=0.5)`: inverted dropout in training mode, the identity in eval mode (torch.nn.Dropout).

y = x * m / (1 - p), m ~ Bernoulli(1 - p) per element, drawn from `mc.core.rng()` (Srivastava et al., 2014).
No parameters. Shapes: any -> the same shape.
"""
from . import functional as F
from .module import Module


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability p must be in [0, 1], got {p!r}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
