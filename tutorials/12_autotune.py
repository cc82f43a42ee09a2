# %% [markdown]
# # 12 · Accuracy-aware auto-tuning (Neural Compressor's workflow, made transparent)
#
# Give the tuner a model, calibration batches, an evaluation function and an accuracy goal. It tries
# quantization configurations from the most compressed down -- all-INT8 with a few observer / granularity
# recipes, then operators falling back to BF16 or FP32 -- and stops at the first that meets the goal.
# Every trial is recorded; when nothing meets the goal you get the best model found and a plain message.
#
#     relative goal:  accuracy >= baseline * (1 - tolerable_loss)      (default 1 %)

# %%
import os
import tempfile

import numpy as np

import minicompress as mc
from minicompress import tune

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
model = mc.models.pretrained("mlp")  # trained on the canonical split (cached after the first call)
X_train, y_train, X_test, y_test = mc.data.digits_split()
calib = [X_train[i:i + 128] for i in range(0, 256, 128)]  # two calibration batches


def accuracy(m):
    return mc.train.evaluate(m, (X_test, y_test))


# %% [markdown]
# ## 1. A 1 % relative goal: all-INT8 is enough

# %%
result = tune.autotune(model, accuracy, calib, tolerable_loss=0.01)
print(result.met, result.trials, f"{result.baseline:.4f} -> {result.accuracy:.4f}")
print(result.history.table())
# -> True 1 0.9806 -> 0.9806          (one run on the canonical split; retrained weights may differ a little)
# -> trial     accuracy        loss  met   size KB       ms  configuration
# ->     0     0.980556      +0.00%  yes      67.3      ...  fp32 baseline
# ->     1     0.980556      +0.00%  yes      19.4      ...  all int8 (default recipe)

# %% [markdown]
# ## 2. A goal tighter than all-INT8 can meet: fallback finds a mixed configuration
# Accuracy on 360 test images barely moves under INT8, so tune on a finer metric: the test
# cross-entropy (lower is better), allowing 0.2 % more than the float model, with one recipe
# (per-channel symmetric weights, MinMax activations) so that only fallback can close the gap.

# %%
def test_nll(m):
    with mc.no_grad():
        z = m(mc.Tensor(X_test)).data.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y_test)), y_test].mean())


tight = tune.autotune(model, test_nll, calib, tolerable_loss=0.002, higher_is_better=False,
                      recipes=[tune.DEFAULT_RECIPE])
print(tight.message)
print(tight.history.table())
# -> autotune: goal met at trial 2 of 2: accuracy 0.18094 vs baseline 0.181095 (...); configuration: 0->bf16.
# -> trial     accuracy        loss  met   size KB       ms  configuration
# ->     0     0.181095      +0.00%  yes      67.3      ...  fp32 baseline
# ->     1       0.1815      +0.22%   no      19.4      ...  all int8 (default recipe)
# ->     2      0.18094      -0.09%  yes      42.1      ...  0->bf16        (one layer in bf16, two stay INT8)

# %% [markdown]
# ## 3. No configuration meets the goal: the best one found, said plainly (never None)
# Fidelity to the float model's logits (minus their mean squared difference) with no loss allowed:
# only the all-FP32 configuration could meet it, and max_trials=4 stops the search before that.

# %%
import warnings

float_logits = model(mc.Tensor(X_test)).data.astype(np.float64)


def fidelity(m):
    return -float(np.mean((m(mc.Tensor(X_test)).data - float_logits) ** 2))


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the warning repeats result.message
    hopeless = tune.autotune(model, fidelity, calib, tolerable_loss=0.0, criterion="absolute", max_trials=4,
                             measure_latency=False)
print(hopeless.met, hopeless.stop_reason, hopeless.model is not None)
print(hopeless.message)
# -> False max_trials=4 reached True
# -> autotune: goal NOT met (accuracy >= 0 (baseline 0, 0 absolute loss allowed)); max_trials=4 reached after
# ->   4 trial(s). Returning the best configuration found, trial 4: accuracy -0.000183986 (0->bf16).

# %% [markdown]
# ## 4. Mixed 8/4 bits ranked by Hessian trace (HAWQ-V2)
# Omega_i = Tr(H_i) / n_i * ||Q4(W_i) - W_i||^2, Tr(H) by Hutchinson's estimator with Hessian-vector
# products from finite differences of gradients (the autograd has no double backward).

# %%
mc.manual_seed(0)
hawq = tune.HAWQStrategy(n_samples=4 if FAST else 8)
mixed = tune.autotune(model, accuracy, calib, tolerable_loss=0.01, strategy=hawq, measure_latency=False)
print({op: f"{s:.2e}" for op, s in hawq.sensitivities.items()})
print(mixed.history.table())
# -> {'0': '1.16e-02', '2': '1.78e-03', '4': '1.88e-03'}   the least sensitive layers are tried in INT4 first
# -> trial     accuracy        loss  met   size KB       ms  configuration
# ->     0     0.980556      +0.00%  yes      67.3           fp32 baseline
# ->     1     0.980556      +0.00%  yes      11.1           all->int4     (int4 weights: two codes per byte)

# %% [markdown]
# ## 5. What was actually quantized: the per-layer report, then save / load

# %%
report = mc.report.summarize(tight.model, X_test[:64], reference=model)
print(report.table())
# -> layer type             dtype  bits w/a scheme gran.       observer  sparsity params bytes  MACs ... SQNR dB cosine
# -> 0     Linear           bf16     16/16  -      -           -             0.0%   8320 33280  8192 ...    53.3 1.00000
# -> 2     QuantizedLinear  int8      8/8   sym    per_channel MinMax        1.5%   8256  9088  8192 ...    45.0 0.99998
# -> 4     QuantizedLinear  int8      8/8   sym    per_channel MinMax        0.9%    650   780   640 ...    39.9 0.99995
# -> total: 17226 params, 43148 bytes (1.60x smaller than float), 17024 MACs, ...
path = mc.report.save(tight.model, os.path.join(tempfile.mkdtemp(), "tuned.npz"), example_input=X_test[:64],
                      metadata={"config": tight.config, "nll": tight.accuracy})
again = mc.report.load(path)
print(np.array_equal(again(mc.Tensor(X_test)).data, tight.model(mc.Tensor(X_test)).data))
# -> True                              (bit-equal outputs after the round trip)
print(f"python -m minicompress report {path}")
