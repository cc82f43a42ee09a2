# %% [markdown]
# # 04 · Post-training quantization: a float CNN becomes an integer CNN
#
# Static PTQ (Jacob et al., CVPR 2018) in three calls -- prepare, calibrate, convert -- then a look inside:
# 1. prepare: BatchNorm folded into the conv, ReLU fused, observers attached;  2. calibration = running batches;
# 3. convert: int8 weights, int32 bias, fixed-point requantization M = M0·2^-n, uint8 activations passed as
# integers from layer to layer;  4. accuracy, bytes, layer-by-layer error;  5. the integer model equals its
# fake-quantized twin;  6. dynamic quantization of the transformer (the seed's BERT example).
# Uses the zoo's pretrained models (trained once and cached on disk; the first run trains them).

# %%
import numpy as np

import minicompress as mc
from minicompress import quant

mc.manual_seed(0)
X_train, y_train, X_test, y_test = mc.data.digits_split()
model = mc.models.pretrained("cnn")
print(model)
# -> CNN(
# ->   (0): Unflatten(dim=1, unflattened_size=(1, 8, 8))
# ->   (1): Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
# ->   (2): BatchNorm2d(16, ...)   (3): ReLU()   (4): Conv2d(16, 32, ...)   (5): BatchNorm2d(32, ...)   (6): ReLU()
# ->   (7): MaxPool2d(kernel_size=2, ...)   (8): Flatten(...)   (9): Linear(in_features=512, out_features=10, bias=True)

# %% [markdown]
# ## 1. prepare: a copy with observers
# Each conv / linear gets an input, a weight and an output observer; inside a Sequential the input observer
# of a layer *is* the output observer of the layer before, so the two agree on one scale (no requantization
# between them). The model passed in is not changed.

# %%
prepared = quant.prepare(model, quant.per_channel_qconfig)
print(prepared[1])
print(type(prepared[2]).__name__, "-", prepared[2].note)
# -> Observed(relu=True
# ->   (module): Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
# ->   (input_observer): MinMaxObserver(dtype=quint8, qscheme=per_tensor_affine, quant_range=[0, 255], no data yet)
# ->   (weight_observer): PerChannelMinMaxObserver(dtype=qint8, qscheme=per_channel_symmetric, quant_range=[-128, 127], no data yet)
# ->   (output_observer): MinMaxObserver(dtype=quint8, qscheme=per_tensor_affine, quant_range=[0, 255], no data yet)
# -> )
# -> Identity - BatchNorm2d folded into the previous conv

# %% [markdown]
# ## 2. Calibration is just running data through the prepared model

# %%
for i in range(0, 512, 128):
    prepared(mc.Tensor(X_train[i:i + 128]))
print(prepared[1].output_observer)
# -> MinMaxObserver(dtype=quint8, qscheme=per_tensor_affine, quant_range=[0, 255], range=[0, 4.766], scale=0.01869, zero_point=0)

# %% [markdown]
# ## 3. convert: integer modules
# q_y = clamp(round((Σ (q_x - z_x) q_w + q_b) · M) + z_y), with M = s_x s_w / s_y = M0 · 2^-n (one M per channel).

# %%
qmodel = quant.convert(prepared)
print(qmodel[1])
print("M0 / 2^31 =", qmodel[1].multiplier_m0[:3] / 2 ** 31, " n =", 31 + qmodel[1].multiplier_shift[:3])
# -> QuantizedConv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), relu=True
# ->   weight: qint8 per_channel_symmetric scale in [0.00568, 0.022], zp in [0, 0] (PerChannelMinMaxObserver)
# ->   input:  quint8 per_tensor_affine scale=0.003922, zp=0 (MinMaxObserver)
# ->   output: quint8 per_tensor_affine scale=0.01869, zp=0 (MinMaxObserver) -> QTensor)
# -> M0 / 2^31 = [0.69036368 0.82818162 0.7665507 ]  n = [39 39 39]

# %% [markdown]
# ## 4. Accuracy, bytes and the error layer by layer

# %%
acc_float = mc.train.evaluate(model, (X_test, y_test))
acc_int8 = mc.train.evaluate(qmodel, (X_test, y_test))
print(f"accuracy float {acc_float:.4f}  int8 {acc_int8:.4f}")
print(f"bytes    float {quant.model_size_bytes(model)}  int8 {quant.model_size_bytes(qmodel)}")
print(quant.format_comparison(quant.compare_models(model, qmodel, X_test)))
# -> accuracy float 0.9889  int8 0.9889
# -> bytes    float 40504  int8 10684
# -> layer                            mse   sqnr_db    cosine
# -> 0                          0.000e+00       inf   1.00000
# -> 1+3                        3.279e-05     40.28   0.99995     (conv 1 with BN 2 folded and ReLU 3 fused)
# -> 4+6                        3.562e-05     38.32   0.99993
# -> 7                          6.571e-05     40.12   0.99995
# -> 8                          6.571e-05     40.12   0.99995
# -> 9                          4.554e-04     37.35   0.99991
# -> (model output)             4.554e-04     37.35   0.99991
# (exact numbers depend on the cached pretrained weights)

# %% [markdown]
# ## 5. The integer model equals the fake-quantized model
# `simulate(prepared)` is the float model with every observer replaced by a fixed fake quantizer (same
# scales, bias rounded to s_x·s_w). The integer model agrees with it to within one output step everywhere.

# %%
sim = quant.simulate(prepared)
yq, ys = qmodel(mc.Tensor(X_test)).data, sim(mc.Tensor(X_test)).data
step = qmodel[9].out_qp.scale
print("max |int - fake| in output steps:", np.abs(yq - ys).max() / step,
      " fraction exactly equal:", np.mean(np.abs(yq - ys) < 1e-3 * step))
# -> max |int - fake| in output steps: 0.0  fraction exactly equal: 1.0

# %% [markdown]
# ## 6. Dynamic quantization (weights int8 ahead of time, activations measured per batch)

# %%
transformer = mc.models.pretrained("tiny_transformer")
dyn = quant.quantize_dynamic(transformer)
print(dyn.encoder.layers[0].self_attn)
print(f"accuracy float {mc.train.evaluate(transformer, (X_test, y_test)):.4f}  "
      f"dynamic int8 {mc.train.evaluate(dyn, (X_test, y_test)):.4f}  "
      f"bytes {quant.model_size_bytes(dyn) / quant.model_size_bytes(transformer):.2f}x")
# -> DynamicQuantizedMultiheadAttention(embed_dim=32, num_heads=4, batch_first=True
# ->   (in_proj): DynamicQuantizedLinear(in_features=32, out_features=96, weight: qint8 per_channel_symmetric ...)
# ->   (out_proj): DynamicQuantizedLinear(in_features=32, out_features=32, ...)
# -> )
# -> accuracy float 0.9778  dynamic int8 0.9806  bytes 0.33x
