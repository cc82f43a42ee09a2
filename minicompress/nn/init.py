"""Weight initialisation, with PyTorch's defaults (so an untrained model here matches one there in law).

    kaiming_uniform_(w, a):  U(-b, b),  b = gain * sqrt(3 / fan_in),  gain = sqrt(2 / (1 + a^2))
        Linear and Conv2d use a = sqrt(5), which gives b = 1 / sqrt(fan_in)   (He et al., 2015)
    xavier_uniform_(w):      U(-b, b),  b = sqrt(6 / (fan_in + fan_out))      (Glorot & Bengio, 2010)
    fan_in = in_features * kernel area;  fan_out = out_features * kernel area.
All draws use the library's generator, so `mc.manual_seed` fixes them.
"""
import math

import numpy as np

from ..core import rng


def calc_fan_in_and_fan_out(shape):
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a weight of at least 2 dimensions, got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform_(tensor, low=0.0, high=1.0):
    tensor.data[...] = rng().uniform(low, high, size=tensor.shape)
    return tensor


def normal_(tensor, mean=0.0, std=1.0):
    tensor.data[...] = rng().normal(mean, std, size=tensor.shape)
    return tensor


def zeros_(tensor):
    tensor.data[...] = 0
    return tensor


def ones_(tensor):
    tensor.data[...] = 1
    return tensor


def kaiming_uniform_(tensor, a=0.0):
    fan_in, _ = calc_fan_in_and_fan_out(tensor.shape)
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound)


def xavier_uniform_(tensor, gain=1.0):
    fan_in, fan_out = calc_fan_in_and_fan_out(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)
