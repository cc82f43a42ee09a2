# %% [markdown]
# # 03 · The arithmetic of quantization
#
# A real number x is stored as an integer q with a scale s and a zero point z:
#
#     q = clamp(rint(x / s) + z, qmin, qmax)          x̂ = (q - z) · s
#
# 1. integer ranges;  2. scale and zero point from a range (affine and symmetric);  3. round trip and its
# error bound;  4. per-channel and per-group;  5. fake quantization and its straight-through gradient;
# 6. observers: how the range is chosen (min/max, histogram L2, MSE, percentile, KL entropy).
# Runs in about a second.

# %%
import numpy as np

import minicompress as mc
from minicompress import quant

mc.manual_seed(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. Integer ranges
# signed b bits: [-2^(b-1), 2^(b-1)-1]; unsigned: [0, 2^b-1]; `reduce_range` drops one bit (PyTorch's x86
# setting), `narrow_range` drops the lowest code so that a signed range is symmetric.

# %%
for args in [dict(bits=8), dict(bits=8, signed=False), dict(bits=8, signed=False, reduce_range=True),
             dict(bits=8, narrow_range=True), dict(bits=4), dict(bits=2)]:
    print(args, "->", quant.qrange(**args))
# -> {'bits': 8} -> (-128, 127)
# -> {'bits': 8, 'signed': False} -> (0, 255)
# -> {'bits': 8, 'signed': False, 'reduce_range': True} -> (0, 127)
# -> {'bits': 8, 'narrow_range': True} -> (-127, 127)
# -> {'bits': 4} -> (-8, 7)
# -> {'bits': 2} -> (-2, 1)

# %% [markdown]
# ## 2. Scale and zero point
# The range is first widened to contain 0, so that 0.0 (padding, ReLU's output) is stored exactly.
# Affine: s = (max - min) / (qmax - qmin), z = qmin - rint(min / s). Symmetric: s = max|x| / ((qmax - qmin)/2), z = 0.

# %%
print(quant.calc_qparams(-1.0, 3.0, 0, 255))                    # affine uint8
print(quant.calc_qparams(-1.0, 3.0, -128, 127, symmetric=True))  # symmetric int8
print(quant.calc_qparams(0.5, 3.0, 0, 255))                      # min > 0: the range still starts at 0
# -> (np.float32(0.015686275), 64)
# -> (np.float32(0.023529412), 0)
# -> (np.float32(0.011764706), 0)

# %% [markdown]
# ## 3. Round trip: the error is at most s/2 inside the range; outside, values are clipped

# %%
x = np.array([-1.2, -1.0, -0.33, 0.0, 0.01, 1.0, 2.999, 3.5], dtype=np.float32)
scale, zp = quant.calc_qparams(-1.0, 3.0, 0, 255)
q = quant.quantize(x, scale, zp, 0, 255)
x_hat = quant.dequantize(q, scale, zp)
print(q, q.dtype)
print(x_hat)
print("max error inside the range:", np.abs(x - x_hat)[1:-1].max(), "<= s/2 =", scale / 2)
# -> [  0   0  43  64  65 128 255 255] uint8
# -> [-1.0039 -1.0039 -0.3294  0.      0.0157  1.0039  2.9961  2.9961]
# -> max error inside the range: 0.0056862757 <= s/2 = 0.007843138
# (-1.0 is not a grid point: the zero point 64 was rounded, so the grid is -1.0039 ... 2.9961)

# %% [markdown]
# ## 4. Per-channel and per-group weights
# One scale per output channel (axis 0 of a (out, in) weight) adapts to rows of very different sizes; per-group
# goes further, one scale per group of `group_size` inputs in each row (the 4-bit LLM weight format).

# %%
w = mc.core.rng().standard_normal((3, 8)).astype(np.float32) * np.array([[0.01], [1.0], [10.0]], np.float32)
qmin, qmax = quant.qrange(4)
def rel_error(w_hat):
    return np.abs(w - w_hat).mean(axis=1) / np.abs(w).mean(axis=1)
s_t, z_t = quant.calc_qparams(w.min(), w.max(), qmin, qmax, symmetric=True)
s_c, z_c = quant.calc_qparams(w.min(axis=1), w.max(axis=1), qmin, qmax, symmetric=True)
s_g, z_g = quant.calc_qparams_per_group(w, 4, qmin, qmax)
print("per-tensor ", rel_error(quant.dequantize(quant.quantize(w, s_t, z_t, qmin, qmax), s_t, z_t)))
print("per-channel", rel_error(quant.dequantize(quant.quantize(w, s_c, z_c, qmin, qmax, axis=0), s_c, z_c, axis=0)))
print("per-group  ", rel_error(quant.dequantize_per_group(quant.quantize_per_group(w, s_g, z_g, qmin, qmax, 4),
                                                         s_g, z_g, 4)))
# -> per-tensor  [1.     0.5527 0.0766]
# -> per-channel [0.0979 0.0724 0.0766]
# -> per-group   [0.0804 0.0797 0.0717]
# (per-tensor: the small rows all round to 0, a 100% error)

# %% [markdown]
# ## 5. Fake quantization and the straight-through estimator
# Training through rint is impossible (its derivative is 0 almost everywhere), so QAT uses x̂ in the forward
# pass and pretends dx̂/dx = 1 inside the range (0 where the value is clipped).

# %%
t = mc.Tensor(np.array([-2.0, -0.5, 0.26, 1.0, 3.0], np.float32), requires_grad=True)
y = quant.fake_quantize(t, np.float32(0.25), 0, -4, 3)       # 3-bit symmetric grid: -1.0 ... 0.75
y.sum().backward()
print(y.data, t.grad)
# -> [-1.   -0.5   0.25  0.75  0.75] [0. 1. 1. 0. 0.]

# %% [markdown]
# ## 6. Observers choose the range
# A long-tailed tensor (Laplace) at 4 bits: min/max wastes levels on rare outliers; the histogram observers
# search the clip that minimises the error (L2, a clip-factor grid, a percentile, or KL divergence).

# %%
x = mc.core.rng().laplace(size=20000).astype(np.float32)
for cls in [quant.MinMaxObserver, quant.HistogramObserver, quant.MSEObserver, quant.PercentileObserver,
            quant.EntropyObserver]:
    obs = cls(dtype="quint4")
    obs(x)
    s, z = obs.calculate_qparams()
    mse = np.mean((x - quant.dequantize(quant.quantize(x, s, z, 0, 15), s, z)) ** 2)
    lo, hi = obs.chosen_range()
    print(f"{cls.__name__:28s} range [{float(lo):6.2f}, {float(hi):5.2f}]  mse {mse:.4f}")
# -> MinMaxObserver               range [ -8.75, 11.95]  mse 0.1497
# -> HistogramObserver            range [ -5.37,  4.48]  mse 0.0510
# -> MSEObserver                  range [ -4.37,  5.97]  mse 0.0577
# -> PercentileObserver           range [ -7.88,  8.25]  mse 0.0927
# -> EntropyObserver              range [ -5.68,  5.68]  mse 0.0548
print(quant.HistogramObserver(dtype="quint4")(x) is x)
# -> True
