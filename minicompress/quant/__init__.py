"""minicompress.quant: uniform quantization from first principles (floor 3).

    qparams.py            qrange, calc_qparams, quantize, dequantize, per-group, fake_quantize, ste_grad
    observer.py           MinMax, MovingAverageMinMax, PerChannelMinMax observers
    histogram_observer.py Histogram (L2 search), Percentile, MSE (clip grid), Entropy (KL, TensorRT)
    fake_quant.py         FakeQuantize (QAT), LearnableFakeQuantize (LSQ)
    qat.py                ConvBn2d: BatchNorm folded into the conv while training, freeze_bn_stats
    qconfig.py            QConfig and presets, per-module overrides
    modules.py            what a prepared model holds (Observed, FloatFunctional, ...)
    quantized.py          integer modules (QuantizedLinear, QuantizedConv2d, QuantizedAdd, DynamicQuantizedLinear)
    integer_ops.py        the integer arithmetic, through mc.kernels
    int4.py               4-bit weight codes packed two per byte (pack_int4 / unpack_int4)
    workflow.py           prepare / convert / simulate / prepare_qat / quantize_dynamic
    inspect.py            model_size_bytes, compare_models
"""
from .fake_quant import (FakeQuantize, LearnableFakeQuantize, disable_fake_quant, disable_observer, enable_fake_quant,
                         enable_observer, lsq_fake_quantize)
from .fuse import fold_bn_into_conv
from .histogram_observer import EntropyObserver, HistogramObserver, MSEObserver, PercentileObserver
from .inspect import compare_models, format_comparison, model_size_bytes
from .modules import FloatFunctional
from .observer import MinMaxObserver, MovingAverageMinMaxObserver, ObserverBase, PerChannelMinMaxObserver
from .qconfig import (QConfig, default_dynamic_qconfig, default_qat_qconfig, default_qconfig, histogram_qconfig,
                      int4_qat_qconfig, int4_qconfig, lsq_qconfig, per_channel_qconfig, per_tensor_dynamic_qconfig,
                      symmetric_qconfig)
from .qat import ConvBn2d, freeze_bn_stats
from .qparams import (calc_qparams, calc_qparams_per_group, dequantize, dequantize_per_group, fake_quantize, qrange,
                      quantize, quantize_per_group, ste_grad)
from .qtensor import QTensor
from .quantized_attention import AttentionQConfig, attention_qconfig
from .workflow import convert, prepare, prepare_qat, quantize_dynamic, simulate

__all__ = ["AttentionQConfig", "attention_qconfig", "qrange", "calc_qparams", "quantize", "dequantize", "fake_quantize",
           "ste_grad", "calc_qparams_per_group",
           "quantize_per_group", "dequantize_per_group", "MinMaxObserver", "MovingAverageMinMaxObserver",
           "PerChannelMinMaxObserver", "HistogramObserver", "PercentileObserver", "MSEObserver", "EntropyObserver",
           "ObserverBase", "FakeQuantize", "LearnableFakeQuantize", "disable_observer", "enable_observer",
           "disable_fake_quant", "enable_fake_quant", "lsq_fake_quantize", "QConfig", "default_qconfig",
           "per_channel_qconfig", "histogram_qconfig", "symmetric_qconfig", "int4_qconfig", "default_qat_qconfig",
           "int4_qat_qconfig", "lsq_qconfig", "default_dynamic_qconfig", "per_tensor_dynamic_qconfig", "ConvBn2d", "freeze_bn_stats", "prepare", "convert", "simulate", "prepare_qat",
           "quantize_dynamic", "FloatFunctional", "QTensor", "fold_bn_into_conv", "model_size_bytes",
           "compare_models", "format_comparison"]
