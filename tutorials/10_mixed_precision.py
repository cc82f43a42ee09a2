# %% [markdown]
# # 10 · Mixed-precision training: FP32 master weights, BF16/FP16 compute, loss scaling
#
# Mixed precision (Micikevicius et al., ICLR 2018) trains with low-precision arithmetic and keeps three
# things in FP32: the master weights, the ops that need range or accuracy (softmax, norms, losses), and
# the optimiser's update. FP16 also needs **loss scaling**, because small gradients underflow.
#
# 1. why the master weights stay FP32 (BF16 swallows small updates);
# 2. why FP16 needs loss scaling (gradients below 6e-8 become 0), and `GradScaler`'s dynamic scale;
# 3. `fit(..., callbacks=[MixedPrecision("bf16")])` from scratch vs FP32, over seeds.
# `MINICOMPRESS_FAST=1` trains fewer epochs and one seed.

# %%
import os

import numpy as np

import minicompress as mc
from minicompress import precision as P
from minicompress.nn import functional as F

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
X_train, y_train, X_test, y_test = mc.data.digits_split()

# %% [markdown]
# ## 1. FP32 master weights
# An update smaller than half a BF16 ulp of the weight vanishes: with w = 1 (ulp 2^-7), w - 0.001 is w.
# A thousand such steps move an FP32 weight by 1.0 and a BF16 weight not at all.

# %%
w32, w16 = np.float32(1.0), P.round_to_bf16(np.float32(1.0))
for _ in range(1000):
    w32 = np.float32(w32 - 1e-3)
    w16 = P.round_to_bf16(w16 - np.float32(1e-3))
print(f"FP32 weight: {w32:.4f}   BF16 weight: {w16:.4f}")
# -> FP32 weight: 0.0000   BF16 weight: 1.0000
# So autocast rounds *copies* of the weights for each matmul; the parameters themselves stay FP32.

# %% [markdown]
# ## 2. FP16 gradients underflow; loss scaling lifts them
# Under autocast the backward of a low-precision op returns low-precision gradients. A gradient of 1e-9
# is below FP16's smallest subnormal (2^-24 ≈ 6e-8) and becomes 0 -- unless the loss is multiplied by S
# before backward and the FP32 gradients divided by S afterwards.

# %%
mc.manual_seed(0)
x = mc.Tensor(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
w = mc.nn.Parameter(np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32))
for scale in (1.0, 2.0 ** 16):
    w.grad = None
    with P.autocast("fp16"):
        y = F.linear(x, w)                   # FP16 op: its gradients are FP16 values
    loss = (y * 1e-9).sum()                  # a tiny loss, computed in FP32
    P.scale_grad(loss, scale).backward()     # = backward of S·loss, without changing the loss value
    print(f"S = {scale:>7g}: nonzero gradients {np.count_nonzero(w.grad / scale)}/8, "
          f"|grad| ≈ {np.abs(w.grad / scale).mean():.2e}")
# -> S =       1: nonzero gradients 0/8, |grad| ≈ 0.00e+00
# -> S =   65536: nonzero gradients 8/8, |grad| ≈ 1.58e-09

# %% [markdown]
# `GradScaler` chooses S on the fly (PyTorch's algorithm and defaults): start at 2^16; when a gradient
# overflows to inf/NaN, skip that step and halve S; after 2000 clean steps, double it. Started far too high
# (2^30), it backs off by one halving per skipped step until the gradients fit:

# %%
mc.manual_seed(0)
model = mc.models.mlp()
amp = P.MixedPrecision("fp16", scaler=P.GradScaler(init_scale=2.0 ** 30))
mc.train.fit(model, (X_train, y_train), epochs=2 if FAST else 5, callbacks=[amp], verbose=False)
print("first scales:", [f"2^{int(np.log2(s))}" for s in amp.scales[:18]])
print(f"skipped steps: {amp.skipped_steps}, final scale 2^{int(np.log2(amp.scaler.get_scale()))}, "
      f"accuracy {100 * mc.train.evaluate(model, (X_test, y_test)):.2f}%")
# -> first scales: ['2^30', '2^29', '2^28', '2^27', '2^26', '2^25', '2^24', '2^23', '2^22', '2^21', '2^20',
#                   '2^19', '2^19', '2^19', '2^19', '2^18', '2^18', '2^18']
# -> skipped steps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 24], final scale 2^17, accuracy 95.28%

# %% [markdown]
# ## 3. Training from scratch in BF16 and FP16 vs FP32
# `MixedPrecision` is a `fit` callback: it enters autocast for the forward, leaves it before backward's
# bookkeeping, and (FP16) scales the loss gradient and skips overflowing steps. Same seeds, same recipe.

# %%
seeds = [0] if FAST else [0, 1, 2]
results = {"fp32": [], "bf16": [], "fp16": []}
for seed in seeds:
    for mode in results:
        mc.manual_seed(seed)
        model = mc.models.mlp()
        callbacks = [] if mode == "fp32" else [P.MixedPrecision(mode)]
        mc.train.fit(model, (X_train, y_train), epochs=5 if FAST else None, callbacks=callbacks, verbose=False)
        results[mode].append(mc.train.evaluate(model, (X_test, y_test)))
for mode, accs in results.items():
    print(f"MLP {mode}: {100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f} %  (seeds {seeds})")
# -> MLP fp32: 98.06 ± 0.00 %  (seeds [0, 1, 2])
# -> MLP bf16: 98.33 ± 0.23 %  (seeds [0, 1, 2])
# -> MLP fp16: 97.96 ± 0.35 %  (seeds [0, 1, 2])
# Measured with the full recipe (40 epochs). BF16 training lands within seed noise of FP32 (see the
# README for the CNN and the tiny transformer).
