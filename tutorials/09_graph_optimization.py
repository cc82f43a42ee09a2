# %% [markdown]
# # 09 · Graph optimisation: trace, rewrite, fuse
#
# A network is a DAG of operators. Before inference, tools such as Intel Neural Compressor / IPEX, ONNX
# Runtime and TensorRT *rewrite* that DAG: they fold BatchNorm into the convolution before it, apply the
# activation while the GEMM output is still in cache ("Conv2D + ReLU", "Linear + GELU", ...), merge the
# three Q/K/V projections into one GEMM, and drop what inference does not need (Dropout).
# This tutorial does all of it on minicompress's own models with `mc.graph`:
#
# 1. `trace` a model into a `Graph`, print and draw it;
# 2. fold Conv + BatchNorm by hand (`fuse_conv_bn`) and check the formula;
# 3. `optimize`: watch each rule fire, check the outputs, time it;
# 4. write your own rule (a pattern is data);
# 5. what cannot be traced;
# 6. INT8: the same machinery removes the float round-trips between integer layers.
# Runs in a few seconds: `python tutorials/09_graph_optimization.py`.

# %%
import os
import tempfile
import time

import numpy as np

import minicompress as mc
from minicompress import nn
from minicompress.graph import P, Rule, TraceError, fuse_conv_bn, optimize, trace

X, y, Xt, yt = mc.data.digits_split()
mc.manual_seed(0)

# %% [markdown]
# ## 1. Trace: run the model once and record the ops
# Known layers (Linear, Conv2d, BatchNorm, activations, pooling, ...) become one node each; operations
# between layers (`x.reshape`, `a + b`, `q @ k`) become one node each. The model is the zoo CNN, with
# BatchNorm statistics set as after training (an untrained BatchNorm is the identity).

# %%
cnn = mc.models.cnn()
rng = np.random.default_rng(0)
for m in cnn.modules():
    if isinstance(m, nn.BatchNorm2d):
        m.running_mean[...] = rng.normal(0, 0.1, m.num_features)
        m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
cnn.eval()
graph = trace(cnn, Xt[:8])
print(graph)
# -> Graph: 11 nodes, 10 ops; inputs x; outputs 9
# -> name  op          inputs  shape          params                                      attrs
# -> x     input       -       (8, 64)
# -> 0     unflatten   x       (8, 1, 8, 8)                                               dim=1, sizes=(1, 8, 8)
# -> 1     conv2d      0       (8, 16, 8, 8)  weight(16,1,3,3) bias(16)                   stride=(1, 1), ...
# -> 2     batch_norm  1       (8, 16, 8, 8)  running_mean(16) running_var(16) weight(... eps=1e-05
# -> 3     relu        2       (8, 16, 8, 8)
# -> ...   (conv2d, batch_norm, relu, max_pool2d, flatten, linear)

# %% [markdown]
# The graph runs by itself (an interpreter over NumPy kernels), on any batch size: the tracer ran the
# model on a second, larger batch too and turned batch-sized reshape targets into -1.

# %%
print(np.abs(graph(Xt[:100]) - cnn(mc.Tensor(Xt[:100])).data).max())
# -> about 1e-7 (float32 rounding: the interpreter's conv sums in another order)
figure_path = os.path.join(tempfile.gettempdir(), "cnn_graph.png")
graph.draw(path=figure_path)  # a layered drawing with matplotlib only
print("drawing saved to", figure_path)

# %% [markdown]
# ## 2. Conv + BatchNorm folding, by hand
# In eval mode BatchNorm is a per-channel affine map, so it folds into the conv weights:
# w' = w·γ/√(var+ε),  b' = (b − μ)·γ/√(var+ε) + β.

# %%
conv, bn = cnn[1], cnn[2]
folded = fuse_conv_bn(conv, bn)
s = bn.weight.data / np.sqrt(bn.running_var + bn.eps)
print(np.abs(folded.weight.data - conv.weight.data * s[:, None, None, None]).max())
# -> 0.0 (or a float32 ulp)
x_img = mc.Tensor(Xt[:4].reshape(4, 1, 8, 8))
print(np.abs(folded(x_img).data - bn(conv(x_img)).data).max())
# -> about 1e-7

# %% [markdown]
# ## 3. optimize: the passes and the rules that fire
# `optimize` traces, then runs passes of rules, each to a fixed point: clean-up (dropout, dead code,
# constant folding, common subexpressions), BatchNorm folding, layout (view/transpose chains) and the
# deck's fusions. The report says how often each rule fired.

# %%
fast_cnn, report = optimize(cnn, Xt[:8])
print(report)
# -> nodes 11 -> 7   (ops 10 -> 6)
# ->   fold_bn    2 x  # conv2d, batch_norm -> conv2d
# ->   fuse       2 x  # conv2d, relu -> conv2d+relu
print([n.label for n in fast_cnn.graph.nodes])
# -> ['input', 'unflatten', 'conv2d+relu', 'conv2d+relu', 'max_pool2d', 'flatten', 'linear']
print(np.abs(fast_cnn(Xt).data - cnn(mc.Tensor(Xt)).data).max())
# -> about 3e-7: the same function, within float32 rounding

# %% [markdown]
# The tiny transformer shows the attention patterns: Dropout disappears, the two reshape/permute
# chains of each attention block become one "restride" op, `softmax(q kᵀ / √d)` becomes one kernel,
# Linear + GELU fuse, and the final residual Add + LayerNorm fuse.

# %%
transformer = mc.models.tiny_transformer().eval()
fast_tr, report_tr = optimize(transformer, Xt[:8])
print(report_tr)
# -> nodes 66 -> 47   (ops 57 -> 42)
# ->   cleanup    6 x  # dropout (eval), identity -> nothing
# ->   cleanup    2 x  # linear(x, constant W, constant b) -> linear with parameters
# ->   layout     4 x  # view, transpose, (contiguous), view -> one restride op
# ->   fuse       2 x  # div, softmax -> scaled_masked_softmax (no mask)
# ->   fuse       1 x  # add, layer_norm -> add_layer_norm
# ->   fuse       2 x  # linear, gelu -> linear+gelu
print(np.abs(fast_tr(Xt).data - transformer(mc.Tensor(Xt)).data).max())
# -> about 5e-7


# %%
def best_ms(fn, x, repeats=10):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


with mc.no_grad():
    for name, model, fast in (("cnn", cnn, fast_cnn), ("tiny_transformer", transformer, fast_tr)):
        t0, t1 = best_ms(lambda v: model(mc.Tensor(v)), Xt[:64]), best_ms(fast, Xt[:64])
        print(f"{name}: original {t0:.2f} ms, optimised {t1:.2f} ms, speed-up {t0 / t1:.2f}x")
# -> cnn: original ... ms, optimised ... ms, speed-up ...x
# -> tiny_transformer: original ... ms, optimised ... ms, speed-up ...x
# (the ratios depend on the machine and its load; benchmarks/graph.py measures several batch sizes)

# %% [markdown]
# The deck lists these as "FP32 & BF16" patterns: the same graph runs in emulated BF16 with autocast's op
# categories (GEMMs in BF16 with FP32 accumulation, softmax / layer_norm in FP32). A fused GEMM rounds
# once, after its epilogue, where the unfused ops round twice.

# %%
with mc.no_grad(), mc.precision.autocast("bf16"):
    autocast_out = transformer(mc.Tensor(Xt)).data
bf16_unfused, _ = optimize(transformer, Xt[:8], passes=[], dtype="bf16")
bf16_fused, _ = optimize(transformer, Xt[:8], dtype="bf16")
print(np.abs(bf16_unfused(Xt).data - autocast_out).max())
# -> 0.00390625: 7 of the 3600 logits are one BF16 step apart (the interpreter's FP32 kernels sum in
# ->   another order, and a few values land on the other side of a BF16 rounding boundary); the rest equal
print(np.abs(bf16_fused(Xt).data - transformer(mc.Tensor(Xt)).data).max())
# -> about 1e-2 (BF16's own error: 8 bits of mantissa)

# %% [markdown]
# ## 4. A rule is data
# A pattern is a small tree of op types; a rule maps it to a replacement and carries a one-line comment.
# "Linear + Sigmoid" is not in the deck's FP32 list (it is in its INT8 list), so `optimize` leaves it
# alone; `epilogue_rule` builds the rule, and `passes=` runs it.

# %%
from minicompress.graph.rules import epilogue_rule  # noqa: E402

model = nn.Sequential(nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10)).eval()
my_rule = epilogue_rule("linear", (), "sigmoid")
print(my_rule.comment)
# -> # linear, sigmoid -> linear+sigmoid
fast, report = optimize(model, Xt[:8], passes=["cleanup", [my_rule]])
print([n.label for n in fast.graph.nodes])
# -> ['input', 'linear+sigmoid', 'linear']

# A hand-written pattern: relu(relu(x)) -> relu(x)
double_relu = Rule(P("relu", P("relu", name="inner")), lambda g, m: m["inner"].name, "# relu, relu -> relu")
model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.ReLU()).eval()
fast, report = optimize(model, Xt[:8], passes=[[double_relu]])
print(report)
# -> nodes 4 -> 3   (ops 3 -> 2)
# ->   pass0      1 x  # relu, relu -> relu


# %% [markdown]
# ## 5. What cannot be traced
# A trace records one path through the Python code. A branch on a tensor's *value* would take another
# path on another input, so the tracer refuses it and names the module.

# %%
class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:      # data-dependent control flow
            return x
        return -x


try:
    trace(nn.Sequential(nn.Linear(64, 4), Gate()).eval(), Xt[:8])
except TraceError as err:
    print(str(err)[:80])
# -> trace: data-dependent control flow in module '1' (Gate): bool(Tensor) while tra


# %% [markdown]
# ## 6. INT8 graphs: no float round-trips between integer layers
# `mc.quant.convert` gives integer layers. Traced, each becomes quantize → integer GEMM → dequantize, with
# float ReLU / max-pool / flatten in between: the deck's "dequant → conv → relu → quant" chains. The INT8
# rules move each dequantize past the ops that commute with it (relu on codes is max(q, z), max-pool on
# codes is max-pool), drop the dequantize → quantize pairs, and clamp the ReLU into the integer conv's
# requantization — exactly, bit for bit.

# %%
prepared = mc.quant.prepare(cnn, mc.quant.default_qconfig)
prepared(mc.Tensor(X[:256]))                     # calibrate
qcnn = mc.quant.convert(prepared)
unfused = trace(qcnn, Xt[:8])
print([n.label for n in unfused.nodes])
# -> ['input', 'unflatten', 'quantize', 'qconv2d', 'dequantize', 'identity', 'relu', 'quantize', 'qconv2d',
# ->  'dequantize', 'identity', 'relu', 'max_pool2d', 'flatten', 'quantize', 'qlinear', 'dequantize']
fused, report = optimize(unfused)
print([n.label for n in fused.graph.nodes])
# -> ['input', 'quantize', 'unflatten', 'qconv2d+relu', 'qconv2d+relu', 'int_max_pool2d', 'flatten',
# ->  'qlinear', 'dequantize']
print(np.array_equal(fused(Xt).data, unfused(Xt)), np.array_equal(unfused(Xt), qcnn(mc.Tensor(Xt)).data))
# -> True True

# %% [markdown]
# A dynamically quantized model (`mc.quant.quantize_dynamic`) has no integer tensor between its layers: each
# Linear quantizes its input from the batch's own range, multiplies in int8 and returns floats. Traced, each
# layer is one `dynamic_linear` node (with the ReLU that quantize_dynamic fused into it), running the same
# kernels as the module.

# %%
dyn_mlp = mc.quant.quantize_dynamic(mc.models.mlp().eval())
dyn_graph, _ = optimize(dyn_mlp, Xt[:8])
print([n.label for n in dyn_graph.graph.nodes])
print(np.array_equal(dyn_graph(Xt).data, dyn_mlp(mc.Tensor(Xt)).data))
# -> ['input', 'dynamic_linear+relu', 'dynamic_linear+relu', 'dynamic_linear']
# -> True
