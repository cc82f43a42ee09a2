"""The operator categories of automatic mixed precision, as plain data you can read and edit.

    LOWER_PRECISION_OPS  compute-bound ops that gain from BF16/FP16 and tolerate it: inputs are rounded to
                         the low precision, products accumulate in FP32, the output is rounded again.
    FP32_OPS             ops whose accuracy suffers in low precision (exponentials, logs, reductions over
                         many terms, normalisations, losses): they run in FP32 and their output is FP32.
    FALLTHROUGH_OPS      cheap ops that keep their input's precision: the output is low precision iff the
                         first floating input is (relu of a BF16 tensor is BF16; batch_norm of a BF16 tensor
                         with FP32 running statistics is BF16, as cuDNN's). Any op on no list behaves like this.
    PROMOTE_OPS          element-wise ops of several tensors: low precision iff *all* floating inputs are,
                         else FP32 (BF16 + FP32 -> FP32, PyTorch's type promotion).

The names are the `name` of each `Function` (core ops: lower-cased class names such as "matmul", "add",
"exp"; nn.functional ops set theirs, e.g. "linear", "conv2d", "softmax"). `autocast` reads these sets
every time an op runs, so `FP32_OPS.add("gelu")` inside a script changes what the next forward does.
Reference: PyTorch's autocast op reference (torch.amp, "CUDA Ops that can autocast to float16").
"""

LOWER_PRECISION_OPS = {"matmul", "linear", "conv1d", "conv2d", "bmm", "baddbmm", "addmm", "conv_transpose2d"}

FALLTHROUGH_OPS = {"relu", "gelu", "silu", "sigmoid", "tanh", "elu", "hardtanh", "leaky_relu", "dropout",
                   "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "reshape", "permute",
                   "getitem", "neg", "abs", "clip", "mean", "max", "cast", "embedding"}

PROMOTE_OPS = {"add", "sub", "mul", "div", "concat", "stack", "where"}

FP32_OPS = {"softmax", "log_softmax", "layer_norm", "group_norm", "cross_entropy", "nll_loss",
            "mse_loss", "l1_loss", "kl_div", "kd_loss", "exp", "log", "pow", "sqrt", "sum", "cumsum", "norm"}


def op_category(name):
    """"lower", "fp32", "promote" or "fallthrough" for an op name (unknown names fall through)."""
    if name in LOWER_PRECISION_OPS:
        return "lower"
    if name in FP32_OPS:
        return "fp32"
    if name in PROMOTE_OPS:
        return "promote"
    return "fallthrough"
