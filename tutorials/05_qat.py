# %% [markdown]
# # 05 · Quantization-aware training at 4 bits
#
# At 8 bits post-training quantization loses almost nothing; at 4 bits (16 levels) the rounding noise is
# large. QAT (Jacob et al. 2018; Krishnamoorthi 2018) trains *through* the quantizer: the forward pass uses
# fake-quantized weights and activations, the backward pass the straight-through estimator.
# 1. PTQ at 4 bits with MinMax and with the histogram observers;  2. prepare_qat: FakeQuantize everywhere,
# Conv+BN as one ConvBn2d whose folded weight is what gets quantized;  3. a short fine-tune, BN statistics
# frozen after a chosen step;  4. convert to the integer model;  5. LSQ: learn the step sizes too.
# `MINICOMPRESS_FAST=1`: one short epoch.

# %%
import os

import numpy as np

import minicompress as mc
from minicompress import quant
from minicompress.train import Recipe

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
EPOCHS = 1 if FAST else 3
mc.manual_seed(0)
X_train, y_train, X_test, y_test = mc.data.digits_split()
model = mc.models.pretrained("mlp")
accuracy = lambda m: mc.train.evaluate(m, (X_test, y_test))   # noqa: E731
print(f"float {accuracy(model):.4f}")
# -> float 0.9806

# %% [markdown]
# ## 1. PTQ at 4 bits: the observer matters

# %%
def ptq(qconfig):
    prepared = quant.prepare(model, qconfig)
    for i in range(0, 512, 128):
        prepared(mc.Tensor(X_train[i:i + 128]))
    return quant.convert(prepared)

for obs in [quant.MinMaxObserver, quant.HistogramObserver, quant.MSEObserver, quant.EntropyObserver]:
    qc = quant.QConfig(activation=obs.with_args(dtype="quint4"), weight=quant.int4_qconfig.weight)
    print(f"PTQ w4a4 {obs.__name__:18s} {accuracy(ptq(qc)):.4f}")
# -> PTQ w4a4 MinMaxObserver     0.9778
# -> PTQ w4a4 HistogramObserver  0.9778
# -> PTQ w4a4 MSEObserver        0.9806
# -> PTQ w4a4 EntropyObserver    0.9806

# %% [markdown]
# ## 2. prepare_qat
# Every Linear gets FakeQuantize modules (moving-average min/max for activations, per-channel for weights).
# For a CNN, Conv2d + BatchNorm2d become one ConvBn2d: y = conv(x, fake_quant(w·γ/σ)) -- the weight the
# integer model will use -- with BN statistics still learned until `freeze_bn_step`.

# %%
qat = quant.prepare_qat(model, quant.int4_qat_qconfig)
print(qat[0])
# -> Observed(relu=True
# ->   (module): Linear(in_features=64, out_features=128, bias=True)
# ->   (input_observer): FakeQuantize(fake_quant_enabled=1, observer_enabled=1, quant_range=[0, 15], scale=[1.], zero_point=[0]
# ->     (activation_post_process): MovingAverageMinMaxObserver(dtype=quint4, qscheme=per_tensor_affine, quant_range=[0, 15], no data yet)
# ->   )
# ->   (weight_observer): FakeQuantize(fake_quant_enabled=1, observer_enabled=1, quant_range=[-8, 7], scale=[1.], zero_point=[0]
# ->     (activation_post_process): PerChannelMinMaxObserver(dtype=qint4, qscheme=per_channel_symmetric, quant_range=[-8, 7], no data yet)
# ->   )
# ->   (output_observer): FakeQuantize(... MovingAverageMinMaxObserver(dtype=quint4, ...)
# -> )

# %% [markdown]
# ## 3. Fine-tune (a few epochs, small learning rate), then freeze the observers and convert

# %%
mc.train.fit(qat, (X_train, y_train), recipe=Recipe(epochs=EPOCHS, lr=3e-4, weight_decay=0.0), verbose=False)
qat.apply(quant.disable_observer)          # evaluation must not move the moving-average ranges
print(f"QAT fake-quant {accuracy(qat.eval()):.4f}")
qmodel = quant.convert(qat)
print(f"QAT integer    {accuracy(qmodel):.4f}")
# -> QAT fake-quant 0.9750
# -> QAT integer    0.9778
# (they may differ by a sample: the integer model rounds its bias to s_x·s_w and requantizes in fixed point)

# %%
# 4-bit weights take half a byte: two codes per byte (low nibble first, ONNX's INT4 layout), unpacked to int8
# once, when the layer builds its kernel
layer = qmodel[0]
print(layer.weight_int4.dtype, layer.weight_int4.shape, "->", layer.weight_int.dtype, layer.weight_int.shape)
print(f"bytes: float {quant.model_size_bytes(model)}, int4 {quant.model_size_bytes(qmodel)}")
# -> uint8 (4096,) -> int8 (128, 64)
# -> bytes: float 68904, int4 11340

# %% [markdown]
# ## 4. Conv + BN: folded while training, statistics frozen after a chosen step

# %%
cnn = mc.models.pretrained("cnn")
cnn_qat = quant.prepare_qat(cnn, quant.int4_qat_qconfig, freeze_bn_step=8)
print(cnn_qat[1].module)
mc.train.fit(cnn_qat, (X_train[:512], y_train[:512]), recipe=Recipe(epochs=1, lr=3e-4, weight_decay=0.0),
             verbose=False)
print(cnn_qat[1].module)
cnn_qat.apply(quant.disable_observer)
print(f"CNN float {mc.train.evaluate(cnn, (X_test, y_test)):.4f}  QAT int4 {accuracy(quant.convert(cnn_qat)):.4f}")
# -> ConvBn2d(freeze_bn_step=8, steps=0, bn_frozen=False ...
# -> ConvBn2d(freeze_bn_step=8, steps=8, bn_frozen=True ...
# -> CNN float 0.9889  QAT int4 0.9861

# %% [markdown]
# ## 5. LSQ: learn the step sizes (Esser et al., ICLR 2020)
# d x̂/ds = rint(v) - v inside the range, qmin or qmax outside (v = x/s), scaled by 1/sqrt(N·Qp).

# %%
lsq = quant.prepare_qat(model, quant.lsq_qconfig(4))
mc.train.fit(lsq, (X_train, y_train), recipe=Recipe(epochs=EPOCHS, lr=3e-4, weight_decay=0.0), verbose=False)
print(f"LSQ w4a4 integer {accuracy(quant.convert(lsq)):.4f}")
# -> LSQ w4a4 integer 0.9806
