"""What a model costs: parameters and multiply-accumulates (MACs) per sample.

    Linear (in -> out)                    MACs = in * out                  (per output row)
    Conv2d (C_in -> C_out, k_h x k_w)     MACs = H_out * W_out * C_out * (C_in / groups) * k_h * k_w

Counted by running one example batch through the model with forward hooks on every Linear and Conv2d
(so the spatial sizes are the real ones); BatchNorm, activations and pooling are not counted (they are
O(activations), not O(weights)). `nonzero=True` counts only MACs with a nonzero weight (the work a
sparse kernel could skip), which is what unstructured pruning reduces.
"""
import numpy as np

from ..core import Tensor, no_grad
from .layers import nn_type


def count_params(model, nonzero=False):
    """Number of parameters (or of nonzero parameters)."""
    return int(sum(np.count_nonzero(p.data) if nonzero else p.data.size for p in model.parameters()))


def count_macs(model, example_input, nonzero=False):
    """MACs per sample of Linear and Conv2d layers on `example_input` (a batch: array or Tensor)."""
    x = example_input if isinstance(example_input, Tensor) else Tensor(np.asarray(example_input, np.float32))
    batch = x.shape[0]
    total = [0]
    conv_type = nn_type("Conv2d")

    def hook(module, args, out):
        w = module.weight.data
        per_weight = np.count_nonzero(w) if nonzero else w.size
        if isinstance(module, conv_type):
            total[0] += per_weight * int(np.prod(out.shape[2:])) * out.shape[0] // batch
        else:
            total[0] += per_weight * int(np.prod(out.shape[:-1])) // batch

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn_type("Linear"), conv_type))]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0])
