"""Physical shrinking: remove dead output channels and the matching inputs of the next layer.

Channel pruning leaves zeros; `shrink(model)` turns them into a genuinely smaller dense model (Li et al.,
"Pruning Filters for Efficient ConvNets", ICLR 2017; Distiller's "thinning"). Walking a tree of
Sequential containers in execution order, for each producer P (Linear or Conv2d):

    dead channel c   P is followed by a BatchNorm whose weight[c] = bias[c] = 0,
                     or (no BatchNorm) P.weight[c] = 0 and P.bias[c] = 0
                     -> channel c is exactly 0 where the next layer reads it
    pass-through     zero-preserving leaves between P and its consumer: ReLU, ReLU6, LeakyReLU, GELU,
                     SiLU, ELU, Tanh, Hardtanh (f(0) = 0), MaxPool2d, AvgPool2d, Dropout, Identity,
                     and Flatten (conv channel c -> Linear inputs c*HW ... (c+1)*HW - 1)
    consumer         the next Linear or Conv2d: its input channels / columns c are removed

    P.weight (out, ...) -> (kept, ...), P.bias, BatchNorm weight/bias/running_mean/running_var -> (kept,)
    consumer.weight (o, in, ...) -> (o, kept_in, ...)

The shrunk model computes the same function as the masked one (a removed channel only ever added 0),
up to float summation order. Outputs of the last layer are the model's outputs and are never removed.
Anything else between P and its consumer (Sigmoid maps 0 to 0.5, LayerNorm mixes channels, a custom
module, ...) raises a ValueError naming both layers. The input model is not changed: shrink works on a
deep copy and plans every cut before making any.
"""
import copy

import numpy as np

from ..nn import Parameter
from .layers import batchnorm_types, execution_order, nn_type, producer_types

PASS_THROUGH = ("ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "ELU", "Tanh", "Hardtanh", "MaxPool2d", "AvgPool2d",
                "Dropout", "Identity")


def _is_pass_through(module):
    return any(isinstance(module, nn_type(name)) for name in PASS_THROUGH)


def dead_channels(producer, batchnorm=None):
    """Bool per output channel of `producer`: True where its output (after `batchnorm`) is exactly 0."""
    if batchnorm is not None:
        if batchnorm.weight is None or batchnorm.bias is None:
            return np.zeros(batchnorm.num_features, dtype=bool)
        return (batchnorm.weight.data == 0) & (batchnorm.bias.data == 0)
    w = producer.weight.data.reshape(producer.weight.shape[0], -1)
    dead = ~np.any(w != 0, axis=1)
    if producer.bias is not None:
        dead &= producer.bias.data == 0
    return dead


def _check_producer(name, module):
    if getattr(module, "groups", 1) != 1:
        raise ValueError(f"shrink: layer {name!r} is a grouped convolution (groups={module.groups}); "
                         f"shrink supports groups=1 only")


def plan_shrink(model):
    """[(producer_name, batchnorm_name or None, consumer_name, keep (bool per channel), inputs_per_channel)]."""
    leaves = execution_order(model)
    plan = []
    for i, (name, module) in enumerate(leaves):
        if not isinstance(module, producer_types()):
            continue
        _check_producer(name, module)
        j = i + 1
        bn_name, bn = (leaves[j] if j < len(leaves) and isinstance(leaves[j][1], batchnorm_types())
                       else (None, None))
        if bn is not None:
            j += 1
        dead = dead_channels(module, bn)
        if not dead.any():
            continue
        flattened = False
        while j < len(leaves) and (_is_pass_through(leaves[j][1]) or isinstance(leaves[j][1], nn_type("Flatten"))):
            flattened |= isinstance(leaves[j][1], nn_type("Flatten"))
            j += 1
        if j == len(leaves):
            continue  # the model's own outputs: keep them
        consumer_name, consumer = leaves[j]
        if not isinstance(consumer, producer_types()):
            raise ValueError(f"shrink: output channels of layer {name!r} ({type(module).__name__}) are consumed by "
                             f"{consumer_name!r} ({type(consumer).__name__}), which shrink does not support; "
                             f"between two Linear/Conv2d layers it supports BatchNorm right after the producer, "
                             f"then {', '.join(PASS_THROUGH)} and Flatten")
        _check_producer(consumer_name, consumer)
        if dead.all():
            raise ValueError(f"shrink: every output channel of layer {name!r} is pruned; the network would be cut")
        channels = dead.shape[0]
        fan_in = consumer.weight.shape[1]
        if fan_in % channels or (fan_in != channels and not flattened):
            raise ValueError(f"shrink: layer {consumer_name!r} takes {fan_in} inputs but {name!r} gives "
                             f"{channels} channels")
        plan.append((name, bn_name, consumer_name, ~dead, fan_in // channels))
    return plan


def _set_param(module, attr, value):
    param = Parameter(value)
    param.data = np.ascontiguousarray(value)  # keep the dtype (Parameter() would cast float64 down)
    setattr(module, attr, param)


def _cut_outputs(module, keep):
    _set_param(module, "weight", module.weight.data[keep])
    if module.bias is not None:
        _set_param(module, "bias", module.bias.data[keep])
    for attr in ("out_features", "out_channels"):
        if attr in module.__dict__:
            object.__setattr__(module, attr, int(keep.sum()))


def _cut_batchnorm(bn, keep):
    for attr in ("weight", "bias"):
        if getattr(bn, attr, None) is not None:
            _set_param(bn, attr, getattr(bn, attr).data[keep])
    for attr in ("running_mean", "running_var"):
        if bn._buffers.get(attr) is not None:
            bn._buffers[attr] = np.ascontiguousarray(bn._buffers[attr][keep])
    object.__setattr__(bn, "num_features", int(keep.sum()))


def _cut_inputs(module, keep, per_channel):
    columns = np.repeat(keep, per_channel)
    _set_param(module, "weight", module.weight.data[:, columns])
    for attr in ("in_features", "in_channels"):
        if attr in module.__dict__:
            object.__setattr__(module, attr, int(columns.sum()))


def shrink(model):
    """A smaller dense copy of `model` without its dead channels (see the module docstring)."""
    plan = plan_shrink(model)
    small = copy.deepcopy(model)
    for producer, bn, consumer, keep, per_channel in plan:
        _cut_outputs(small.get_submodule(producer), keep)
        if bn is not None:
            _cut_batchnorm(small.get_submodule(bn), keep)
        _cut_inputs(small.get_submodule(consumer), keep, per_channel)
    return small
