# %% [markdown]
# # 02 · Number formats: FP32, BF16, FP16, FP8 -- and autocast
#
# Before quantizing to integers, the cheapest compression is a shorter float. This tutorial builds the
# formats bit by bit and then runs models in them:
#
# 1. BF16 = the upper half of a float32, rounded to nearest-even with integer arithmetic;
# 2. FP16's narrow range (overflow at 65504, underflow below 6e-8) and FP8 E4M3 / E5M2;
# 3. `autocast`: which ops run in low precision (the three op lists), and a per-layer precision report;
# 4. BF16 inference of the three zoo models.
# Runs in seconds with the cached pretrained models.

# %%
import numpy as np

import minicompress as mc
from minicompress import precision as P

# %% [markdown]
# ## 1. BF16: keep the upper 16 bits, round the lower 16
# A float32 is 1 sign, 8 exponent and 23 mantissa bits; BF16 keeps the sign, the *same* 8 exponent bits
# and 7 mantissa bits. Rounding to nearest-even is one integer addition on the bit pattern u:
# `u + 0x7FFF + ((u >> 16) & 1)`, then keep the upper half.

# %%
x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, np.pi, 1e-40, -0.0, np.inf, np.nan], dtype=np.float32)
for v, bits, r in zip(x, P.bf16_bits(x), P.round_to_bf16(x)):
    print(f"{v!s:>14} -> 0x{int(bits):04X} -> {r!s}")
# ->            1.0 -> 0x3F80 -> 1.0
# ->      1.0039062 -> 0x3F80 -> 1.0          a tie: rounds to the even mantissa (down)
# ->      1.0117188 -> 0x3F82 -> 1.015625     a tie: rounds to the even mantissa (up)
# ->      3.1415927 -> 0x4049 -> 3.140625
# ->          1e-40 -> 0x0001 -> 9.1835e-41   subnormals survive
# ->           -0.0 -> 0x8000 -> -0.0
# ->            inf -> 0x7F80 -> inf
# ->            nan -> 0x7FC0 -> nan          NaN stays NaN (quiet bit set)
print("relative spacing in [1, 2):", 2.0 ** -7, "  largest:", P.BF16_MAX)
# -> relative spacing in [1, 2): 0.0078125   largest: 3.3895313892515355e+38

# %% [markdown]
# ## 2. FP16 and FP8: more mantissa or more range
# FP16 has 10 mantissa bits (8x finer than BF16) but 5 exponent bits: activations fit, gradients may not.
# FP8 (Micikevicius et al., 2022) comes in two flavours: E4M3 (max 448, no infinity) for weights and
# activations, E5M2 (max 57344) for gradients; out-of-range values saturate or become inf/NaN.

# %%
values = np.array([0.1, 300.0, 70000.0, 1e-6, 1e-8], dtype=np.float32)
for label, r in [("fp32", values), ("bf16", P.round_to_bf16(values)), ("fp16", P.round_to_fp16(values)),
                 ("e4m3", P.round_to_fp8(values, "e4m3")), ("e4m3 no-sat", P.round_to_fp8(values, "e4m3", False)),
                 ("e5m2", P.round_to_fp8(values, "e5m2"))]:
    print(f"{label:>11}", " ".join(f"{v:>11.5g}" for v in r))
# ->        fp32         0.1         300       70000       1e-06       1e-08
# ->        bf16      0.1001         300       70144  9.9838e-07  1.0012e-08
# ->        fp16    0.099976         300         inf  1.0133e-06           0     overflow / underflow
# ->        e4m3     0.10156         288         448           0           0     saturated at 448
# -> e4m3 no-sat     0.10156         288         nan           0           0
# ->        e5m2     0.09375         320       57344           0           0
print("all E4M3 values >= 0:", np.unique(P.fp8_values("e4m3")[:127])[-6:], "... (127 codes, 0x7F = NaN)")
# -> all E4M3 values >= 0: [288. 320. 352. 384. 416. 448.] ... (127 codes, 0x7F = NaN)

# %% [markdown]
# ## 3. autocast: three lists of op names decide
# Inside `with P.autocast("bf16")`, each op looks up its name: matmul-like ops round their inputs to
# BF16, accumulate in FP32 and round the result; softmax, norms, losses, exp/log stay FP32; the rest
# (relu, reshape, add, ...) keep their inputs' precision. The lists are plain sets you can edit.

# %%
print(sorted(P.LOWER_PRECISION_OPS))
print(sorted(P.FP32_OPS)[:8], "...")
# -> ['addmm', 'baddbmm', 'bmm', 'conv1d', 'conv2d', 'conv_transpose2d', 'linear', 'matmul']
# -> ['cross_entropy', 'cumsum', 'exp', 'group_norm', 'kd_loss', 'kl_div', 'l1_loss', 'layer_norm'] ...
X_train, y_train, X_test, y_test = mc.data.digits_split()
mlp = mc.models.pretrained("mlp")
with P.autocast("bf16") as ac:
    logits = mlp(mc.Tensor(X_test[:4]))
    probs = mc.nn.functional.softmax(logits, axis=-1)
print(ac.records)
# -> [('linear', 'lower', 'bf16'), ('relu', 'fallthrough', 'bf16'), ('linear', 'lower', 'bf16'),
#     ('relu', 'fallthrough', 'bf16'), ('linear', 'lower', 'bf16'), ('softmax', 'fp32', 'fp32')]

# %% [markdown]
# The per-layer report runs the model in FP32 and under autocast with forward hooks, and shows for each
# layer which ops it ran in what, the accumulated relative error and the error the layer adds alone.

# %%
print(P.format_precision_report(P.precision_report(mlp, X_test, "bf16")))
# -> layer    type     rel_err  isolated   max_abs  ops
# -> 0        Linear  2.19e-03  2.19e-03  8.83e-03  linear:bf16
# -> 1        ReLU    2.32e-03  0.00e+00  5.77e-03  relu:bf16
# -> 2        Linear  2.19e-03  2.04e-03  1.35e-02  linear:bf16
# -> 3        ReLU    2.07e-03  0.00e+00  1.23e-02  relu:bf16
# -> 4        Linear  2.67e-03  2.43e-03  2.10e-02  linear:bf16
# -> (output) MLP     2.67e-03       nan  2.10e-02  linear:bf16x3, relu:bf16x2
# Each BF16 layer adds ~0.2-0.3 % relative error (half an ulp is 0.4 %); errors do not pile up.

# %% [markdown]
# ## 4. BF16 / FP16 inference of the zoo models
# `LowPrecision(model, dtype)` runs a model (or one layer) under autocast.

# %%
for name in ("mlp", "cnn", "tiny_transformer"):
    model = mc.models.pretrained(name)
    accs = [mc.train.evaluate(m, (X_test, y_test)) for m in
            (model, P.LowPrecision(model, "bf16"), P.LowPrecision(model, "fp16"))]
    print(f"{name:>16}: fp32 {100 * accs[0]:.2f}%  bf16 {100 * accs[1]:.2f}%  fp16 {100 * accs[2]:.2f}%")
# ->              mlp: fp32 98.06%  bf16 98.06%  fp16 98.06%
# ->              cnn: fp32 98.89%  bf16 98.89%  fp16 98.89%
# ->  tiny_transformer: fp32 97.78%  bf16 97.78%  fp16 97.78%
# (measured; all 360 test predictions agree between FP32 and BF16 for the three models; the exact
# accuracies move a little whenever the pretrained weights are retrained after a code change)
