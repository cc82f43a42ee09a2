"""Group lasso (Wen et al., "Learning Structured Sparsity in Deep Neural Networks", NeurIPS 2016).

    objective  = L(w) + lambda * sum_g ||w_g||_2                 (groups: filters/channels or RxC blocks)
    proximal   w_g <- max(0, 1 - lr * lambda / ||w_g||_2) * w_g  after each optimiser step
               (the group soft-threshold: the proximal operator of lr*lambda*||.||_2; Parikh & Boyd 2014)

The L2 norm of a group is not differentiable at 0, so plain (sub)gradient descent only shrinks groups
towards zero; the proximal step sets a group *exactly* to zero as soon as ||w_g|| <= lr * lambda, and it
stays there while the loss gradient is small. As a training callback:

    on_loss      state.loss += lambda * sum_g ||w_g||   (proximal=True: added as a constant, so the loss
                 shown is the full objective and its gradient is the smooth part only -- proximal
                 gradient descent; proximal=False: with its gradient lambda * w_g / ||w_g||, 0 at w_g = 0)
    on_step_end  the proximal step (proximal=True), with each parameter's learning rate from the optimiser.
                 Exact proximal gradient descent with plain SGD. With momentum beta the gradient moves
                 the weights by up to lr/(1 - beta) per step while the prox shrinks by lr: lambda must be
                 ~1/(1 - beta) times larger; with Adam the prox is only a heuristic. Prefer plain SGD.

With pattern "channel", group c of a layer is every parameter that produces output channel c: its weight
row/filter, its bias and the following BatchNorm's weight and bias (layers.py). A zero group is then a
channel whose output is exactly 0: `zero_groups()` lists them, `Pruner.lock_pattern` keeps them at zero,
and `shrink` removes them.
"""
import numpy as np

from ..core import Function, Tensor
from .layers import channel_params, prunable_layers
from .masks import check_pattern, from_groups, parse_pattern, to_groups


def _groups_of(arrays, pattern):
    """Concatenate the group views of a layer's arrays: weight by `pattern`, 1-D vectors one row each."""
    return np.concatenate([to_groups(a, pattern) if a.ndim > 1 else a.reshape(-1, 1) for a in arrays], axis=1)


def row_norms(groups):
    """||g||_2 of every row of a (G, K) array, in float64."""
    groups = np.asarray(groups, dtype=np.float64)
    return np.sqrt((groups * groups).sum(axis=1))


def shrink_factors(norms, threshold):
    """max(0, 1 - threshold / ||g||) per group; a zero group keeps factor 0 (no division by 0)."""
    factor = np.maximum(0.0, 1.0 - threshold / np.where(norms > 0, norms, np.inf))
    factor[norms == 0] = 0.0
    return factor


def group_soft_threshold(groups, threshold):
    """The proximal operator of threshold * sum_g ||w_g||_2 on the rows of a (G, K) float array
    (Parikh & Boyd 2014, sec. 6.5.4): every row becomes max(0, 1 - threshold / ||g||_2) * g, so rows with
    ||g|| <= threshold become exactly 0 and the others keep their direction and lose `threshold` of their
    length. threshold = lr * lambda >= 0. Returns float32. GroupLasso.proximal_step applies the same factors
    to groups that span several parameters (a filter, its bias, its BatchNorm)."""
    groups = np.asarray(groups, dtype=np.float32)
    if groups.ndim != 2:
        raise ValueError(f"group_soft_threshold: groups must be 2-D (groups, group_size), got shape {groups.shape}")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"group_soft_threshold: threshold must be finite and >= 0, got {threshold!r}")
    return (groups * shrink_factors(row_norms(groups), threshold)[:, None]).astype(np.float32)


class GroupNormSum(Function):
    """sum_g ||w_g||_2 over the groups of one layer; d/dw_g = w_g / ||w_g|| (0 where w_g = 0)."""

    @staticmethod
    def forward(ctx, *arrays, pattern="channel"):
        norms = row_norms(_groups_of(arrays, pattern))
        ctx.save_for_backward(*arrays)
        ctx.pattern, ctx.norms = pattern, norms
        return np.asarray(norms.sum(), dtype=arrays[0].dtype)

    @staticmethod
    def backward(ctx, grad):
        safe = np.where(ctx.norms > 0, ctx.norms, 1.0)
        scale = np.where(ctx.norms > 0, 1.0 / safe, 0.0)[:, None] * float(grad)
        grads = []
        for a in ctx.saved:
            if a.ndim > 1:
                grads.append(from_groups(to_groups(a, ctx.pattern) * scale, a.shape, ctx.pattern).astype(a.dtype))
            else:
                grads.append((a * scale[:, 0]).astype(a.dtype))
        return tuple(grads)


class GroupLasso:
    def __init__(self, model, strength, pattern="channel", *, layers=None, proximal=True):
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength < 0:
            raise ValueError(f"GroupLasso: strength (lambda) must be a number >= 0, got {strength!r}")
        kind = parse_pattern(pattern)
        if kind[0] not in ("channel", "block"):
            raise ValueError(f"GroupLasso: pattern must be 'channel' or 'RxC' blocks, got {pattern!r}")
        self.model, self.strength, self.pattern, self.proximal = model, float(strength), pattern, proximal
        self.layers = prunable_layers(model, layers)
        self.params = {}
        for name, layer in self.layers.items():
            check_pattern(layer.weight.shape, pattern, name)
            found = channel_params(model, name) if kind[0] == "channel" else [(layer, "weight")]
            self.params[name] = [getattr(module, p) for module, p in found]

    def penalty(self):
        """lambda * sum over layers and groups of ||w_g||_2, as a Tensor (differentiable)."""
        total = None
        for params in self.params.values():
            term = GroupNormSum.apply(*params, pattern=self.pattern)
            total = term if total is None else total + term
        return total * self.strength

    def group_norms(self):
        """{name: ||w_g||_2 per group} (float64)."""
        out = {}
        for name, params in self.params.items():
            out[name] = row_norms(_groups_of([p.data for p in params], self.pattern))
        return out

    def zero_groups(self):
        """{name: bool per group, True where the whole group is exactly 0}."""
        return {name: norms == 0 for name, norms in self.group_norms().items()}

    def zero_fraction(self):
        """Fraction of all groups (over every layer) that are exactly 0."""
        zeros = self.zero_groups()
        return sum(z.sum() for z in zeros.values()) / sum(z.size for z in zeros.values())

    def proximal_step(self, lr):
        """w_g <- max(0, 1 - lr * lambda / ||w_g||) w_g for every group (lr: a float or {id(param): lr})."""
        all_norms = self.group_norms()
        for name, params in self.params.items():
            norms = all_norms[name]
            rate = lr if not isinstance(lr, dict) else lr[id(params[0])]
            factor = shrink_factors(norms, rate * self.strength)      # group_soft_threshold's factors
            for p in params:
                if p.data.ndim > 1:
                    scaled = to_groups(p.data, self.pattern) * factor[:, None]
                    p.data[...] = from_groups(scaled, p.data.shape, self.pattern)
                else:
                    p.data[...] = p.data * factor

    # ---- training callbacks -----------------------------------------------------------------------
    def on_loss(self, state):
        penalty = self.penalty()
        if self.proximal:
            penalty = Tensor(penalty.data)  # the value only: the prox handles the non-smooth part
        state.loss = state.loss + penalty

    def on_step_end(self, state):
        if self.proximal:
            self.proximal_step(learning_rates(state.optimizer))


def learning_rates(optimizer):
    """{id(param): lr} from an optimiser's param_groups."""
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[id(p)] = group["lr"]
    return rates
