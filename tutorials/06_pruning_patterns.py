# %% [markdown]
# # 06 · Pruning: masks, patterns, schedules
#
# Pruning sets the least important weights to zero. *Which* weights are pruned together is the
# **pattern**: single elements (unstructured), whole output rows/filters (channel), small blocks
# (`4x1`, `1x4`, `2x2`), or "keep N of every M" (`2:4`, NVIDIA's sparse tensor cores). Importance is
# the **criterion** (|w| by default); *when* is the **schedule** (one-shot, or gradually with AGP).
#
# 1. masks on a small matrix, for every pattern, with the exact counting and tie rules;
# 2. the AGP schedule of Zhu & Gupta;
# 3. the `Pruner` during fine-tuning: masks re-applied after every optimiser step;
# 4. 2:4 on the MLP, then pattern lock;
# 5. the sensitivity scan, to choose per-layer sparsities;
# 6. CSR inference for a sparse Linear, and why it is rarely faster.
# Runs in seconds with the cached pretrained MLP (`MINICOMPRESS_FAST=1` shortens the fine-tuning).

# %%
import os

import numpy as np

import minicompress as mc
from minicompress.prune import (Pruner, SparseLinear, agp_sparsity, format_sensitivity, magnitude_mask,
                                make_schedule, pick_sparsities, sensitivity_scan)
from minicompress.train import Recipe

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
X, y, Xt, yt = mc.data.digits_split()

# %% [markdown]
# ## 1. Masks and patterns
# `magnitude_mask(w, sparsity, pattern)` returns a bool mask, True = keep. Exactly
# `round(sparsity * groups)` groups are pruned, those with the smallest L1 norm; among equal scores the
# group with the lower flat index goes first, so the result is always the same.

# %%
w = np.array([[0.9, -0.1, 0.4, 0.05, -0.7, 0.3, 0.2, -0.6],
              [0.1, 0.8, -0.2, 0.3, 0.05, -0.9, 0.6, 0.1],
              [-0.3, 0.2, 0.7, -0.1, 0.4, 0.1, -0.8, 0.5],
              [0.6, -0.4, 0.1, 0.9, -0.2, 0.3, 0.1, -0.05]], dtype=np.float32)
for pattern, sparsity in [("unstructured", 0.5), ("channel", 0.5), ("4x1", 0.5), ("1x4", 0.5), ("2:4", None)]:
    mask = magnitude_mask(w, sparsity, pattern)
    print(f"{pattern:>12}: " + " | ".join("".join("x" if k else "." for k in r) for r in mask))
# -> unstructured: x.x.x..x | .x...xx. | x.x.x.xx | xx.x.x..      (x = kept, . = pruned)
# ->      channel: xxxxxxxx | ........ | xxxxxxxx | ........      whole rows
# ->          4x1: xx...xx. | xx...xx. | xx...xx. | xx...xx.      columns of 4 rows
# ->          1x4: ....xxxx | ....xxxx | ....xxxx | xxxx....      runs of 4 along a row
# ->          2:4: x.x.x..x | .x.x.xx. | x.x...xx | x..xxx..      two of every four
print(magnitude_mask(np.ones((1, 6)), 0.5))  # ties: lower indices are pruned first
# -> [[False False False  True  True  True]]

# %% [markdown]
# ## 2. Gradual pruning (AGP)
# Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 -- prune fast while there are many
# redundant weights, slowly near the end. `frequency` holds the sparsity between pruning steps.

# %%
print([round(agp_sparsity(t, 0, 100, 0.0, 0.9, frequency=10), 3) for t in range(0, 101, 10)])
# -> [0.0, 0.244, 0.439, 0.591, 0.706, 0.787, 0.842, 0.876, 0.893, 0.899, 0.9]

# %% [markdown]
# ## 3. The Pruner: masks during fine-tuning
# The Pruner is a `fit` callback: it updates the masks when the schedule says so, masks the gradients
# after backward (so momentum/Adam never push a pruned weight), and re-applies the masks after each
# optimiser step. One-shot 90 % destroys the MLP; AGP with fine-tuning recovers most of it.

# %%
base = mc.train.evaluate(mc.models.pretrained("mlp"), (Xt, yt))
one_shot = mc.models.pretrained("mlp")
Pruner(one_shot, 0.9).prune()
print(f"dense {base:.3f}   one-shot 90 %: {mc.train.evaluate(one_shot, (Xt, yt)):.3f}")
# -> dense 0.981   one-shot 90 %: 0.289

# Uniform 90 % is a poor split: the scan of section 5 shows the first layer is the sensitive one. These
# per-layer targets (90.1 % overall) come from it.
targets = {"0": 0.85, "2": 0.96, "4": 0.8}
model = mc.models.pretrained("mlp")
epochs = 1 if FAST else 6
steps = epochs * -(-len(X) // 64)
pruner = Pruner(model, targets, schedule=make_schedule("agp", begin_step=0, end_step=steps // 2, frequency=10))
mc.manual_seed(0)
mc.train.fit(model, (X, y), recipe=Recipe(epochs=epochs, lr=1e-2, weight_decay=0.0, label_smoothing=0.1),
             callbacks=[pruner], verbose=False)
print(f"AGP to 90 % + {epochs} epochs: {mc.train.evaluate(model, (Xt, yt)):.3f}")
print(pruner.format_report())
# -> AGP to 90 % + 6 epochs: 0.944   (benchmarks/pruning.py: 60 epochs -> 0.978, 0.3 point below dense)
# -> layer         type      shape                params    zeros  sparsity
# -> 0             Linear    (128, 64)              8192     6963     85.0%
# -> 2             Linear    (64, 128)              8192     7864     96.0%
# -> 4             Linear    (10, 64)                640      512     80.0%
# -> overall                                       17024    15339     90.1%

# %% [markdown]
# ## 4. 2:4 and pattern lock
# 2:4 fixes the sparsity at 50 %. After one-shot 2:4 we fine-tune with the pattern *locked*: the masks
# no longer change, only the kept weights train.

# %%
nm = mc.models.pretrained("mlp")
nm_pruner = Pruner(nm, None, "2:4").prune()
print(f"2:4 one-shot: {mc.train.evaluate(nm, (Xt, yt)):.3f}")
mc.train.fit(nm, (X, y), recipe=Recipe(epochs=1 if FAST else 3, lr=1e-3, weight_decay=0.0, label_smoothing=0.1),
             callbacks=[nm_pruner.lock()], verbose=False)
print(f"2:4 + fine-tuning: {mc.train.evaluate(nm, (Xt, yt)):.3f}")
# -> 2:4 one-shot: 0.942
# -> 2:4 + fine-tuning: 0.983

# %% [markdown]
# The zeros are still stored. Sparse tensor cores keep a 2:4 weight as its kept values plus a 2-bit position
# for each: half the values and 1/16 of a byte per weight of metadata. `compress_n_of_m` stores it that way
# (NumPy then rebuilds the dense weight for each product: the format saves bytes here, not time).

# %%
compressed = mc.prune.compress_n_of_m(nm, 2, 4)
print(compressed[0])
print(f"bytes: dense {mc.report.model_size_bytes(nm)}, compressed {mc.report.model_size_bytes(compressed)}")
print(np.allclose(compressed(mc.Tensor(Xt)).data, nm(mc.Tensor(Xt)).data, atol=1e-5))
# -> NMSparseLinear(in_features=64, out_features=128, 2:4, positions 2 bits)
# -> bytes: dense 68904, compressed 36984
# -> True

# %% [markdown]
# ## 5. Sensitivity scan
# Prune one layer at a time and watch the accuracy: flat curves can take more sparsity.

# %%
rows = sensitivity_scan(mc.models.pretrained("mlp"), lambda m: mc.train.evaluate(m, (Xt, yt)),
                        sparsities=(0.0, 0.5, 0.8, 0.9, 0.95))
print(format_sensitivity(rows))
print(pick_sparsities(rows, max_drop=0.02))
# -> layer             0%     50%     80%     90%     95%
# -> 0              0.981   0.972   0.908   0.822   0.225
# -> 2              0.981   0.981   0.981   0.969   0.878
# -> 4              0.981   0.981   0.975   0.744   0.317
# -> {'0': 0.5, '2': 0.9, '4': 0.8}    the largest scanned sparsity costing <= 2 points, per layer

# %% [markdown]
# ## 6. CSR inference
# A sparse weight in CSR form multiplies in O(nnz) work, but with irregular memory access; a dense BLAS
# GEMM is so efficient that CSR only wins for very sparse, large layers at small batch sizes
# (see `benchmarks/pruning.py --only csr`).

# %%
layer = model[0]
sparse = SparseLinear.from_dense(layer)
x = mc.Tensor(Xt[:5])
print(sparse, f"density {sparse.density:.3f}")
print("same output:", np.allclose(sparse(x).data, layer(x).data, atol=1e-5))
# -> SparseLinear(in_features=64, out_features=128, nnz=1229) density 0.150
# -> same output: True
