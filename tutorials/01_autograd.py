# %% [markdown]
# # 01 · Autograd on one screen, then a trained digit classifier
#
# Everything in minicompress stands on a small reverse-mode autograd: a `Tensor` wraps a NumPy array
# and remembers the `Function` that made it; `backward()` walks that graph in reverse topological order
# and applies each op's `backward`. Then `fit` trains the zoo's MLP on the embedded digits.
#
# 1. a Tensor and its gradient;  2. a Function of your own;  3. checking it with `gradcheck`;
# 4. the MLP trained with `fit` in a few lines.  Runs in a few seconds (`MINICOMPRESS_FAST=1`: fewer epochs).

# %%
import os

import numpy as np

import minicompress as mc
from minicompress.core import Function

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
mc.manual_seed(0)

# %% [markdown]
# ## 1. A Tensor remembers how it was computed
# y = Σ x² + 3x  has dy/dx = 2x + 3.

# %%
x = mc.Tensor([1.0, -2.0, 0.5], requires_grad=True)
y = (x * x + 3 * x).sum()
y.backward()
print(y, x.grad)
# -> Tensor(3.75, requires_grad=True) [ 5. -1.  4.]

# %% [markdown]
# ## 2. A Function: forward and backward on NumPy arrays
# softplus(a) = log(1 + e^a), d softplus / da = sigmoid(a). `forward` saves what `backward` needs;
# `backward` gets dL/d(out) and returns one gradient per input.

# %%
class Softplus(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.logaddexp(0, a)          # log(1 + e^a) without overflow

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved
        return (grad / (1 + np.exp(-a)),)  # grad * sigmoid(a)


x = mc.Tensor([-1.0, 0.0, 2.0], requires_grad=True)
Softplus.apply(x).sum().backward()
print(np.round(x.grad, 4))
# -> [0.2689 0.5    0.8808]

# %% [markdown]
# ## 3. gradcheck: the analytic backward against central differences
# In float64, (L(x + ε) − L(x − ε)) / 2ε for every element. A wrong backward raises an AssertionError
# that names the element.

# %%
x64 = mc.Tensor(np.random.default_rng(0).normal(size=(3, 4)), dtype=np.float64, requires_grad=True)
print(mc.gradcheck(lambda t: Softplus.apply(t), [x64]))
# -> True


class WrongSoftplus(Softplus):
    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved
        return (grad / (1 + np.exp(a)),)   # a sign slip: sigmoid(-a)


try:
    mc.gradcheck(lambda t: WrongSoftplus.apply(t), [x64])
except AssertionError as err:
    print(str(err).split(":")[0], "-> the element, analytic vs numeric, and how many disagree")
# -> gradcheck -> the element, analytic vs numeric, and how many disagree

# %% [markdown]
# ## 4. Train the digits MLP with `fit`
# `mc.data.digits_split()` is the canonical split (1437 train / 360 test images, stratified, seed 0).
# `fit` reads its defaults (epochs, AdamW learning rate, batch size, label smoothing, cosine schedule)
# from the model's `recipe`, prints one line per epoch (unless verbose=False), and returns the History.

# %%
X_train, y_train, X_test, y_test = mc.data.digits_split()
model = mc.models.mlp()
print(model.recipe)
# -> Recipe(epochs=40, lr=0.01, batch_size=64, weight_decay=0.1, label_smoothing=0.1, optimizer=<class ...AdamW'>, cosine=True)
history = mc.train.fit(model, (X_train, y_train), epochs=5 if FAST else None, val_data=(X_test, y_test),
                       verbose=FAST)
for e in range(0, len(history), 10):
    print(f"epoch {e + 1:2d}: loss {history.loss[e]:.4f}  train acc {history.acc[e]:.3f}  "
          f"val acc {history.val_acc[e]:.3f}  lr {history.lr[e]:.2e}")
# -> epoch  1: loss 1.4114  train acc 0.652  val acc 0.822  lr 1.00e-02
# -> epoch 11: loss 0.5426  train acc 0.998  val acc 0.969  lr 8.54e-03
# -> epoch 21: loss 0.5216  train acc 1.000  val acc 0.975  lr 5.00e-03
# -> epoch 31: loss 0.5140  train acc 1.000  val acc 0.981  lr 1.46e-03
print(f"held-out accuracy {mc.train.evaluate(model, (X_test, y_test)):.4f}")
# -> held-out accuracy 0.9806   (the bar is 0.97; MINICOMPRESS_FAST=1 trains 5 epochs: 0.95)

# %% [markdown]
# The same loop runs every compression method later in the course: callbacks such as
# `on_loss` (add a distillation term), `on_after_backward` (mask gradients) and `on_step_end`
# (re-apply pruning masks) hook into it without copying it.
