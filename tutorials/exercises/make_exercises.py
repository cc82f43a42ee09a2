"""Generate the exercise stubs `exNN_slug.py` from the library's own code (the reference solutions).

    python tutorials/exercises/make_exercises.py            # rewrite every stub in this folder
    python tutorials/exercises/make_exercises.py OUT_DIR    # write them somewhere else (the test compares)

For each entry of EXERCISES below the generator takes the reference function's source
(`inspect.getsource`), keeps its signature and docstring, and replaces the body -- located with `ast`, never
with a regular expression -- by a TODO comment holding the hints and `raise NotImplementedError(...)`.
Because the stubs are generated, they can never drift from the library: after a library change, rerun this
script (tests/test_exercises.py fails until the committed stubs equal freshly generated ones).

An exercise is plain data: (number, slug, module, function, title, task, hints, header lines). The header
lines are the imports and constants the stub needs, written above the function.
"""
import ast
import importlib
import inspect
import os
import sys
import textwrap
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))

Exercise = namedtuple("Exercise", "number slug module function title task hints header")

NUMPY = ["import numpy as np"]

EXERCISES = [
    Exercise(1, "calc_qparams", "minicompress.quant.qparams", "calc_qparams",
             "scale and zero point from an observed range",
             "Compute (scale, zero_point) for affine and symmetric quantization, per tensor (scalars) and per "
             "channel (1-D arrays), in float32 as PyTorch's observers do.",
             ["Widen the range to contain 0: min_neg = min(min_val, 0), max_pos = max(max_val, 0).",
              "Affine: scale = (max_pos - min_neg) / (qmax - qmin); zero_point = qmin - rint(min_neg / scale), "
              "clamped to [qmin, qmax].",
              "Symmetric: scale = max(-min_neg, max_pos) / ((qmax - qmin) / 2); zero_point = 0 for a signed "
              "range (qmin < 0), (qmin + qmax + 1) // 2 for an unsigned one.",
              "scale never falls below FLOAT32_EPS; keep every step in float32 (np.float32 constants).",
              "Scalars in -> (np.float32, int) out; 1-D arrays in -> (float32 array, int64 array) out.",
              "Input validation is not checked by the checker."],
             NUMPY + ["", "FLOAT32_EPS = np.float32(np.finfo(np.float32).eps)"]),
    Exercise(2, "ste_grad", "minicompress.quant.qparams", "ste_grad",
             "the straight-through estimator of fake quantization",
             "Return the gradient that fake quantization passes back to its input: the incoming gradient "
             "where the value was not clamped, 0 where it was.",
             ["Round as the forward does: q = np.rint(x * (1 / scale)) + zero_point, in float32.",
              "The mask is qmin <= q <= qmax (both ends included): clamped values get no gradient.",
              "Return grad * mask: grad's dtype (float32 here), x's shape."],
             NUMPY),
    Exercise(3, "quantize_multiplier", "minicompress.kernels.requantize", "quantize_multiplier",
             "the fixed-point requantization multiplier",
             "Write a real multiplier M = s_a * s_w / s_out as M = m0 * 2^-31 * 2^-shift with an int32 m0 in "
             "[2^30, 2^31) (Jacob et al. 2018, eq. 6). Handling a scalar M is enough.",
             ["math.frexp(M) gives M = mantissa * 2^exponent with mantissa in [0.5, 1).",
              "m0 = round(mantissa * 2^31) (Python's round); if that gives 2^31, halve m0 and add 1 to the "
              "exponent.",
              "shift = -exponent. M = 0 gives (0, 0); so does shift > 62 (every int32 product rounds to 0).",
              "Return two Python ints for a scalar."],
             ["import math", ""] + NUMPY),
    Exercise(4, "n_of_m_mask", "minicompress.prune.masks", "n_of_m_mask",
             "the N:M sparsity mask (2:4)",
             "Build the bool keep-mask that keeps the n largest |scores| of every m consecutive weights along "
             "axis 1 (the input dimension), for Linear (out, in) and Conv2d (out, in, kh, kw) shapes.",
             ["Scores are compared by absolute value.",
              "Move axis 1 to the end (np.moveaxis), reshape to (-1, m): one row per group.",
              "np.argsort(..., kind='stable') along each row: the m - n smallest are pruned; among equal "
              "scores the earlier position is pruned first.",
              "Undo the reshape and the moveaxis; return a bool array of the scores' shape."],
             NUMPY),
    Exercise(5, "agp_sparsity", "minicompress.prune.schedule", "agp_sparsity",
             "the gradual (AGP) pruning schedule",
             "Zhu & Gupta's cubic schedule s_t = s_f + (s_i - s_f)(1 - p)^3, with the progress p computed "
             "from the step rounded down to the last pruning step (every `frequency` steps).",
             ["Before (or at) begin_step p = 0; from end_step on p = 1.",
              "Otherwise t = begin_step + ((step - begin_step) // frequency) * frequency and "
              "p = (t - begin_step) / (end_step - begin_step).",
              "Return a float."],
             []),
    Exercise(6, "group_soft_threshold", "minicompress.prune.group_lasso", "group_soft_threshold",
             "the group-lasso proximal step",
             "Apply the group soft-threshold, the proximal operator of threshold * sum_g ||w_g||_2, to every "
             "row of a (groups, group_size) array (Wen et al. 2016; Parikh & Boyd 2014).",
             ["norms = the L2 norm of every row (compute it in float64).",
              "factor = max(0, 1 - threshold / norm); a row whose norm is 0 stays 0 (no division by 0).",
              "Return rows * factor[:, None] as float32."],
             NUMPY),
    Exercise(7, "kd_loss", "minicompress.distill.losses", "kd_loss",
             "the knowledge-distillation loss",
             "Hinton's soft-target loss T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch, "
             "written with minicompress Tensor operations so that backward() gives the student's gradient. "
             "The teacher is a constant: no gradient may flow into it.",
             ["Wrap the teacher as a constant: Tensor(teacher.data if it is a Tensor else teacher).",
              "F.log_softmax(z / T, axis=1) for both; p_t = log_p_t.exp().",
              "KL per row: (p_t * (log_p_t - log_p_s)).sum(axis=1); then .mean() over the batch.",
              "Multiply by T ** 2 and return the scalar Tensor."],
             NUMPY + ["", "from minicompress.core import Tensor", "from minicompress.nn import functional as F"]),
    Exercise(8, "bf16_bits", "minicompress.precision.bf16", "bf16_bits",
             "rounding float32 to BF16 (round to nearest, ties to even)",
             "Return the uint16 BF16 bit patterns of a float32 array, rounding to nearest with ties to even, "
             "using integer arithmetic on the float32 bit pattern. The checker passes float32 arrays only.",
             ["u = x.view(np.uint32): the float32 bits; BF16 keeps the upper 16.",
              "Add 0x7FFF plus the lowest kept bit ((u >> 16) & 1), then shift right by 16: round to nearest, "
              "ties to even. Keep the arithmetic in np.uint32.",
              "NaN must stay NaN: for NaNs, keep the upper half of u with the quiet bit 0x00400000 set.",
              "Return .astype(np.uint16)."],
             NUMPY),
    Exercise(9, "fold_bn_params", "minicompress.graph.fold_bn", "fold_bn_params",
             "folding BatchNorm into the layer before it",
             "Return the weight and bias of one layer that computes layer-then-eval-mode-BatchNorm.",
             ["s_c = gamma_c / sqrt(running_var_c + eps) (gamma None means 1).",
              "w'_c = w_c * s_c (reshape s to (C, 1, ...) to broadcast over the weight).",
              "b'_c = (b_c - running_mean_c) * s_c + beta_c (bias None means 0, beta None means 0).",
              "Compute in float64 and cast both results back to weight.dtype."],
             NUMPY),
    Exercise(10, "fold_bn_rule", "minicompress.graph.rules", "_fold_bn",
             "a graph rewrite rule: conv2d / linear, batch_norm -> one layer",
             "Write the replacement function of the FOLD_BN rules in minicompress/graph/rules.py: given a "
             "match of batch_norm(conv2d or linear), return the one Node that replaces both.",
             ["m['layer'] is the conv2d / linear Node, m.root the batch_norm Node.",
              "Their parameters are in node.params: the layer's 'weight' and maybe 'bias'; the BatchNorm's "
              "'running_mean', 'running_var' and maybe 'weight' (gamma), 'bias' (beta); eps is bn.attrs['eps'].",
              "Fold with fold_bn_params (exercise 9).",
              "Return Node(layer.name, layer.op, layer.inputs, layer.attrs, {'weight': w, 'bias': b}, "
              "source=...): same name, op, inputs and attributes as the layer."],
             ["from minicompress.graph.fold_bn import fold_bn_params", "from minicompress.graph.ir import Node"]),
    Exercise(11, "unbroadcast", "minicompress.core.elementwise", "unbroadcast",
             "the gradient of a broadcast",
             "When a forward op broadcasts an input of `shape` up to grad.shape, the input's gradient is the "
             "sum over the broadcast axes. Sum `grad` back down to `shape`.",
             ["Sum away the extra leading axes (grad.ndim - len(shape) of them).",
              "Then sum, with keepdims=True, every axis where shape has 1 and grad has more.",
              "If the shapes already agree, return grad unchanged."],
             NUMPY),
]


def reference(ex):
    """The reference function of an exercise (imported fresh from its module)."""
    return getattr(importlib.import_module(ex.module), ex.function)


def stub_path(ex, folder=HERE):
    return os.path.join(folder, f"ex{ex.number:02d}_{ex.slug}.py")


def _signature_and_docstring(source, function):
    """The lines of `source` up to the end of the function's docstring (or its signature), via ast."""
    tree = ast.parse(source)
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef) or node.name != function:
        raise ValueError(f"make_exercises: expected the source of function {function!r}")
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str)
    if has_doc:
        end = first.end_lineno
        if len(node.body) == 1:
            raise ValueError(f"make_exercises: {function!r} has no body besides its docstring")
    else:
        end = first.lineno - 1  # the signature ends on the line before the first statement
    lines = source.splitlines()
    indent = " " * (first.col_offset)
    return lines[:end], indent, has_doc


def _comment(text, indent, width=100):
    return textwrap.wrap(text, width=width, initial_indent=indent + "#   ",
                         subsequent_indent=indent + "#     ")


def render(ex):
    """The text of the stub file of exercise `ex`."""
    source = textwrap.dedent(inspect.getsource(reference(ex)))
    head, indent, has_doc = _signature_and_docstring(source, ex.function)
    if not has_doc:  # a library function without a docstring: the task statement becomes one
        doc = textwrap.wrap(ex.task, width=100 - len(indent), initial_indent=indent, subsequent_indent=indent)
        head = head + [indent + '"""' + doc[0].lstrip()] + doc[1:] + [indent + '"""']
    out = ['"""Exercise {}: {}.'.format(ex.number, ex.title), ""]
    out += textwrap.wrap(ex.task, width=100)
    out += ["",
            "Fill in the body of `{}` below, then check it with".format(ex.function),
            "",
            "    python tutorials/exercises/check.py {}".format(ex.number),
            "",
            "Reference solution: `{}` in {}.".format(ex.function, _reference_file(ex)),
            "Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).",
            '"""']
    if ex.header:
        out += ex.header
    out += ["", ""]
    out += head
    out.append(f"{indent}# TODO(exercise {ex.number}): hints")
    for hint in ex.hints:
        out += _comment("- " + hint, indent)
    out.append(f'{indent}raise NotImplementedError("Exercise {ex.number}: {ex.function} is not written yet")')
    return "\n".join(out) + "\n"


def _reference_file(ex):
    return ex.module.replace(".", "/") + ".py"


def write_all(folder=HERE):
    """Write every stub into `folder`; returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for ex in EXERCISES:
        path = stub_path(ex, folder)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(render(ex))
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else HERE
    for p in write_all(target):
        print("wrote", os.path.relpath(p))
