"""Pruning criteria: how important is each weight (element scores) or each group (group norms)?

    magnitude            s_i = |w_i|                                       (Han et al. 2015)
    group norms          ||w_g||_1 = sum |w_i|,  ||w_g||_2 = sqrt(sum w_i^2) over a pattern's groups
                         (L1 filter norms: Li et al., "Pruning Filters for Efficient ConvNets", 2017;
                         the L2 norms are what group lasso penalises: Wen et al. 2016)
    first-order Taylor   s_i = sum_b |w_i * dL_b/dw_i|  over batches b: the loss change when w_i is set
                         to 0, to first order (Molchanov et al., "Pruning CNNs for Resource Efficient
                         Inference", ICLR 2017)
    SNIP                 s_i = |w_i * dL/dw_i| / sum_j |w_j * dL/dw_j|  on one batch at initialisation,
                         normalised over all the chosen layers (Lee et al., ICLR 2019)

Element scores are weight-shaped arrays: pass them to `magnitude_mask(..., scores=s)` (which reduces
them to group scores with the pattern's L1/L2 norm) or to `Pruner(criterion=...)`.
"""
import numpy as np

from ..core import Tensor
from .layers import prunable_layers
from .masks import group_scores


def magnitude_scores(weight):
    """|w| as float64."""
    weight = weight.data if isinstance(weight, Tensor) else weight
    return np.abs(np.asarray(weight, dtype=np.float64))


def group_norms(weight, pattern="channel", norm="l2"):
    """The L1 or L2 norm of each group of `weight` under `pattern` (flat, float64)."""
    return group_scores(magnitude_scores(weight), pattern, norm)


def _default_loss():
    from ..nn.functional import cross_entropy
    return cross_entropy


def _batches(X, y, batch_size):
    X, y = np.asarray(X), np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    for start in range(0, X.shape[0], batch_size):
        yield X[start:start + batch_size], y[start:start + batch_size]


def _loss_gradients(model, x, y, loss_fn, layers):
    """dL/dW of each layer's weight on one batch (the model's own grads are left as they were)."""
    saved = {name: m.weight.grad for name, m in layers.items()}
    for m in layers.values():
        m.weight.grad = None
    loss = loss_fn(model(Tensor(x)), y)
    loss.backward()
    grads = {name: np.asarray(m.weight.grad, dtype=np.float64) for name, m in layers.items()}
    for p in model.parameters():  # backward filled every parameter's grad: leave none behind
        p.grad = None
    for name, m in layers.items():
        m.weight.grad = saved[name]
    return grads


def taylor_scores(model, data, *, loss_fn=None, batch_size=64, num_batches=None, layers=None):
    """First-order Taylor scores sum_b |w * dL_b/dw| for each layer's weight: {name: array}.

    data: (X, y) arrays, read in order (no shuffling) in batches of `batch_size`; num_batches: stop after
    that many. The model runs in eval mode (Dropout off, BatchNorm statistics untouched) and is left in
    the mode it was in, with its gradients unchanged.
    """
    loss_fn = loss_fn or _default_loss()
    layers = prunable_layers(model, layers)
    was_training = model.training
    model.eval()
    try:
        scores = {name: np.zeros(m.weight.shape) for name, m in layers.items()}
        for i, (x, y) in enumerate(_batches(data[0], data[1], batch_size)):
            if num_batches is not None and i >= num_batches:
                break
            grads = _loss_gradients(model, x, y, loss_fn, layers)
            for name, m in layers.items():
                scores[name] += np.abs(m.weight.data.astype(np.float64) * grads[name])
    finally:
        model.train(was_training)
    return scores


def snip_scores(model, x, y, *, loss_fn=None, layers=None):
    """SNIP connection sensitivity on one batch: |w * dL/dw| / (sum over all chosen layers)."""
    loss_fn = loss_fn or _default_loss()
    layers = prunable_layers(model, layers)
    was_training = model.training
    model.eval()
    try:
        grads = _loss_gradients(model, np.asarray(x), np.asarray(y), loss_fn, layers)
    finally:
        model.train(was_training)
    raw = {name: np.abs(m.weight.data.astype(np.float64) * grads[name]) for name, m in layers.items()}
    total = sum(s.sum() for s in raw.values())
    if total == 0:
        raise ValueError("snip_scores: every |w * dL/dw| is 0 (all weights or all gradients are zero)")
    return {name: s / total for name, s in raw.items()}


class TaylorAccumulator:
    """A training callback that adds |w * dL/dw| after every backward: Taylor scores gathered for free
    during fine-tuning. `scores` is {name: array}; `reset()` starts over."""

    def __init__(self, model, layers=None):
        self.layers = prunable_layers(model, layers)
        self.reset()

    def reset(self):
        self.scores = {name: np.zeros(m.weight.shape) for name, m in self.layers.items()}
        self.batches = 0

    def on_after_backward(self, state):
        for name, m in self.layers.items():
            if m.weight.grad is not None:
                self.scores[name] += np.abs(m.weight.data.astype(np.float64) * m.weight.grad)
        self.batches += 1
