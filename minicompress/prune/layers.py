"""Which layers can be pruned, and how an output channel flows to the layers that consume it.

    prunable_layers(model)       {name: Linear | Conv2d}, in named_modules order
    execution_order(model)       [(name, leaf module), ...] in the order a Sequential tree runs them
    channel_params(model, name)  every (module, param_name) whose axis 0 is layer `name`'s output channel:
                                 the layer's weight rows and bias, plus the BatchNorm right after it

A *channel group* c of a producer (Linear row / Conv2d filter) is weight[c], bias[c] and, when a
BatchNorm follows, its weight[c] and bias[c]: zeroing all of them makes channel c exactly 0 after the
BatchNorm (eval: 0 * x_hat + 0; train: the same), so a ReLU / max-pool keeps it 0 and the next layer
can drop its input channel c (see shrink.py). Data flow is only known through `Sequential` containers.
"""
from collections import OrderedDict

from .. import nn


def nn_type(name):
    """The nn layer class called `name`, or a placeholder type nothing is an instance of (not built yet)."""
    return getattr(nn, name, type(f"Missing{name}", (), {}))


def producer_types():
    return (nn.Linear, nn_type("Conv2d"))


def batchnorm_types():
    return (nn_type("BatchNorm1d"), nn_type("BatchNorm2d"))


def prunable_layers(model, names=None):
    """{name: module} of the Linear and Conv2d layers of `model` (all of them, or exactly `names`)."""
    modules = dict(model.named_modules())
    if names is None:
        found = OrderedDict((n, m) for n, m in modules.items() if isinstance(m, producer_types()))
        if not found:
            raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to prune")
        return found
    if isinstance(names, str):
        names = [names]
    found = OrderedDict()
    for name in names:
        if name not in modules:
            raise ValueError(f"no layer named {name!r} in {type(model).__name__}; layers: "
                             f"{[n for n in modules if n]}")
        if not isinstance(modules[name], producer_types()):
            raise TypeError(f"layer {name!r} is a {type(modules[name]).__name__}; pruning applies to "
                            f"Linear and Conv2d layers")
        found[name] = modules[name]
    return found


def execution_order(model, prefix=""):
    """Leaves of a tree of Sequential containers, in the order they run. ValueError for other containers."""
    if isinstance(model, nn.Sequential):
        leaves = []
        for child_name, child in model.named_children():
            leaves += execution_order(child, f"{prefix}.{child_name}" if prefix else child_name)
        return leaves
    if any(True for _ in model.named_children()):
        raise ValueError(f"module {prefix or type(model).__name__!r} ({type(model).__name__}) has its own "
                         f"forward(); the data flow between layers is only known through Sequential containers")
    return [(prefix, model)]


def following_batchnorm(model, name):
    """(bn_name, bn) if the leaf right after layer `name` in a Sequential tree is a BatchNorm, else None."""
    try:
        leaves = execution_order(model)
    except ValueError:
        return None
    names = [n for n, _ in leaves]
    if name not in names:
        return None
    i = names.index(name)
    if i + 1 < len(leaves) and isinstance(leaves[i + 1][1], batchnorm_types()):
        return leaves[i + 1]
    return None


def channel_params(model, name):
    """[(module, param_name), ...] whose axis 0 indexes the output channels of layer `name`."""
    layer = model.get_submodule(name)
    params = [(layer, "weight")] + ([(layer, "bias")] if layer.bias is not None else [])
    bn = following_batchnorm(model, name)
    if bn is not None:
        bn_module = bn[1]
        params += [(bn_module, p) for p in ("weight", "bias") if getattr(bn_module, p, None) is not None]
    return params
