"""`apply_config(model, config, calib_data)`: turn a configuration dict into a model.

    int8 / int4 ops  ->  a QConfig each (qconfig_from_entry), passed to mc.quant.prepare as per-module
                         overrides; calibration batches run through the prepared copy; mc.quant.convert
    fp32 ops         ->  override None: the module stays float
    bf16 ops         ->  override None, then the converted model's module is wrapped in
                         mc.precision.LowPrecision(module, "bf16") (its ops run under bf16 autocast)

Every module that is not in `config` stays float (the default QConfig is None). `approach="dynamic"`
uses mc.quant.quantize_dynamic instead (weights quantized ahead of time, activations per batch; no
calibration). The input model is never changed (prepare works on a copy).

The mapping from the recipe words to observers (PyTorch's names):

    granularity  per_tensor -> MinMaxObserver(qscheme="per_tensor_<s>")  weights qint<bits>
                 per_channel -> PerChannelMinMaxObserver(qscheme="per_channel_<s>", ch_axis=0)
    scheme       sym -> <s> = symmetric, asym -> <s> = affine
    observer     activations quint<bits>: minmax -> MinMaxObserver, moving_average ->
                 MovingAverageMinMaxObserver, histogram -> HistogramObserver, percentile -> PercentileObserver,
                 mse -> MSEObserver, entropy -> EntropyObserver
"""
import copy

from .. import quant
from ..core import Tensor, no_grad
from .space import INT_DTYPES, check_config

ACTIVATION_OBSERVERS = {"minmax": "MinMaxObserver", "moving_average": "MovingAverageMinMaxObserver",
                        "histogram": "HistogramObserver", "percentile": "PercentileObserver",
                        "mse": "MSEObserver", "entropy": "EntropyObserver"}
APPROACHES = ("static", "dynamic")


def qconfig_from_entry(entry):
    """The mc.quant.QConfig of one operator's configuration entry (int8 / int4 only)."""
    if entry["dtype"] not in INT_DTYPES:
        raise ValueError(f"qconfig_from_entry: {entry['dtype']!r} is not a quantized dtype")
    bits = 4 if entry["dtype"] == "int4" else 8
    symmetry = "symmetric" if entry["scheme"] == "sym" else "affine"
    if entry["granularity"] == "per_channel":
        weight = quant.PerChannelMinMaxObserver.with_args(dtype=f"qint{bits}", qscheme=f"per_channel_{symmetry}",
                                                          ch_axis=0)
    else:
        weight = quant.MinMaxObserver.with_args(dtype=f"qint{bits}", qscheme=f"per_tensor_{symmetry}")
    activation = getattr(quant, ACTIVATION_OBSERVERS[entry["observer"]]).with_args(dtype=f"quint{bits}")
    return quant.QConfig(activation=activation, weight=weight)


def apply_config(model, config, calib_data, approach="static"):
    """A new model built from `model` as `config` says (see the module docstring); `model` is unchanged."""
    if approach not in APPROACHES:
        raise ValueError(f"apply_config: approach must be one of {APPROACHES}, got {approach!r}")
    check_config(config)
    names = {n for n, _ in model.named_modules()}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ValueError(f"apply_config: the configuration names operators {unknown} that are not modules of "
                         f"{type(model).__name__}")
    overrides = {op: (qconfig_from_entry(e) if e["dtype"] in INT_DTYPES else None) for op, e in config.items()}
    if any(q is not None for q in overrides.values()):
        if approach == "static":
            prepared = quant.prepare(model, None, overrides=overrides)
            prepared.eval()
            with no_grad():
                for batch in calib_data:
                    prepared(_input(batch))
            result = quant.convert(prepared)
        else:
            # {"": None}: every Linear the configuration does not name stays float (the default would quantize it)
            result = quant.quantize_dynamic(model, None, overrides={"": None, **overrides})
    else:
        result = copy.deepcopy(model)
    for op, entry in config.items():
        if entry["dtype"] == "bf16":
            result.set_submodule(op, _low_precision(result.get_submodule(op)))
    result.eval()
    return result


def _low_precision(module):
    from ..precision import LowPrecision
    return LowPrecision(module, "bf16")


def _input(batch):
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        batch = batch[0]
    return batch if isinstance(batch, Tensor) else Tensor(batch)
