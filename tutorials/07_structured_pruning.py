# %% [markdown]
# # 07 · Structured pruning: remove whole filters, and really shrink the network
#
# Unstructured zeros save nothing on a dense kernel. Structured pruning removes whole output channels
# (conv filters / Linear rows); once they are zero, the layer and the next layer's inputs can be cut
# out, giving a smaller *dense* model that is genuinely faster.
#
# 1. filter importance: L1 norms (Li et al. 2017) and first-order Taylor (Molchanov et al. 2017);
# 2. channel pruning of the zoo CNN: a channel is its filter, bias and the BatchNorm after it;
# 3. `shrink`: the smaller dense model, identical outputs, params and MACs;
# 4. group lasso (Wen et al. 2016) with the proximal step: training itself zeroes whole filters;
# 5. what shrink refuses.
# Runs in seconds with the cached pretrained CNN (`MINICOMPRESS_FAST=1` shortens the fine-tuning).

# %%
import os
import time

import numpy as np

import minicompress as mc
from minicompress import nn
from minicompress.prune import (GroupLasso, Pruner, count_macs, count_params, group_norms, make_schedule, shrink,
                                taylor_scores)
from minicompress.train import Recipe

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
X, y, Xt, yt = mc.data.digits_split()
cnn = mc.models.pretrained("cnn")
base = mc.train.evaluate(cnn, (Xt, yt))
print(cnn)
print(f"accuracy {base:.3f}")
# -> Sequential( (0): Unflatten ... (1): Conv2d(1, 16, ...) (2): BatchNorm2d(16) ... (9): Linear(512 -> 10) )
# -> accuracy 0.989

# %% [markdown]
# ## 1. Which filters matter?
# L1 norm of each filter of the second conv, and the Taylor score |w * dL/dw| summed over a few batches.

# %%
l1 = group_norms(cnn[4].weight, "channel", norm="l1")
taylor = taylor_scores(cnn, (X, y), num_batches=4, layers=["4"])["4"].reshape(32, -1).sum(axis=1)
print("L1 ranks    :", np.argsort(l1)[:8])
print("Taylor ranks:", np.argsort(taylor)[:8])
print("rank correlation:", round(np.corrcoef(np.argsort(np.argsort(l1)), np.argsort(np.argsort(taylor)))[0, 1], 2))
# -> the 8 least important filters by each criterion; the two rankings agree only partly

# %% [markdown]
# ## 2. Channel pruning with fine-tuning
# Half of the filters of both convs go, gradually (AGP over the first 40 % of the steps). A pruned channel
# is its filter, its bias and the following BatchNorm's weight and bias, so its output is exactly 0.

# %%
model = mc.models.pretrained("cnn")
epochs = 1 if FAST else 4
steps = epochs * -(-len(X) // 64)
pruner = Pruner(model, 0.5, "channel", layers=["1", "4"],
                schedule=make_schedule("agp", begin_step=0, end_step=max(1, int(0.4 * steps)), frequency=5))
mc.manual_seed(0)
mc.train.fit(model, (X, y), recipe=Recipe(epochs=epochs, lr=2e-3, weight_decay=0.0, label_smoothing=0.1),
             callbacks=[pruner], verbose=False)
print(f"50 % of filters pruned + {epochs} epochs: {mc.train.evaluate(model, (Xt, yt)):.3f} (dense {base:.3f})")
# -> 50 % of filters pruned + 4 epochs: 0.989 (dense 0.989)

# %% [markdown]
# ## 3. Shrink: a smaller dense network
# `shrink` walks the Sequential model, cuts the dead output channels of each conv (and its BatchNorm),
# and the matching input channels of the next conv -- or, through Flatten, the 16 matching inputs per
# channel of the Linear. The outputs do not change.

# %%
small = shrink(model)
print(small[1], small[4], small[9], sep="\n")
with mc.no_grad():
    diff = np.abs(small.eval()(mc.Tensor(Xt)).data - model.eval()(mc.Tensor(Xt)).data).max()
print(f"max |shrunk - masked| = {diff:.1e}")
x1 = Xt[:1]
print(f"params {count_params(cnn)} -> {count_params(small)},  MACs {count_macs(cnn, x1)} -> {count_macs(small, x1)}")
# -> Conv2d(1, 8, kernel_size=(3, 3), ...)  Conv2d(8, 16, ...)  Linear(in_features=256, out_features=10, ...)
# -> max |shrunk - masked| = ~1e-6  (float32 summation order)
# -> params 10026 -> 3866,  MACs 309248 -> 80896


def best_of(model, n=20):
    model.eval()
    times = []
    with mc.no_grad():
        for _ in range(n):
            start = time.perf_counter()
            model(mc.Tensor(Xt))
            times.append(time.perf_counter() - start)
    return min(times)


best_of(cnn, 1), best_of(small, 1)  # warm-up
print(f"inference speed-up on 360 digits: {best_of(cnn) / best_of(small):.1f}x")
# -> inference speed-up on 360 digits: 1.1x .. 1.9x (noisy on a busy machine; see benchmarks/pruning.py)

# %% [markdown]
# ## 4. Group lasso: let training choose the neurons
# lambda * sum_g ||w_g||_2 over channel groups; after every plain-SGD step the proximal step
# w_g <- max(0, 1 - lr*lambda/||w_g||) w_g sets weak groups exactly to zero, and shrink removes them.
# Shown on the MLP's hidden neurons (seconds); `benchmarks/pruning.py --only lasso` does the CNN's
# filters: 65 % of them zeroed, then locked, fine-tuned and shrunk, within 1 point of the dense CNN.

# %%
mlp = mc.models.pretrained("mlp")
lasso = GroupLasso(mlp, 0.1, "channel", layers=["0", "2"])
mc.manual_seed(0)
mc.train.fit(mlp, (X, y), epochs=1 if FAST else 4, optimizer=mc.optim.SGD(mlp.parameters(), lr=0.1),
             callbacks=[lasso], verbose=False)
print({name: f"{z.sum()}/{z.size} zero" for name, z in lasso.zero_groups().items()},
      f"accuracy {mc.train.evaluate(mlp, (Xt, yt)):.3f}")
slim = shrink(mlp)
print(slim[0], slim[2], f"accuracy {mc.train.evaluate(slim, (Xt, yt)):.3f}")
# -> {'0': '26/128 zero', '2': '12/64 zero'} accuracy 0.950
# -> Linear(in_features=64, out_features=102, bias=True) Linear(in_features=102, out_features=52, bias=True) accuracy 0.950

# %% [markdown]
# ## 5. What shrink refuses
# A removed channel must reach the next layer as an exact 0. Sigmoid(0) = 0.5 does not, so shrink stops
# and names the layers (the model is left as it was).

# %%
mc.manual_seed(0)
bad = nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 2))
Pruner(bad, 0.5, "channel", layers=["0"]).prune()
try:
    shrink(bad)
except ValueError as err:
    print(str(err)[:96], "...")
# -> shrink: output channels of layer '0' (Linear) are consumed by '1' (Sigmoid), which shrink does ...
