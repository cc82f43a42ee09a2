"""QConfig: which observer (or fake quantizer) watches activations and which watches weights.

    QConfig(activation=factory, weight=factory)   # factories: callables with no arguments -> a Module

as torch.ao.quantization.QConfig. A factory is usually `Observer.with_args(...)`; each quantized layer
calls it to get its own observer. Presets (INT8 unless named otherwise):

    default_qconfig            activations quint8 affine MinMax, weights qint8 per-tensor symmetric
    per_channel_qconfig        activations quint8 affine MinMax, weights qint8 per-channel symmetric (ch_axis=0)
    histogram_qconfig          as per_channel_qconfig with HistogramObserver activations
    symmetric_qconfig          activations qint8 per-tensor symmetric, weights qint8 per-channel symmetric
    int4_qconfig               activations quint4 affine MinMax, weights qint4 per-channel symmetric
    default_qat_qconfig        FakeQuantize: activations quint8 moving-average MinMax, weights per-channel qint8
    int4_qat_qconfig           the same with 4 bits
    lsq_qconfig(bits=4)        LearnableFakeQuantize (LSQ) on activations and weights, per tensor
    default_dynamic_qconfig    weights qint8 per-channel symmetric (activations: computed per batch at run time)
    per_tensor_dynamic_qconfig weights qint8 per-tensor symmetric: one scale per layer (PyTorch's dynamic
                               default); the smallest model when layers are narrow

`qconfig_for(name, default, overrides)` resolves per-module overrides: the entry for the longest dotted
prefix of `name` wins (so {"encoder": None} keeps the whole encoder in float), else the default.
"""
from collections import namedtuple

from ..nn.module import Module
from .fake_quant import FakeQuantize, LearnableFakeQuantize
from .histogram_observer import HistogramObserver
from .observer import MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver


class QConfig(namedtuple("QConfig", ["activation", "weight"])):
    """QConfig(activation=factory, weight=factory); each factory is called once per observed tensor."""

    __slots__ = ()

    def __new__(cls, activation, weight):
        for name, f in (("activation", activation), ("weight", weight)):
            if f is not None and (isinstance(f, Module) or not callable(f)):
                raise TypeError(f"QConfig: {name} must be a factory (e.g. MinMaxObserver.with_args(...)), "
                                f"got an instance of {type(f).__name__}")
        return super().__new__(cls, activation, weight)


def _act(bits=8, **kw):
    return MinMaxObserver.with_args(dtype=f"quint{bits}", **kw)


def _per_channel_weight(bits=8):
    return PerChannelMinMaxObserver.with_args(dtype=f"qint{bits}", qscheme="per_channel_symmetric", ch_axis=0)


default_qconfig = QConfig(activation=_act(),
                          weight=MinMaxObserver.with_args(dtype="qint8", qscheme="per_tensor_symmetric"))
per_channel_qconfig = QConfig(activation=_act(), weight=_per_channel_weight())
histogram_qconfig = QConfig(activation=HistogramObserver.with_args(dtype="quint8"), weight=_per_channel_weight())
symmetric_qconfig = QConfig(activation=MinMaxObserver.with_args(dtype="qint8", qscheme="per_tensor_symmetric"),
                            weight=_per_channel_weight())
int4_qconfig = QConfig(activation=_act(4), weight=_per_channel_weight(4))

default_qat_qconfig = QConfig(
    activation=FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, dtype="quint8"),
    weight=FakeQuantize.with_args(observer=PerChannelMinMaxObserver, dtype="qint8", qscheme="per_channel_symmetric",
                                  ch_axis=0))
int4_qat_qconfig = QConfig(
    activation=FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, dtype="quint4"),
    weight=FakeQuantize.with_args(observer=PerChannelMinMaxObserver, dtype="qint4", qscheme="per_channel_symmetric",
                                  ch_axis=0))
default_dynamic_qconfig = QConfig(activation=None, weight=_per_channel_weight())
per_tensor_dynamic_qconfig = QConfig(activation=None,
                                     weight=MinMaxObserver.with_args(dtype="qint8", qscheme="per_tensor_symmetric"))


def lsq_qconfig(bits=4):
    """LSQ (Esser et al. 2020): learnable per-tensor steps, signed activations and weights of `bits` bits."""
    return QConfig(activation=LearnableFakeQuantize.with_args(bits=bits, signed=True),
                   weight=LearnableFakeQuantize.with_args(bits=bits, signed=True))


def qconfig_for(name, default, overrides=None):
    """The QConfig (or None = float) for the module at dotted path `name`: longest matching override prefix."""
    if overrides:
        parts = name.split(".") if name else []
        for k in range(len(parts), -1, -1):
            prefix = ".".join(parts[:k])
            if prefix in overrides:
                return overrides[prefix]
    return default


def check_overrides(model, overrides, who):
    """Every override key must name a module of `model`, every value a QConfig or None."""
    if not overrides:
        return
    if not isinstance(overrides, dict):
        raise TypeError(f"{who}: overrides must be a dict {{module_name: QConfig or None}}, got "
                        f"{type(overrides).__name__}")
    names = {n for n, _ in model.named_modules()}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"{who}: overrides names '{key}', which is not a module of the model "
                             f"(modules: {', '.join(sorted(n for n in names if n)[:12])}...)")
        if value is not None and not isinstance(value, QConfig):
            raise TypeError(f"{who}: overrides['{key}'] must be a QConfig or None, got {type(value).__name__}")
