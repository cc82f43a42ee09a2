"""Reference solutions that are not a single plain library function, written as thin wrappers of the library.

Two exercises ask for a formula the library computes inside a larger object, so the reference here calls
that object and nothing else -- the library stays the one source of truth:

    ste_grad              the straight-through gradient of fake quantization: the library's
                          FakeQuantizeFn forward + backward (minicompress/quant/qparams.py)
    group_soft_threshold  the group-lasso proximal step on a (groups, group_size) array: the library's
                          GroupLasso.proximal_step on a bias-free Linear whose weight rows are the groups
                          (minicompress/prune/group_lasso.py)
"""
import numpy as np

import minicompress as mc
from minicompress.prune.group_lasso import GroupLasso
from minicompress.quant.qparams import fake_quantize


def ste_grad(x, scale, zero_point, qmin, qmax, grad):
    """Gradient of fake_quantize(x) with the straight-through estimator (Bengio et al. 2013).

    x, grad: float32 arrays of one shape; scale > 0 and zero_point are scalars; qmin < qmax ints.
    Returns dL/dx = grad where qmin <= rint(x / scale) + zero_point <= qmax, else 0 (the clamped values).
    """
    xt = mc.Tensor(np.asarray(x, dtype=np.float32), requires_grad=True)
    out = fake_quantize(xt, scale, zero_point, qmin, qmax)
    out.backward(np.asarray(grad, dtype=np.float32))
    return xt.grad


def group_soft_threshold(groups, threshold):
    """Proximal operator of threshold * sum_g ||w_g||_2 on groups (rows of a (G, K) float array).

    Each row g becomes max(0, 1 - threshold / ||g||_2) * g: rows with ||g|| <= threshold become exactly 0,
    the others keep their direction and lose `threshold` of their length. threshold = lr * lambda >= 0.
    """
    groups = np.asarray(groups, dtype=np.float32)
    layer = mc.nn.Linear(groups.shape[1], groups.shape[0], bias=False)
    layer.weight.data[...] = groups
    lasso = GroupLasso(mc.nn.Sequential(layer), strength=float(threshold), pattern="channel")
    lasso.proximal_step(1.0)
    return layer.weight.data.copy()
